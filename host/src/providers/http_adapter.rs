//! The one HTTP adapter: OpenAI's wire format to any provider in the table.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::param_rules::{self, ParamRules};
use super::redact::{KeyRedactor, StreamRedactor};
use super::table::{Dialect, ProviderSpec};
use super::{TargetError, UpstreamCall, UpstreamError, UpstreamReply, sse};
use crate::config::{EXTRA_BODY, Env, LitellmParams, Secret, is_request_default};
use crate::json_text;
use crate::openai::{Endpoint, RawFields};

/// OpenAI's own api_base: an `openai/` deployment there serves the
/// Responses API natively.
const OPENAI_BASE: &str = "https://api.openai.com/v1";
/// Default Azure API version when neither the deployment nor the environment sets one.
const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";
/// How much of an upstream error body is read to build the message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Longest wait an upstream's `retry-after` can ask for; a longer (or
/// infinite) hint counts as this. Retries wait at most 60 s of it, a
/// cooldown at most this long.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// A deployment reached over HTTP.
pub struct HttpTarget {
    spec: &'static ProviderSpec,
    base_url: String,
    api_key: Option<Secret>,
    /// Takes the key out of what the upstream sends back; `None` for no key
    /// or one too short to search for.
    redactor: Option<Arc<KeyRedactor>>,
    api_version: Option<String>,
    upstream_model: String,
    supports_reasoning: bool,
    /// Sends a Responses client's body to `{api_base}/responses` as it is
    /// (see [`super::responses`]) rather than the chat translation.
    native_responses: bool,
    /// Request defaults from litellm_params (temperature, ...), applied when absent.
    defaults: Map<String, Value>,
    /// LiteLLM's `extra_body`, for the bodies not written from the chat
    /// request (native Messages and Responses ones, translated Messages
    /// ones): the chat body gets these fields through `defaults`.
    extra_body: Map<String, Value>,
    /// Fields renamed or left out on the way (reasoning models,
    /// `drop_params`, `additional_drop_params`); `None` for nearly every
    /// deployment.
    rules: Option<Box<ParamRules>>,
    /// Auth, organization and extra headers, built once.
    headers: HeaderMap,
    /// Each endpoint's URL for `upstream_model`, parsed once.
    urls: Box<EndpointUrls>,
}

/// A deployment's URL per endpoint.
struct EndpointUrls {
    chat: reqwest::Url,
    completions: reqwest::Url,
    embeddings: reqwest::Url,
    moderations: reqwest::Url,
    image_generations: reqwest::Url,
    rerank: reqwest::Url,
    /// `{api_base}/responses`, for a natively passed Responses request.
    responses: reqwest::Url,
}

impl EndpointUrls {
    fn get(&self, endpoint: Endpoint) -> &reqwest::Url {
        match endpoint {
            Endpoint::ChatCompletions => &self.chat,
            Endpoint::Completions => &self.completions,
            Endpoint::Embeddings => &self.embeddings,
            Endpoint::Moderations => &self.moderations,
            Endpoint::ImageGenerations => &self.image_generations,
            Endpoint::Rerank => &self.rerank,
        }
    }
}

impl HttpTarget {
    /// Whether this deployment speaks Anthropic's Messages API, and so is
    /// sent a Messages request as the client wrote it.
    pub fn speaks_anthropic(&self) -> bool {
        self.spec.dialect == Dialect::Anthropic
    }

    pub(super) fn new(
        spec: &'static ProviderSpec,
        model: &str,
        params: &LitellmParams,
        env: &Env,
        drop_params_default: bool,
    ) -> Result<Self, TargetError> {
        let (base_url, login) = split_login(base_url(spec, params, env)?);
        let api_key = params
            .api_key
            .clone()
            .filter(|k| !k.expose().is_empty())
            .or_else(|| {
                if params.no_env_key {
                    return None;
                }
                spec.key_env
                    .iter()
                    .find_map(|name| env.get(name))
                    .map(Secret::new)
            });
        let api_version = params.api_version.clone().or_else(|| {
            (spec.dialect == Dialect::Azure)
                .then(|| env.get("AZURE_API_VERSION"))
                .flatten()
        });
        let mut headers = call_headers(spec.dialect, api_key.as_ref(), params)?;
        if let Some(login) = &login {
            headers.insert(http::header::AUTHORIZATION, login.header.clone());
        }
        let mut defaults = request_defaults(params)?;
        let extra_body = extra_body(params)?;
        add_absent(&mut defaults, &extra_body);

        let written = params.target_model.as_deref().unwrap_or(model);
        let (named, declared) = match spec.dialect {
            Dialect::Azure => param_rules::azure_series(written),
            _ => (written, None),
        };
        let upstream_model = named.to_owned();
        let rules = ParamRules::new(
            &upstream_model,
            matches!(spec.name, "openai" | "azure"),
            declared,
            &params.additional_drop_params,
            params.drop_params.unwrap_or(drop_params_default),
        )
        .map(Box::new);
        if let Some(rules) = &rules {
            rules.apply_to_defaults(&mut defaults);
        }
        let url = |endpoint: Endpoint| {
            parse_url(&endpoint_url(
                spec.dialect,
                &base_url,
                api_version.as_deref(),
                &upstream_model,
                endpoint,
            ))
        };
        let urls = Box::new(EndpointUrls {
            chat: url(Endpoint::ChatCompletions)?,
            completions: url(Endpoint::Completions)?,
            embeddings: url(Endpoint::Embeddings)?,
            moderations: url(Endpoint::Moderations)?,
            image_generations: url(Endpoint::ImageGenerations)?,
            rerank: url(Endpoint::Rerank)?,
            responses: parse_url(&super::responses::responses_url(&base_url))?,
        });
        let native_responses = spec.name == "openai"
            && (base_url == OPENAI_BASE || crate::config::declares_responses(&params.extra));
        add_call_defaults(&mut headers, &urls.chat);
        let login_secrets: Vec<&str> = login.as_ref().map_or_else(Vec::new, Login::secrets);
        let redactor =
            KeyRedactor::new(api_key.as_ref(), &params.extra_headers, &login_secrets).map(Arc::new);
        Ok(Self {
            spec,
            base_url,
            api_key,
            redactor,
            api_version,
            upstream_model,
            supports_reasoning: params.supports_reasoning.unwrap_or(false),
            native_responses,
            defaults,
            extra_body,
            rules,
            headers,
            urls,
        })
    }

