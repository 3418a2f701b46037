//! A strategy for testing the sandbox, not for use: `settings.mode` picks a
//! misbehaviour (`spin`, `hog`, `crash`), a probe of what the guest can reach
//! (`sandbox`), or a check that instances share nothing (`isolation`).

use std::sync::Mutex;

use conclave_strategy_sdk::*;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    mode: String,
    /// For `sandbox`: a loopback port the guest tries to connect to.
    port: u16,
    /// For `isolation`: the model the guest calls between writing and reading its state.
    model: String,
}

/// State that would leak between requests if instances were reused.
static SEEN: Mutex<Option<String>> = Mutex::new(None);

fn reply(content: String) -> ChatResponse {
    ChatResponse {
        content,
        reasoning: None,
        tool_calls_json: None,
        finish_reason: "stop".into(),
        model: "probe".into(),
        usage: Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
        },
    }
}

struct Probe;

impl Strategy for Probe {
    type Topology = Value;
    type Settings = Settings;

    fn run(inv: &Invocation, _: Value, s: Settings) -> Result<ChatResponse, Error> {
        match s.mode.as_str() {
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "crash" => {
                let v: Vec<u8> = Vec::new();
                #[allow(clippy::indexing_slicing)]
                let x = v[std::hint::black_box(3)];
                Ok(reply(format!("{x}")))
            }
            "sandbox" => {
                let file = std::fs::read_to_string("/etc/hostname").map_err(|e| e.to_string());
                let dir = std::fs::read_dir(".")
                    .map(|d| d.count())
                    .map_err(|e| e.to_string());
                let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let socket = std::net::TcpStream::connect(("127.0.0.1", s.port))
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                let report = json!({
                    "file": file.is_ok(),
                    "dir": dir.is_ok(),
                    "env": env,
                    "socket": socket.is_ok(),
                });
                Ok(reply(report.to_string()))
            }
            "isolation" => {
                let mine = inv.request.last_user_text();
                let before = SEEN.lock().map(|g| g.clone()).unwrap_or_default();
                if let Ok(mut g) = SEEN.lock() {
                    *g = Some(mine.clone());
                }
                let echoed = complete(&request(&s.model, vec![Message::user(mine.clone())]))?;
                let after = SEEN.lock().map(|g| g.clone()).unwrap_or_default();
                let report =
                    json!({"mine": mine, "before": before, "after": after, "echo": echoed.content});
                Ok(reply(report.to_string()))
            }
            other => Err(Error::InvalidRequest(format!("unknown mode {other:?}"))),
        }
    }
}

strategy!(Probe);
