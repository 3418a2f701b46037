//! Support for conclave's end-to-end tests: a fake OpenAI-compatible upstream
//! on 127.0.0.1 and a harness that runs the real `conclave` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fake;
pub mod proxy;

pub use fake::{Behavior, FakeUpstream, Recorded};
pub use proxy::{Proxy, conclave_bin, run_conclave};

/// A JSON chat request body for `model` with one user message.
pub fn chat_body(model: &str, prompt: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

/// Reads an SSE body into its `data:` payloads (including `[DONE]`).
pub fn sse_payloads(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("data:")
                        .map(|d| d.strip_prefix(' ').unwrap_or(d))
                })
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The concatenated `delta.content` of chat chunks.
pub fn sse_content(payloads: &[String]) -> String {
    payloads
        .iter()
        .filter(|p| p.as_str() != "[DONE]")
        .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}