    /// Marks an `openai/` deployment as serving the Responses API itself
    /// (its model_info says so); other providers stay translated.
    pub fn serve_responses_natively(&mut self) {
        self.native_responses = self.spec.name == "openai";
    }

    /// Whether a Responses client's request is passed through natively.
    pub fn serves_responses(&self) -> bool {
        self.native_responses
    }

    pub(super) fn upstream_model(&self) -> &str {
        &self.upstream_model
    }

    pub(super) fn provider(&self) -> &str {
        self.spec.name
    }

    pub(super) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Whether a key is configured or found in the environment.
    pub fn has_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// Whether the provider is known to refuse keyless requests.
    pub fn key_required(&self) -> bool {
        self.spec.key_required
    }

    /// The provider's key variables, for the "no key" warning.
    pub fn key_env(&self) -> &'static [&'static str] {
        self.spec.key_env
    }

    /// An answer's bytes with this deployment's key replaced, if they hold it.
    fn redact_bytes(&self, body: Bytes) -> Result<Bytes, UpstreamError> {
        match &self.redactor {
            Some(redactor) => redactor.payload(body),
            None => Ok(body),
        }
    }

    pub(super) fn redact(&self, message: &str) -> String {
        match &self.redactor {
            Some(redactor) => redactor.text(message),
            None => message.to_owned(),
        }
    }

    /// The URL of `endpoint` for `model`: the one parsed at load time unless
    /// a wildcard changed the model of an Azure deployment (whose URL names it).
    fn url(&self, model: &str, endpoint: Endpoint) -> Result<reqwest::Url, UpstreamError> {
        if self.spec.dialect == Dialect::Azure && model != self.upstream_model {
            let url = endpoint_url(
                self.spec.dialect,
                &self.base_url,
                self.api_version.as_deref(),
                model,
                endpoint,
            );
            return parse_url(&url).map_err(|e| UpstreamError::Protocol(e.to_string()));
        }
        Ok(self.urls.get(endpoint).clone())
    }

    pub(super) async fn call(
        &self,
        client: &reqwest::Client,
        call: UpstreamCall<'_>,
    ) -> Result<UpstreamReply, UpstreamError> {
        let model = call.model_override.unwrap_or(&self.upstream_model);
        let anthropic = self.spec.dialect == Dialect::Anthropic;
        let edited;
        let no_defaults = Map::new();
        let (body, defaults) = match &self.rules {
            Some(rules) => {
                edited = rules.apply(
                    call.body,
                    &self.defaults,
                    model,
                    call.endpoint,
                    call.drop_params,
                );
                let defaults = if edited.with_defaults {
                    &no_defaults
                } else {
                    &self.defaults
                };
                (&*edited.body, defaults)
            }
            None => (call.body, &self.defaults),
        };
        let responses = if self.native_responses && call.endpoint == Endpoint::ChatCompletions {
            super::responses::request_body(body, model, call.stream, defaults, &self.extra_body)
                .transpose()?
        } else {
            None
        };
        let native_responses = responses.is_some();
        // A chat request to a deployment that serves only completions.
        let as_completions =
            self.spec.completions_only && call.endpoint == Endpoint::ChatCompletions;
        let mut client_headers = None;
        // How an `anthropic/` deployment's answer reaches the client.
        let mut anthropic_reply = None;
        let bytes = if let Some(bytes) = responses {
            bytes
        } else if anthropic {
            let request = super::anthropic::request_body(
                call.endpoint,
                body,
                (defaults, &self.extra_body),
                model,
                call.stream,
            )?;
            client_headers = Some(request.headers);
            anthropic_reply = Some(request.reply);
            request.bytes
        } else {
            let prompted;
            let fields = if as_completions {
                prompted = super::text_completion::request_fields(body)?;
                &prompted
            } else {
                body
            };
            encode_outbound_body(
                model,
                call.stream,
                fields,
                defaults,
                self.supports_reasoning,
            )
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?
        };
        let url = if native_responses {
            self.urls.responses.clone()
        } else if as_completions {
            self.url(model, Endpoint::Completions)?
        } else {
            self.url(model, call.endpoint)?
        };
        // Built whole rather than through a `RequestBuilder`, which would
        // merge the prepared headers into an empty map one by one.
        let mut request = reqwest::Request::new(http::Method::POST, url);
        *request.headers_mut() = self.headers.clone();
        if let Some(client_headers) = client_headers {
            super::anthropic::add_client_headers(request.headers_mut(), client_headers);
        }
        if let Some(traceparent) = call.traceparent
            && let Ok(value) = HeaderValue::from_str(traceparent)
        {
            request
                .headers_mut()
                .insert(HeaderName::from_static("traceparent"), value);
        }
        *request.body_mut() = Some(bytes.into());

        if call.stream {
            let wait = call.timeouts.stream;
            // One deadline covers connecting, sending, the status and an
            // error body: an upstream that stalls in any of them ends here.
            let head = async {
                let response = client
                    .execute(request)
                    .await
                    .map_err(|e| self.transport_error(e, wait))?;
                let response = self.check_status(response).await?;
                if is_json(response.headers()) {
                    return Err(self.json_for_a_stream(response, wait).await);
                }
                Ok(response)
            };
            let response = tokio::time::timeout(wait, head)
                .await
                .map_err(|_| UpstreamError::Timeout(wait))??;
            let chunks = response
                .bytes_stream()
                .map(|r| r.map_err(|e| e.to_string()));
            let room = sse::EventRoom {
                max_event: call.max_response_bytes.min(sse::MAX_EVENT_BYTES),
                shared: call.answer_room.cloned(),
            };
            let payloads = if native_responses {
                super::responses::stream_reply(chunks, wait, room)
            } else if let Some(reply) = anthropic_reply {
                super::anthropic::stream_reply(chunks, wait, room, reply)
            } else if as_completions {
                super::text_completion::stream_reply(sse::decode_objects(chunks, wait, room))
            } else {
                sse::decode_objects(chunks, wait, room)
            };
            // Chunks and an error ending the stream reach the client, so
            // they must not carry the key either.
            let payloads = match self.redactor.clone() {
                Some(redactor) => {
                    let mut redactor = StreamRedactor::new(redactor);
                    Box::pin(payloads.map(move |item| match item {
                        Ok(payload) => redactor.payload(payload),
                        Err(error) => Err(error.map_text(|m| redactor.text(&m))),
                    }))
                }
                None => payloads,
            };
            Ok(UpstreamReply::Stream(payloads))
        } else {
            let wait = call.timeouts.request;
            let fetch = async {
                let response = client
                    .execute(request)
                    .await
                    .map_err(|e| self.transport_error(e, wait))?;
                let response = self.check_status(response).await?;
                self.read_capped(response, (call.max_response_bytes, call.answer_room), wait)
                    .await
            };
            let body = tokio::time::timeout(wait, fetch)
                .await
                .map_err(|_| UpstreamError::Timeout(wait))??;
            // The answer reaches the client: it must not carry the key either.
            let body = self.redact_bytes(body)?;
            if let Some(reply) = anthropic_reply {
                return super::anthropic::json_reply(body, reply)
                    .map(UpstreamReply::Json)
                    .map_err(|e| e.map_text(|m| self.redact(&m)));
            }
            if as_completions {
                return super::text_completion::json_reply(body).map(UpstreamReply::Json);
            }
            Ok(UpstreamReply::Json(body))
        }
    }

    /// Anthropic's own token count for a Messages body (sent with `model`,
    /// a wildcard's rewritten name, else this deployment's, without the gateway's own settings, which
    /// Anthropic refuses, and with the client's beta header,
    /// `client_headers`); `None` for a target of another dialect.
    pub async fn count_tokens(
        &self,
        client: &reqwest::Client,
        body: &Value,
        model: Option<&str>,
        client_headers: Option<&Value>,
        wait: Duration,
    ) -> Option<Result<Bytes, UpstreamError>> {
        if self.spec.dialect != Dialect::Anthropic {
            return None;
        }
        let mut body = crate::openai::without_carried_settings(body);
        body["model"] = Value::String(model.unwrap_or(&self.upstream_model).to_owned());
        let url = format!(
            "{}/count_tokens",
            super::anthropic::messages_url(&self.base_url)
        );
        let mut headers = self.headers.clone();
        super::anthropic::add_client_headers(
            &mut headers,
            super::anthropic::client_headers(client_headers),
        );
        let fetch = async {
            let response = client
                .post(url)
                .headers(headers)
                .json(&body)
                .send()
                .await
                .map_err(|e| self.transport_error(e, wait))?;
            let response = self.check_status(response).await?;
            self.read_capped(response, (ERROR_BODY_LIMIT, None), wait)
                .await
                .and_then(|counted| self.redact_bytes(counted))
        };
        Some(
            tokio::time::timeout(wait, fetch)
                .await
                .map_err(|_| UpstreamError::Timeout(wait))
                .and_then(|r| r),
        )
    }

    /// The failure of a stream request answered with a JSON body: the error
    /// the body reports (some upstreams answer errors so, with a 200), or
    /// the answer's own shape, which no client asked for.
    async fn json_for_a_stream(
        &self,
        response: reqwest::Response,
        wait: Duration,
    ) -> UpstreamError {
        match self.read_capped(response, (ERROR_BODY_LIMIT, None), wait).await {
            Ok(body) => sse::answer_error(&body).map_or_else(
                || {
                    UpstreamError::Protocol(
                        "the upstream answered a stream request with a JSON body, not an event stream"
                            .into(),
                    )
                },
                |error| error.map_text(|m| self.redact(&m)),
            ),
            Err(error) => error,
        }
    }

    /// Classifies a transport failure; a timeout reports `wait`, the
    /// timeout configured for the call.
    fn transport_error(&self, e: reqwest::Error, wait: Duration) -> UpstreamError {
        // The deployment's address is not the client's business.
        let e = e.without_url();
        let text = self.redact(&error_chain(&e));
        if e.is_timeout() {
            UpstreamError::Timeout(wait)
        } else if e.is_connect() {
            UpstreamError::Connect(text)
        } else if e.is_body() || e.is_decode() {
            UpstreamError::StreamBroken(text)
        } else {
            UpstreamError::Connect(text)
        }
    }

    /// The whole body, refused once it grows past `limit` bytes (or declares
    /// more up front) so that an upstream cannot exhaust memory; `limit`
    /// is [`ERROR_BODY_LIMIT`] or the configured answer size.
    /// The whole body, at most `limit` bytes, counted past its free bytes
    /// in `room` while it is read.
    async fn read_capped(
        &self,
        response: reqwest::Response,
        (limit, room): (
            usize,
            Option<&std::sync::Arc<super::answer_room::AnswerRoom>>,
        ),
        wait: Duration,
    ) -> Result<Bytes, UpstreamError> {
        let too_large = || {
            let which = if limit == ERROR_BODY_LIMIT {
                "the most read of an error or token-count answer, or of a JSON answer to a stream request"
            } else {
                "general_settings.max_response_size_mb"
            };
            UpstreamError::Protocol(format!(
                "the response body is larger than the limit of {limit} bytes ({which})"
            ))
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut held = None;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.transport_error(e, wait))?;
            total += chunk.len();
            if total > limit {
                return Err(too_large());
            }
            if total > super::answer_room::FREE_BYTES
                && let Some(room) = room
            {
                let held = held.get_or_insert_with(|| super::answer_room::Held::of(room.clone()));
                if !held.resize(total) {
                    return Err(UpstreamError::AnswerRoomFull(room.limit_mb()));
                }
            }
            chunks.push(chunk);
        }
        if chunks.len() <= 1 {
            return Ok(chunks.pop().unwrap_or_default());
        }
        let mut body = BytesMut::with_capacity(total);
        for chunk in chunks {
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    async fn check_status(
        &self,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, UpstreamError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after_from(response.headers());
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            let room = ERROR_BODY_LIMIT.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= ERROR_BODY_LIMIT {
                break;
            }
        }
        let body = error_body(&body, status);
        let error = UpstreamError::Status {
            status: status.as_u16(),
            message: body.message,
            code: body.code,
            param: body.param.map(String::into_boxed_str),
            retry_after,
        };
        Err(error.map_text(|text| self.redact(&text)))
    }
}

