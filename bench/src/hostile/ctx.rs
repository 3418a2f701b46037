//! What every attack needs: the gateway's address and key, the hostile
//! upstream, and small helpers to send a request and check its answer.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::config::Secrets;
use super::upstream::Hostile;

/// One attack's verdict: what was seen when it went as expected, or what
/// was wrong.
pub type Check = Result<String, String>;

/// Longest one attack request may take before the attack fails.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// The shared state of the attacks.
pub struct Ctx {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `127.0.0.1:<port>`, for raw TCP attacks.
    pub addr: String,
    pub secrets: Secrets,
    pub hostile: Hostile,
    /// The gateway's log file (warn level).
    pub log: PathBuf,
}

/// A whole answer.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    /// The answer parsed as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// `error.<field>` of an OpenAI error body, as text.
    pub fn error_field(&self, field: &str) -> String {
        error_field(&self.json(), field)
    }

    /// The whole `Retry-After` in seconds, when present and a number.
    pub fn retry_after(&self) -> Option<u64> {
        self.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// Fails unless the status is `status`.
    pub fn expect_status(&self, status: u16) -> Result<(), String> {
        if self.status == status {
            Ok(())
        } else {
            Err(format!(
                "status {} (expected {status}): {}",
                self.status,
                super::load::cut(&self.text)
            ))
        }
    }

    /// Fails unless this is an OpenAI error with `status`, of `type`
    /// (when given), whose message contains `needle`.
    pub fn expect_error(
        &self,
        status: u16,
        kind: Option<&str>,
        needle: &str,
    ) -> Result<(), String> {
        self.expect_status(status)?;
        let v = self.json();
        let e = v["error"]
            .as_object()
            .ok_or_else(|| format!("not an OpenAI error: {}", super::load::cut(&self.text)))?;
        for key in ["message", "type", "param", "code"] {
            if !e.contains_key(key) {
                return Err(format!("error without `{key}`: {}", self.text));
            }
        }
        if let Some(kind) = kind
            && e["type"] != kind
        {
            return Err(format!("error type {} (expected {kind})", e["type"]));
        }
        let message = e["message"].as_str().unwrap_or_default();
        if !message.contains(needle) {
            return Err(format!("message does not name {needle:?}: {message}"));
        }
        Ok(())
    }
}

/// `error.<field>` of `v`, as text (empty when absent).
pub fn error_field(v: &Value, field: &str) -> String {
    match &v["error"][field] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A chat body for `model`.
pub fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

impl Ctx {
    /// A fresh client: its connections close when it is dropped.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap_or_default()
    }

    /// POSTs `body` (bytes) to `path` with the master key, or with `key`.
    pub async fn post_raw(
        &self,
        client: &reqwest::Client,
        path: &str,
        key: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let mut request = client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let send = async {
            let r = request.send().await.map_err(|e| format!("send: {e}"))?;
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let text = r.text().await.map_err(|e| format!("body: {e}"))?;
            Ok(Answer {
                status,
                headers,
                text,
            })
        };
        tokio::time::timeout(ANSWER_LIMIT, send)
            .await
            .map_err(|_| format!("no answer within {ANSWER_LIMIT:?}"))?
    }

    /// POSTs JSON to `/v1/chat/completions` with the master key.
    pub async fn chat(&self, client: &reqwest::Client, body: &Value) -> Result<Answer, String> {
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        self.post_raw(
            client,
            "/v1/chat/completions",
            Some(&self.secrets.master_key),
            bytes,
        )
        .await
    }

    /// A chat request for `model`, streamed or not.
    pub async fn ask(&self, model: &str, stream: bool) -> Result<Answer, String> {
        let mut body = chat(model, "hi");
        body["stream"] = json!(stream);
        self.chat(&self.client(), &body).await
    }
}

/// The `data:` payloads of an SSE body; fails on any other non-blank line.
pub fn sse_payloads(text: &str) -> Result<Vec<String>, String> {
    let mut payloads = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split('\n') {
        if line.is_empty() {
            if let Some(p) = current.take() {
                payloads.push(p);
            }
        } else if let Some(data) = line.strip_prefix("data: ") {
            match &mut current {
                Some(p) => {
                    p.push('\n');
                    p.push_str(data);
                }
                None => current = Some(data.to_owned()),
            }
        } else {
            return Err(format!("not an SSE data line: {line:?}"));
        }
    }
    payloads.extend(current);
    Ok(payloads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_payloads_joins_data_lines_and_refuses_other_lines() {
        let text = "data: a\ndata: b\n\ndata: [DONE]\n\n";
        assert_eq!(sse_payloads(text).unwrap(), ["a\nb", "[DONE]"]);
        assert!(sse_payloads("data: a\nevent: x\n\n").is_err());
        assert!(sse_payloads("{\"x\":1}").is_err());
    }

    #[test]
    fn openai_errors_are_checked_in_full() {
        let answer = |status: u16, text: &str| Answer {
            status,
            headers: HeaderMap::new(),
            text: text.to_owned(),
        };
        let full = r#"{"error":{"message":"over 1024 fields","type":"invalid_request_error","param":null,"code":null}}"#;
        assert!(
            answer(400, full)
                .expect_error(400, Some("invalid_request_error"), "1024")
                .is_ok()
        );
        assert!(answer(400, full).expect_error(400, None, "2048").is_err());
        assert!(answer(500, full).expect_error(400, None, "").is_err());
        let partial = r#"{"error":{"message":"m","type":"t"}}"#;
        assert!(answer(400, partial).expect_error(400, None, "").is_err());
    }
}
