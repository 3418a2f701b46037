//! `conclave chat`: one chat request to a running proxy, its answer printed
//! as it streams in.

use std::io::Write;

use futures_util::StreamExt;
use serde_json::{Value, json};

/// Arguments of `conclave chat`.
pub struct ChatArgs {
    /// The proxy's address, e.g. `http://localhost:4000`.
    pub base_url: String,
    /// The model (or composite) to ask.
    pub model: String,
    /// Bearer key for a proxy with a master key.
    pub api_key: Option<String>,
    /// Print `reasoning_content` (a composite's stage trace), dimmed.
    pub show_reasoning: bool,
    /// Ask for an SSE stream instead of one JSON answer.
    pub stream: bool,
    /// The user message.
    pub prompt: String,
}

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Sends one chat request and prints the answer as it arrives; reasoning
/// (a composite's stage trace) is printed dimmed before the answer.
pub async fn chat(args: ChatArgs) -> Result<(), String> {
    let response = send(&args).await?;
    let mut out = std::io::stdout().lock();
    if args.stream {
        print_stream(response, &mut out, args.show_reasoning).await
    } else {
        print_answer(response, &mut out, args.show_reasoning).await
    }
}

/// Posts the request; a non-2xx answer is an error quoting its message.
async fn send(args: &ChatArgs) -> Result<reqwest::Response, String> {
    let client = conclave::server::http_client(&Default::default())?;
    let url = format!(
        "{}/v1/chat/completions",
        args.base_url.trim_end_matches('/')
    );
    let mut request = client.post(&url).json(&json!({
        "model": args.model,
        "messages": [{"role": "user", "content": args.prompt}],
        "stream": args.stream,
    }));
    if let Some(key) = &args.api_key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Err(format!("{status}: {message}"));
    }
    Ok(response)
}

/// Prints a JSON (non-streamed) answer: reasoning, then content.
async fn print_answer(
    response: reqwest::Response,
    out: &mut impl Write,
    show_reasoning: bool,
) -> Result<(), String> {
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    let message = &body["choices"][0]["message"];
    if show_reasoning && let Some(r) = message["reasoning_content"].as_str() {
        let _ = writeln!(out, "{DIM}{r}{RESET}");
    }
    let _ = writeln!(out, "{}", message["content"].as_str().unwrap_or_default());
    Ok(())
}

/// Prints an SSE answer event by event until `[DONE]`.
async fn print_stream(
    response: reqwest::Response,
    out: &mut impl Write,
    show_reasoning: bool,
) -> Result<(), String> {
    let mut printer = StreamPrinter {
        out,
        show_reasoning,
        in_reasoning: false,
    };
    let mut bytes = response.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.map_err(|e| format!("stream broke: {e}"))?;
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..pos + 2).collect();
            let text = String::from_utf8_lossy(&event);
            for line in text.lines() {
                if printer.line(line)? {
                    return Ok(());
                }
            }
        }
    }
    Err("the stream ended without [DONE]".into())
}

/// Prints the deltas of a stream, dimming reasoning until content starts.
struct StreamPrinter<'a, W> {
    out: &'a mut W,
    show_reasoning: bool,
    /// Whether the dim style is on (reasoning printed, no content since).
    in_reasoning: bool,
}

impl<W: Write> StreamPrinter<'_, W> {
    /// Prints one line of an event; true once the stream is done.
    fn line(&mut self, line: &str) -> Result<bool, String> {
        let out = &mut *self.out;
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            return Ok(false);
        };
        if data == "[DONE]" {
            if self.in_reasoning {
                let _ = write!(out, "{RESET}");
            }
            let _ = writeln!(out);
            return Ok(true);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| format!("bad chunk: {e}"))?;
        if let Some(err) = v.get("error") {
            let _ = writeln!(out, "{RESET}");
            return Err(format!(
                "stream error: {}",
                err["message"].as_str().unwrap_or("unknown")
            ));
        }
        let delta = &v["choices"][0]["delta"];
        if let Some(r) = delta["reasoning_content"].as_str()
            && self.show_reasoning
        {
            if !self.in_reasoning {
                let _ = write!(out, "{DIM}");
                self.in_reasoning = true;
            }
            let _ = write!(out, "{r}");
        }
        if let Some(c) = delta["content"].as_str() {
            if self.in_reasoning && !c.is_empty() {
                let _ = write!(out, "{RESET}\n\n");
                self.in_reasoning = false;
            }
            let _ = write!(out, "{c}");
        }
        let _ = out.flush();
        Ok(false)
    }
}