/// The deployment's base URL: `api_base`, else the provider's variable,
/// else its default; with the provider's path added to a bare host.
fn base_url(spec: &ProviderSpec, params: &LitellmParams, env: &Env) -> Result<String, TargetError> {
    let base = params
        .api_base
        .clone()
        .filter(|b| !b.trim().is_empty())
        .or_else(|| spec.base_env.and_then(|name| env.get(name)))
        .or_else(|| spec.api_base.map(str::to_owned))
        .ok_or(TargetError::MissingApiBase {
            provider: spec.name,
        })?;
    let mut base_url = base.trim().trim_end_matches('/').to_owned();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(TargetError::InvalidApiBase { api_base: base_url });
    }
    if let Some(path) = spec.bare_base_path
        && !base_url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains(['/', '?', '#']))
    {
        base_url.push_str(path);
    }
    Ok(base_url)
}

/// The login an api_base carries (`http://user:pass@host/v1`).
struct Login {
    /// `Authorization: Basic`: a URL's login never reaches the server by
    /// itself, and the HTTP client under LiteLLM sends it so (over any
    /// key's header).
    header: HeaderValue,
    /// The password, decoded and as written (percent-encoded).
    password: [String; 2],
}

impl Login {
    /// What the redactor searches answers for.
    fn secrets(&self) -> Vec<&str> {
        let header = self.header.to_str().ok();
        header
            .into_iter()
            .chain(self.password.iter().map(String::as_str))
            .collect()
    }
}

