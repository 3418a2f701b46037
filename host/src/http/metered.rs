//! Pricing answers on their way out. A JSON answer is priced from its
//! `usage` and reports the cost in `x-conclave-response-cost`; a stream is
//! priced, when it ends, from the last usage it reported (an upstream may
//! report running totals, or zeros until the end). So that every stream has
//! one, an upstream is asked for `stream_options.include_usage` when the
//! client did not ask, and that extra chunk is then kept from the client.
//! Either way the cost is charged to the caller's limits at once and
//! recorded on the request's outcome.
//!
//! A stream that ends without a usage chunk, because the client left before
//! it came or the upstream never sent one, is priced from an estimate of
//! what was sent (see [`crate::ops::estimate`]): an upstream bills the tokens it generated,
//! and a client must not get most of an answer free by leaving just before
//! its end. So is a stream that fails after it sent text (an upstream error
//! or timeout mid-way): the client has that text. A stream that fails
//! before sending any costs nothing, as a failed request does.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::error::ApiError;
use crate::openai::ProxyRequest;
use crate::ops::estimate::{self, SentText};
use crate::ops::{CallContext, Caller, OutcomeHandle, Reported, Usage, reported_in_body};
use crate::providers::sse::Needle;

/// The cost of the answer in USD.
pub const RESPONSE_COST: HeaderName = HeaderName::from_static("x-conclave-response-cost");

/// The same, under LiteLLM's name, which scripts written for LiteLLM read.
pub const LITELLM_RESPONSE_COST: HeaderName = HeaderName::from_static("x-litellm-response-cost");

/// Puts `cost` in the cost headers. A free call (no price known, or a
/// cache hit) is written without formatting a float.
pub fn cost_header(headers: &mut HeaderMap, cost: f64) {
    let value = if cost == 0.0 {
        Ok(HeaderValue::from_static("0"))
    } else {
        HeaderValue::from_str(&cost.to_string())
    };
    if let Ok(v) = value {
        headers.insert(LITELLM_RESPONSE_COST, v.clone());
        headers.insert(RESPONSE_COST, v);
    }
}

/// The request with the key's alias for its model applied, when the
/// caller's key maps that name to another.
pub fn aliased(ctx: &CallContext, req: &ProxyRequest) -> Option<ProxyRequest> {
    let target = ctx
        .request
        .caller
        .principal()?
        .key
        .aliases
        .get(&req.model)?;
    Some(renamed(req, target))
}

/// The request with the router's alias for its model (`model_group_alias`)
/// applied, when the config maps that name to a model group.
pub fn router_aliased(
    gateway: &crate::gateway::Gateway,
    req: &ProxyRequest,
) -> Option<ProxyRequest> {
    let target = gateway.router.aliases().get(&req.model)?;
    Some(renamed(req, target))
}

/// A copy of `req` for `model`.
fn renamed(req: &ProxyRequest, model: &str) -> ProxyRequest {
    let mut req = req.clone();
    model.clone_into(&mut req.model);
    req
}

/// Whether the client asked for the usage chunk of a stream.
pub fn client_wants_usage(req: &ProxyRequest) -> bool {
    #[derive(Deserialize)]
    struct StreamOptions {
        #[serde(default)]
        include_usage: bool,
    }
    matches!(
        req.rest.parse::<StreamOptions>("stream_options"),
        Some(Ok(StreamOptions {
            include_usage: true
        }))
    )
}