/// An api_base without the login it may carry, and that login.
fn split_login(base_url: String) -> (String, Option<Login>) {
    let Some((scheme, rest)) = base_url.split_once("://") else {
        return (base_url, None);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (base_url, None);
    };
    let (user, password) = rest[..at].split_once(':').unwrap_or((&rest[..at], ""));
    let decoded = |part: &str| percent_encoding::percent_decode_str(part).collect::<Vec<u8>>();
    let mut credentials = decoded(user);
    credentials.push(b':');
    credentials.extend(decoded(password));
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let password = [
        String::from_utf8_lossy(&decoded(password)).into_owned(),
        password.to_owned(),
    ];
    let login = HeaderValue::from_str(&format!("Basic {encoded}"))
        .ok()
        .map(|mut header| {
            header.set_sensitive(true);
            Login { header, password }
        });
    (format!("{scheme}://{}", &rest[at + 1..]), login)
}

/// The headers every call of a deployment sends: its key in the provider's
/// header, the organization, the configured extra headers, Anthropic's
/// version and the JSON content type.
fn call_headers(
    dialect: Dialect,
    api_key: Option<&Secret>,
    params: &LitellmParams,
) -> Result<HeaderMap, TargetError> {
    let mut headers = HeaderMap::new();
    if let Some(key) = api_key {
        let (name, value) = match dialect {
            Dialect::Azure => (HeaderName::from_static("api-key"), key.expose().to_owned()),
            Dialect::Anthropic => (
                HeaderName::from_static("x-api-key"),
                key.expose().to_owned(),
            ),
            Dialect::OpenAi => (
                http::header::AUTHORIZATION,
                format!("Bearer {}", key.expose()),
            ),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| TargetError::InvalidApiKey)?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    if let Some(org) = &params.organization {
        let value = HeaderValue::from_str(org).map_err(|_| TargetError::InvalidOrganization)?;
        headers.insert(HeaderName::from_static("openai-organization"), value);
    }
    for (name, value) in &params.extra_headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| TargetError::InvalidHeaderName { name: name.clone() })?;
        let value = HeaderValue::from_str(value).map_err(|_| TargetError::InvalidHeaderValue {
            name: name.to_string(),
        })?;
        headers.insert(name, value);
    }
    if dialect == Dialect::Anthropic && !headers.contains_key("anthropic-version") {
        let version = params
            .api_version
            .as_deref()
            .unwrap_or(super::anthropic::DEFAULT_VERSION);
        let value =
            HeaderValue::from_str(version).map_err(|_| TargetError::InvalidHeaderValue {
                name: "anthropic-version".into(),
            })?;
        headers.insert(HeaderName::from_static("anthropic-version"), value);
    }
    // Every body sent is JSON; set here once rather than per call.
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(headers)
}

/// Request fields the deployment's `litellm_params` set for every call
/// (`temperature`, `max_tokens`, ...), as JSON. A key with no value (or
/// whose environment variable is unset) sets nothing, as in LiteLLM.
fn request_defaults(params: &LitellmParams) -> Result<Map<String, Value>, TargetError> {
    let mut defaults = Map::new();
    for (key, value) in &params.extra {
        if is_request_default(key) && !value.is_null() {
            let json =
                serde_json::to_value(value).map_err(|source| TargetError::InvalidDefault {
                    key: key.clone(),
                    source,
                })?;
            defaults.insert(key.clone(), json);
        }
    }
    Ok(defaults)
}

/// LiteLLM's `extra_body`: fields added to every request body the
/// deployment sends, when the body has none of its own (the config check
/// refuses the fields the gateway sets itself).
fn extra_body(params: &LitellmParams) -> Result<Map<String, Value>, TargetError> {
    let mut fields = Map::new();
    if let Some(serde_yaml::Value::Mapping(extra)) = params.extra.get(EXTRA_BODY) {
        for (key, value) in extra {
            if let Some(key) = key.as_str() {
                let json =
                    serde_json::to_value(value).map_err(|source| TargetError::InvalidDefault {
                        key: format!("{EXTRA_BODY}.{key}"),
                        source,
                    })?;
                fields.insert(key.to_owned(), json);
            }
        }
    }
    Ok(fields)
}

/// Completes a client's native body (Messages or Responses) with what the
/// deployment adds where the client set nothing: its request defaults that
/// the native API has under the same names (`native_keys`), and its
/// `extra_body`.
pub(super) fn complete_native(
    request: &mut Value,
    defaults: &Map<String, Value>,
    native_keys: &[&str],
    extra_body: &Map<String, Value>,
) {
    if let Some(fields) = request.as_object_mut() {
        let native_defaults = defaults
            .iter()
            .filter(|(key, _)| native_keys.contains(&key.as_str()));
        add_absent(fields, native_defaults);
        add_absent(fields, extra_body);
    }
}

/// Adds to `map` each of `fields` it does not set itself.
pub(super) fn add_absent<'a>(
    map: &mut Map<String, Value>,
    fields: impl IntoIterator<Item = (&'a String, &'a Value)>,
) {
    for (key, value) in fields {
        map.entry(key.clone()).or_insert_with(|| value.clone());
    }
}

/// Whether an answer's content type is JSON (`application/json`, with or
/// without parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"))
}

/// The upstream's requested wait, from `retry-after-ms` or else
/// `retry-after` (in seconds, or an HTTP date), capped at
/// [`RETRY_AFTER_CAP`].
pub fn retry_after_from(headers: &HeaderMap) -> Option<Duration> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    parse_retry_after(value("retry-after-ms"), value("retry-after"))
}

/// [`retry_after_from`] on the header texts. Never panics: NaN, negative and
/// unparseable values are ignored, huge and infinite ones capped.
fn parse_retry_after(ms: Option<&str>, secs: Option<&str>) -> Option<Duration> {
    let read = |text: &str, per_second: f64| {
        let secs = text.trim().parse::<f64>().ok()? / per_second;
        match Duration::try_from_secs_f64(secs) {
            Ok(d) => Some(d.min(RETRY_AFTER_CAP)),
            Err(_) => (secs > 0.0).then_some(RETRY_AFTER_CAP),
        }
    };
    ms.and_then(|v| read(v, 1000.0))
        .or_else(|| secs.and_then(|v| read(v, 1.0)))
        .or_else(|| secs.and_then(|v| until_date(v, jiff::Timestamp::now())))
}