/// The stream request with `stream_options.include_usage` set, keeping the
/// client's other stream options; `None` when the client asked already.
pub fn with_usage(req: &ProxyRequest) -> Option<ProxyRequest> {
    if client_wants_usage(req) {
        return None;
    }
    let mut options = match req.rest.value("stream_options") {
        Some(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    options.insert("include_usage".into(), serde_json::Value::Bool(true));
    let mut req = req.clone();
    req.rest
        .insert_value("stream_options", &serde_json::Value::Object(options))
        .ok()?;
    Some(req)
}

/// Keeps a JSON answer on the outcome, prices and charges it, and records
/// its model, usage and cost there; returns the cost. `reported` is what the
/// router read of the answer (`None`: not a JSON object); the outcome notes
/// whether it read as JSON, so that logs need not check it again. An answer
/// to `estimate_from` (a chat or completions request) that reports no usage
/// (none, or no tokens at all) is priced from an estimate, as a stream is:
/// an upstream leaving its usage out must not make its answers free.
pub fn charge_json(
    ctx: &CallContext,
    outcome: &OutcomeHandle,
    (model, deployment): (&str, &str),
    body: &Bytes,
    (reported, estimate_from): (Option<Reported>, Option<&crate::openai::RawFields>),
) -> f64 {
    let is_json = reported.is_some();
    let Reported {
        usage,
        model: response_model,
        id,
        ..
    } = reported.unwrap_or_default();
    outcome.update(|o| {
        o.body = vec![body.clone()];
        o.body_is_json = is_json;
        if response_model.is_some() {
            o.response_model = response_model;
        }
        if id.is_some() {
            o.response_id = id;
        }
        o.answer_read = is_json;
    });
    let usage = match (usage, estimate_from) {
        (Some(u), _) if u.prompt_tokens > 0 || u.completion_tokens > 0 => u,
        (_, Some(request)) => {
            let mut sent = SentText::default();
            sent.add(body);
            Usage {
                prompt_tokens: estimate::prompt_tokens(request),
                completion_tokens: sent.tokens(),
            }
        }
        (usage, None) => usage.unwrap_or_default(),
    };
    charge(ctx, outcome, model, Some(deployment), usage)
}

fn charge(
    ctx: &CallContext,
    outcome: &OutcomeHandle,
    model: &str,
    deployment: Option<&str>,
    usage: Usage,
) -> f64 {
    let request = &ctx.request;
    let cost = request
        .meter
        .charge(&request.caller, model, deployment, usage);
    outcome.update(|o| {
        o.usage = Some(usage);
        o.cost = Some(cost);
        let counted = per_model_name(&request.caller, o.model_group.as_deref(), model);
        if o.model != counted {
            o.budget_model = Some(counted.to_owned());
        }
    });
    cost
}

/// The name a call's spend counts under per model: `model`, but for a name
/// a wildcard group served, which a client may vary at will, the group's
/// (`wild/*`), unless the caller's limits name that model, so that a key
/// keeps one entry per group rather than one per name it was sent.
fn per_model_name<'a>(caller: &Caller, group: Option<&'a str>, model: &'a str) -> &'a str {
    match group {
        Some(group)
            if group.contains('*')
                && group != model
                && !caller
                    .principal()
                    .is_some_and(|p| crate::keys::scopes::limits_model(p, model)) =>
        {
            group
        }
        _ => model,
    }
}

/// Charges a request its prompt (estimated) when the client leaves while
/// the router waits for the upstream's answer: the upstream has the prompt
/// and may go on generating a JSON answer after the connection closes, so
/// leaving then is not free, and the spend log keeps a row for the call.
pub struct AbandonCharge<'a> {
    ctx: &'a CallContext,
    outcome: &'a OutcomeHandle,
    req: &'a ProxyRequest,
    /// Prices the prompt at the dearest of the group's deployments: which
    /// one read it is not known, and a caller must not send a long prompt
    /// to an expensive one and leave to pay a cheap one's price.
    gateway: &'a crate::gateway::Gateway,
    armed: bool,
}

impl<'a> AbandonCharge<'a> {
    /// Armed for the call `req` makes; [`Self::answered`] disarms it.
    pub fn new(
        (ctx, outcome): (&'a CallContext, &'a OutcomeHandle),
        gateway: &'a crate::gateway::Gateway,
        req: &'a ProxyRequest,
    ) -> Self {
        Self {
            ctx,
            outcome,
            req,
            gateway,
            armed: true,
        }
    }

    /// The router answered (or failed): the answer's own usage prices it.
    pub fn answered(mut self) {
        self.armed = false;
    }
}

impl Drop for AbandonCharge<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.outcome.update(|o| o.attempts = o.attempts.max(1));
        let usage = Usage {
            prompt_tokens: estimate::prompt_tokens(&self.req.rest),
            completion_tokens: 0,
        };
        let meter = &self.ctx.request.meter;
        let model = &self.req.model;
        let deployment = (self.gateway.router)
            .dearest_deployment(model, |id| meter.price(Some(id), model, usage));
        charge(self.ctx, self.outcome, model, deployment, usage);
    }
}