/// A `retry-after` HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`) as the wait
/// from `now` until it; `None` for a date that has passed, which asks for
/// no wait.
fn until_date(text: &str, now: jiff::Timestamp) -> Option<Duration> {
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let at = PARSER.parse_timestamp(text.trim()).ok()?;
    let wait = Duration::try_from(at.duration_since(now)).ok()?;
    (!wait.is_zero()).then(|| wait.min(RETRY_AFTER_CAP))
}

/// Adds what the shared client and hyper would add to every request that
/// lacks it: `accept`, `user-agent` ([`crate::server::USER_AGENT`]) and
/// `host` (the URL's host, with its port unless it is the scheme's
/// default, as hyper writes it). Each call then copies a whole map instead
/// of growing its copy and formatting the host again. A header the config
/// sets stays as it is, as the client leaves it.
fn add_call_defaults(headers: &mut HeaderMap, url: &reqwest::Url) {
    let host = url.host_str().map(|host| match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    });
    let defaults = [
        (http::header::ACCEPT, Some(HeaderValue::from_static("*/*"))),
        (
            http::header::USER_AGENT,
            Some(HeaderValue::from_static(crate::server::USER_AGENT)),
        ),
        (
            http::header::HOST,
            host.and_then(|h| HeaderValue::from_str(&h).ok()),
        ),
    ];
    for (name, value) in defaults {
        if let (Some(value), http::header::Entry::Vacant(slot)) = (value, headers.entry(name)) {
            slot.insert(value);
        }
    }
}

/// What an upstream error body says, OpenAI-shaped or not.
struct ErrorBody {
    message: String,
    /// `error.code`, a number written as text.
    code: Option<String>,
    /// `error.param`.
    param: Option<String>,
}

/// Reads an upstream error body: OpenAI's `{"error": {...}}`, a bare error
/// object, or plain text (the status's reason when empty).
fn error_body(body: &[u8], status: http::StatusCode) -> ErrorBody {
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        let err = json.get("error").unwrap_or(&json);
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| err.as_str())
            .map(str::to_owned);
        if let Some(message) = message {
            let code = err.get("code").and_then(|c| match c {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            let param = err.get("param").and_then(Value::as_str).map(str::to_owned);
            return ErrorBody {
                message,
                code,
                param,
            };
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_owned();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    ErrorBody {
        message,
        code: None,
        param: None,
    }
}

/// Where a provider serves `endpoint` for `model`. A query the `api_base`
/// carries (a gateway's `?key=`) stays the URL's query, after the path the
/// endpoint adds; a fragment is never sent.
fn endpoint_url(
    dialect: Dialect,
    base_url: &str,
    api_version: Option<&str>,
    model: &str,
    endpoint: Endpoint,
) -> String {
    let base_url = base_url.split('#').next().unwrap_or(base_url);
    let (base_url, query) = match base_url.split_once('?') {
        Some((base, query)) => (base.trim_end_matches('/'), Some(query)),
        None => (base_url, None),
    };
    let path = endpoint.path();
    let (url, joiner) = match dialect {
        Dialect::OpenAi => (format!("{base_url}{path}"), '?'),
        Dialect::Anthropic => (super::anthropic::messages_url(base_url), '?'),
        Dialect::Azure => (
            format!(
                "{base_url}/openai/deployments/{}{path}?api-version={}",
                path_segment(model),
                api_version.unwrap_or(AZURE_DEFAULT_API_VERSION)
            ),
            '&',
        ),
    };
    match query.filter(|q| !q.is_empty()) {
        Some(query) => format!("{url}{joiner}{query}"),
        None => url,
    }
}

/// `text` as one URL path segment: everything but RFC 3986's unreserved
/// characters percent-encoded, so a model name (which a wildcard lets the
/// client choose) can never add a segment, a query or a fragment. The router
/// refuses `.` and `..`, the two segments encoding cannot neutralise.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_url(url: &str) -> Result<reqwest::Url, TargetError> {
    reqwest::Url::parse(url).map_err(|e| TargetError::InvalidUrl {
        reason: e.to_string(),
    })
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Encodes the body an attempt sends upstream, exactly as [`HttpTarget`]
/// does: `model`, `stream`, the client's fields as they came, the
/// deployment's request defaults where the client set none, and the
/// reasoning switch. Written by hand: the client's values are raw JSON
/// already, and serde's map serializer would escape every field name byte by
/// byte. Public for the benchmarks (`bench/`).
pub fn encode_outbound_body(
    model: &str,
    stream: bool,
    body: &RawFields,
    defaults: &Map<String, Value>,
    inject_reasoning: bool,
) -> Result<Vec<u8>, serde_json::Error> {
    // Room for the client's fields as they came, so that the buffer is
    // allocated once instead of doubling its way up to a long body.
    let fields: usize = body.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
    let mut out = Vec::with_capacity(fields + model.len() + 64);
    out.extend_from_slice(b"{\"model\":");
    json_text::push_str(&mut out, model);
    if stream {
        out.extend_from_slice(b",\"stream\":true");
    }
    for (k, v) in body.iter() {
        if !crate::translate::is_native_carrier(k) {
            push_key(&mut out, k);
            out.extend_from_slice(v.get().as_bytes());
        }
    }
    for (k, v) in defaults {
        if !body.contains_key(k) {
            push_key(&mut out, k);
            serde_json::to_writer(&mut out, v)?;
        }
    }
    if inject_reasoning
        && !REASONING_FIELDS
            .iter()
            .any(|f| body.contains_key(f) || defaults.contains_key(*f))
    {
        out.extend_from_slice(b",\"thinking\":{\"type\":\"enabled\"}");
    }
    out.push(b'}');
    Ok(out)
}

/// Starts the field `key` of an object that already has one (`model`).
fn push_key(out: &mut Vec<u8>, key: &str) {
    out.push(b',');
    json_text::push_str(out, key);
    out.push(b':');
}

/// Request fields that already choose a reasoning mode.
const REASONING_FIELDS: &[&str] = &["thinking", "reasoning", "reasoning_effort"];

#[cfg(test)]
mod tests {
    use super::*;

    fn with_call_defaults(url: &str, configured: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in configured {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        add_call_defaults(&mut headers, &reqwest::Url::parse(url).unwrap());
        headers
    }

    #[test]
    fn call_defaults_name_the_host_as_hyper_would_and_keep_configured_headers() {
        let h = with_call_defaults("http://127.0.0.1:8000/v1/chat/completions", &[]);
        assert_eq!(h["host"], "127.0.0.1:8000");
        assert_eq!(h["accept"], "*/*");
        assert_eq!(h["user-agent"], crate::server::USER_AGENT);
        // The scheme's own port is left out, as hyper leaves it out.
        let h = with_call_defaults("https://api.openai.com:443/v1", &[]);
        assert_eq!(h["host"], "api.openai.com");
        let h = with_call_defaults("http://[::1]:9000/v1", &[]);
        assert_eq!(h["host"], "[::1]:9000");
        let h = with_call_defaults(
            "http://localhost:11434/v1",
            &[("user-agent", "team-bot/2"), ("accept", "application/json")],
        );
        assert_eq!(h["user-agent"], "team-bot/2");
        assert_eq!(h["accept"], "application/json");
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn a_login_in_the_api_base_leaves_the_url_as_basic_auth() {
        let (url, login) = split_login("http://user:pa55%40word@127.0.0.1:8000/v1".into());
        assert_eq!(url, "http://127.0.0.1:8000/v1");
        let login = login.unwrap();
        // base64 of "user:pa55@word"
        assert_eq!(login.header, "Basic dXNlcjpwYTU1QHdvcmQ=");
        assert_eq!(login.password, ["pa55@word", "pa55%40word"]);
        let (url, login) = split_login("https://api.example.com/v1?key=a@b".into());
        assert_eq!(url, "https://api.example.com/v1?key=a@b");
        assert!(login.is_none());
    }

    #[test]
    fn outbound_body_keeps_client_fields_and_fills_defaults() {
        let body: RawFields =
            serde_json::from_str(r#"{"messages":[],"temperature":0.1,"tools":[1]}"#).unwrap();
        let defaults: Map<String, Value> =
            serde_json::from_str(r#"{"temperature":0.9,"seed":3}"#).unwrap();
        let out = encode_outbound_body("up", true, &body, &defaults, true).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "up");
        assert_eq!(v["stream"], true);
        assert_eq!(v["temperature"], 0.1);
        assert_eq!(v["seed"], 3);
        assert_eq!(v["tools"], serde_json::json!([1]));
        assert_eq!(v["thinking"]["type"], "enabled");
    }

    #[test]
    fn outbound_body_keeps_the_clients_fields_in_order_and_escapes_names_as_json_does() {
        let body: RawFields = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"a \"q\""}],"odd \"key\"\t":1,"x":null}"#,
        )
        .unwrap();
        let defaults: Map<String, Value> = serde_json::from_str(r#"{"top_p":0.5}"#).unwrap();
        let out = encode_outbound_body("m \"2\"", true, &body, &defaults, false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"model":"m \"2\"","stream":true,"messages":[{"role":"user","content":"a \"q\""}],"odd \"key\"\t":1,"x":null,"top_p":0.5}"#
        );
    }

    #[test]
    fn reasoning_switch_is_not_added_when_the_client_chose_one() {
        let body: RawFields = serde_json::from_str(r#"{"reasoning_effort":"low"}"#).unwrap();
        let out = encode_outbound_body("m", false, &body, &Map::new(), true).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("thinking").is_none());
    }

    /// A target for `api_base`, as a config entry `openai/m` would build it.
    fn target(api_base: &str) -> HttpTarget {
        let params = LitellmParams {
            model: "openai/m".into(),
            api_base: Some(api_base.into()),
            ..LitellmParams::default()
        };
        let spec = super::super::table::lookup("openai").unwrap();
        HttpTarget::new(spec, "m", &params, &Env::default(), false).unwrap()
    }

    #[test]
    fn an_ollama_address_without_a_path_gets_its_openai_path() {
        let base_of = |provider: &str, api_base: &str| {
            let params = LitellmParams {
                model: format!("{provider}/llama3"),
                api_base: Some(api_base.into()),
                ..LitellmParams::default()
            };
            let spec = super::super::table::lookup(provider).unwrap();
            HttpTarget::new(spec, "llama3", &params, &Env::default(), false)
                .unwrap()
                .base_url
        };
        assert_eq!(
            base_of("ollama", "http://127.0.0.1:11434"),
            "http://127.0.0.1:11434/v1"
        );
        assert_eq!(
            base_of("ollama_chat", "http://h:11434/"),
            "http://h:11434/v1"
        );
        assert_eq!(base_of("ollama", "http://h:11434/v1"), "http://h:11434/v1");
        assert_eq!(base_of("ollama", "http://h/custom"), "http://h/custom");
        assert_eq!(
            base_of("openai", "http://127.0.0.1:9"),
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn a_bad_api_base_is_reported_at_its_key_without_its_value() {
        for (api_base, shows) in [
            ("sk-proj-LEAKME", ""),
            ("http://user:PwLeak99@[bad/v1", ""),
            ("ftp://x", "ftp"),
        ] {
            let params = LitellmParams {
                model: "openai/m".into(),
                api_base: Some(api_base.into()),
                ..LitellmParams::default()
            };
            let spec = super::super::table::lookup("openai").unwrap();
            let error = HttpTarget::new(spec, "m", &params, &Env::default(), false)
                .err()
                .unwrap();
            assert_eq!(error.key(), "api_base");
            let text = error.to_string();
            assert!(
                !text.contains("LEAKME") && !text.contains("PwLeak99"),
                "{text}"
            );
            assert!(text.contains(shows), "{text}");
        }
    }

    #[tokio::test]
    async fn a_transport_timeout_reports_the_configured_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let _silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        let error = client.get(&base).send().await.unwrap_err();
        assert!(error.is_timeout(), "{error}");
        let error = target(&base).transport_error(error, Duration::from_secs(42));
        assert_eq!(error.to_string(), "the upstream did not answer within 42s");
    }

    #[test]
    fn construction_errors_are_typed_and_keep_their_messages() {
        let params = LitellmParams {
            model: "azure/d".into(),
            ..LitellmParams::default()
        };
        let spec = super::super::table::lookup("azure").unwrap();
        let error = HttpTarget::new(spec, "d", &params, &Env::default(), false)
            .err()
            .unwrap();
        assert!(matches!(
            error,
            TargetError::MissingApiBase { provider: "azure" }
        ));
        assert_eq!(error.to_string(), "provider azure needs an api_base");
        let params = LitellmParams {
            api_base: Some("ftp://x".into()),
            ..params
        };
        let error = HttpTarget::new(spec, "d", &params, &Env::default(), false)
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "api_base must start with http:// or https:// (its scheme is \"ftp\")"
        );
    }

    #[test]
    fn error_bodies_are_read_in_openai_shape_and_as_plain_text() {
        let e = error_body(
            br#"{"error":{"message":"bad","code":"x","param":"temperature"}}"#,
            http::StatusCode::BAD_REQUEST,
        );
        assert_eq!(e.message, "bad");
        assert_eq!(e.code.as_deref(), Some("x"));
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = error_body(b"oops", http::StatusCode::BAD_GATEWAY);
        assert_eq!((e.message.as_str(), e.param), ("oops", None));
    }

    #[test]
    fn retry_after_never_panics_and_is_capped() {
        let secs = |v: &str| parse_retry_after(None, Some(v));
        assert_eq!(secs("2"), Some(Duration::from_secs(2)));
        assert_eq!(secs(" 1.5 "), Some(Duration::from_millis(1500)));
        for huge in ["1e300", "1e20", "inf", "18446744073709551616"] {
            assert_eq!(secs(huge), Some(RETRY_AFTER_CAP), "{huge}");
        }
        for ignored in ["NaN", "-5", "-inf", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(secs(ignored), None, "{ignored}");
        }
        assert_eq!(
            parse_retry_after(Some("1500"), Some("9")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after(Some("1e300"), None),
            Some(RETRY_AFTER_CAP)
        );
        assert_eq!(
            parse_retry_after(Some("NaN"), Some("3")),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn retry_after_as_an_http_date_is_the_wait_until_it() {
        let now: jiff::Timestamp = "2015-10-21T07:28:00Z".parse().unwrap();
        let date = |text: &str| until_date(text, now);
        assert_eq!(
            date("Wed, 21 Oct 2015 07:28:03 GMT"),
            Some(Duration::from_secs(3))
        );
        assert_eq!(date("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(date("Wed, 21 Oct 2015 07:27:00 GMT"), None);
        assert_eq!(date("Thu, 22 Oct 2015 07:28:00 GMT"), Some(RETRY_AFTER_CAP));
        assert_eq!(date("the day after tomorrow"), None);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn retry_after_is_always_within_the_cap(
                ms in prop_oneof![any::<f64>().prop_map(|v| v.to_string()), ".{0,12}"],
                secs in prop_oneof![any::<f64>().prop_map(|v| v.to_string()), ".{0,12}"],
                use_ms in any::<bool>(),
            ) {
                let got = parse_retry_after(use_ms.then_some(ms.as_str()), Some(secs.as_str()));
                prop_assert!(got.is_none_or(|d| d <= RETRY_AFTER_CAP));
            }
        }
    }

    #[test]
    fn an_api_base_query_stays_after_the_endpoint_path() {
        let url = |dialect, base| {
            endpoint_url(
                dialect,
                base,
                Some("2024-10-21"),
                "gpt",
                Endpoint::ChatCompletions,
            )
        };
        assert_eq!(
            url(Dialect::OpenAi, "http://h/v1?key=q#frag"),
            "http://h/v1/chat/completions?key=q"
        );
        assert_eq!(
            url(Dialect::OpenAi, "http://h/v1"),
            "http://h/v1/chat/completions"
        );
        assert_eq!(
            url(Dialect::Azure, "https://a.example?x=1"),
            "https://a.example/openai/deployments/gpt/chat/completions?api-version=2024-10-21&x=1"
        );
    }
}