/// A payload stream that prices its usage chunk and, when the chunk was
/// asked for on the client's behalf, keeps it from the client.
pub struct Metered<S> {
    inner: S,
    ctx: CallContext,
    outcome: OutcomeHandle,
    model: String,
    deployment: String,
    /// The usage chunk was not asked for by the client.
    strip: bool,
    charged: bool,
    /// A native Anthropic stream's input usage (from `message_start`),
    /// charged with the output `message_delta` reports.
    opening: Option<Usage>,
    /// The latest usage the stream reported: upstreams that report it on
    /// every chunk (running totals, or zeros until the end) are charged
    /// their last figure, when the stream ends.
    reported: Option<Usage>,
    /// The request's prompt tokens, estimated, for a stream without usage.
    prompt_estimate: u64,
    sent: SentText,
    /// The stream ended with an error: it costs nothing unless it had
    /// sent text by then.
    failed: bool,
}

impl<S> Metered<S> {
    /// Meters `inner`, a stream `deployment` answers for `model`.
    pub fn new(
        inner: S,
        (ctx, outcome): (&CallContext, &OutcomeHandle),
        (model, deployment): (&str, &str),
        req: &ProxyRequest,
        strip: bool,
    ) -> Self {
        Self {
            inner,
            ctx: ctx.clone(),
            outcome: outcome.clone(),
            model: model.to_owned(),
            deployment: deployment.to_owned(),
            strip,
            charged: false,
            opening: None,
            reported: None,
            prompt_estimate: estimate::prompt_tokens(&req.rest),
            sent: SentText::default(),
            failed: false,
        }
    }

    /// Charges the stream once, when it ends or the client leaves: the last
    /// usage it reported, else an estimate of what it sent (see the module
    /// docs). A usage of no tokens at all is a placeholder, not a figure.
    fn settle(&mut self) {
        if self.charged || self.failed && self.sent.chunks == 0 {
            return;
        }
        self.charged = true;
        let usage = match self.reported {
            Some(u) if u.prompt_tokens > 0 || u.completion_tokens > 0 => u,
            _ => {
                let prompt_tokens = match self.opening {
                    Some(opening) if opening.prompt_tokens > 0 => opening.prompt_tokens,
                    _ => self.prompt_estimate,
                };
                Usage {
                    prompt_tokens,
                    completion_tokens: self.sent.tokens(),
                }
            }
        };
        charge(
            &self.ctx,
            &self.outcome,
            &self.model,
            Some(&self.deployment),
            usage,
        );
    }

    /// Notes the chunk's usage, the latest figure so far; true when the
    /// chunk is only usage and should be kept from the client.
    fn take_usage(&mut self, payload: &[u8]) -> bool {
        static USAGE_KEY: Needle = Needle::new(b"\"usage\"");
        if !USAGE_KEY.is_in(payload) {
            return false;
        }
        let Some(mut chunk) = usage_chunk(payload) else {
            return false;
        };
        match chunk.event.as_deref() {
            // Anthropic reports input usage first, output at the end.
            Some("message_start") => {
                self.opening = Some(chunk.usage);
                return false;
            }
            Some("message_delta") => {
                let opening = self.opening.unwrap_or_default();
                if chunk.usage.prompt_tokens == 0 {
                    chunk.usage.prompt_tokens = opening.prompt_tokens;
                }
            }
            _ => {}
        }
        self.reported = Some(chunk.usage);
        self.strip && chunk.only_usage
    }
}

impl<S> Stream for Metered<S>
where
    S: Stream<Item = Result<Bytes, ApiError>> + Unpin,
{
    type Item = Result<Bytes, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let item = Pin::new(&mut self.inner).poll_next(cx);
            match &item {
                Poll::Ready(Some(Ok(payload))) => {
                    if self.take_usage(payload) {
                        continue;
                    }
                    self.sent.add(payload);
                }
                Poll::Ready(Some(Err(_))) => self.failed = true,
                Poll::Ready(None) => self.settle(),
                Poll::Pending => {}
            }
            return item;
        }
    }
}

/// A stream the client left is charged what it reported or sent so far.
impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        self.settle();
    }
}

/// A chunk's usage, whether the chunk carries nothing else, and the type
/// of a native stream event (Anthropic's, the Responses API's).
struct UsageChunk {
    usage: Usage,
    only_usage: bool,
    event: Option<String>,
}

fn usage_chunk(payload: &[u8]) -> Option<UsageChunk> {
    let reported = reported_in_body(payload)?;
    let usage = reported.any_usage()?;
    Some(UsageChunk {
        usage,
        only_usage: reported.choices.count == 0 && reported.kind.is_none(),
        event: reported.kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> ProxyRequest {
        serde_json::from_str(body).unwrap()
    }

    /// The usage a stream of `chunks` is charged, read to its end.
    async fn charged_for(chunks: &[&'static str]) -> Option<Usage> {
        let items = chunks.iter().map(|c| Ok(Bytes::from_static(c.as_bytes())));
        charged_for_items(items.collect()).await
    }

    #[tokio::test]
    async fn a_stream_is_charged_the_last_usage_it_reported() {
        let running = [
            r#"{"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":11,"completion_tokens":1}}"#,
            r#"{"choices":[{"delta":{"content":"b"}}],"usage":{"prompt_tokens":11,"completion_tokens":2}}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7}}"#,
        ];
        let seven = Usage {
            prompt_tokens: 11,
            completion_tokens: 7,
        };
        assert_eq!(charged_for(&running).await, Some(seven));
        let placeholders = [
            r#"{"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":0,"completion_tokens":0}}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7}}"#,
        ];
        assert_eq!(charged_for(&placeholders).await, Some(seven));
        // Only zeros: an estimate, not a free answer.
        let zeros = [
            r#"{"choices":[{"delta":{"content":"abcdefgh"}}],"usage":{"prompt_tokens":0,"completion_tokens":0}}"#,
        ];
        let estimated = charged_for(&zeros).await.unwrap();
        assert!(
            estimated.prompt_tokens > 0 && estimated.completion_tokens == 2,
            "{estimated:?}"
        );
    }

    /// The usage charged for a stream of `items`, an error among them.
    async fn charged_for_items(items: Vec<Result<Bytes, ApiError>>) -> Option<Usage> {
        use futures_util::StreamExt;
        let ctx = CallContext::detached(crate::ops::Caller::Master, "/v1/chat/completions");
        let outcome = OutcomeHandle::request(&ctx);
        let req = request(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        let mut metered = Metered::new(
            futures_util::stream::iter(items),
            (&ctx, &outcome),
            ("m", "m.0"),
            &req,
            false,
        );
        while metered.next().await.is_some() {}
        drop(metered);
        let mut usage = None;
        outcome.update(|o| usage = o.usage);
        usage
    }

    #[tokio::test]
    async fn a_stream_that_fails_after_sending_text_is_charged_for_it() {
        let broken = || {
            Err(ApiError::new(
                http::StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the upstream stalled",
                None,
                None,
            ))
        };
        let text = Bytes::from_static(br#"{"choices":[{"delta":{"content":"abcdefgh"}}]}"#);
        let charged = charged_for_items(vec![Ok(text), broken()]).await.unwrap();
        assert!(
            charged.prompt_tokens > 0 && charged.completion_tokens == 2,
            "{charged:?}"
        );
        assert_eq!(charged_for_items(vec![broken()]).await, None);
    }

    #[test]
    fn include_usage_is_added_beside_the_clients_other_stream_options() {
        let req = request(r#"{"model":"m","stream":true,"stream_options":{"x":1}}"#);
        assert!(!client_wants_usage(&req));
        let asked = with_usage(&req).unwrap();
        assert_eq!(
            asked.rest.value("stream_options").unwrap(),
            serde_json::json!({"x": 1, "include_usage": true})
        );
        assert!(client_wants_usage(&asked));
        assert!(with_usage(&asked).is_none());
    }

    #[test]
    fn a_usage_only_chunk_is_told_from_a_content_chunk_with_usage() {
        let only = br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        let with =
            br#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        assert!(usage_chunk(only).unwrap().only_usage);
        assert!(!usage_chunk(with).unwrap().only_usage);
        assert!(usage_chunk(br#"{"choices":[],"usage":null}"#).is_none());
        let delta =
            usage_chunk(br#"{"type":"message_delta","usage":{"output_tokens":9}}"#).unwrap();
        assert!(!delta.only_usage);
        assert_eq!(delta.event.as_deref(), Some("message_delta"));
        assert_eq!(delta.usage.completion_tokens, 9);
    }
}
