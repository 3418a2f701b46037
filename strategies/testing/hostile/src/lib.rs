//! A strategy for testing the host's defences, not for use: `settings.mode`
//! picks a misbehaviour aimed at the host's side of the sandbox (its memory,
//! its checks of what a strategy returns, its once-only `respond`, and
//! `validate` under the profile's limits).

use conclave_strategy_sdk::*;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    mode: String,
    /// The model the guest calls, for the modes that make calls.
    model: String,
    /// A second model, for `respond-twice`.
    second: String,
    /// Bytes of the oversized payload (request, answer or trace text).
    size: usize,
    /// How many times a flooding mode repeats itself.
    times: usize,
}

fn reply(content: String, tool_calls_json: Option<String>, finish: &str) -> ChatResponse {
    ChatResponse {
        content,
        reasoning: None,
        tool_calls_json,
        finish_reason: finish.into(),
        model: "hostile".into(),
        usage: Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
        },
    }
}

/// `times` trace events of `size` bytes each (1 MiB and 100 000 by default).
fn trace_flood(s: &Settings) -> Result<ChatResponse, Error> {
    let text = "t".repeat(if s.size == 0 { 1 << 20 } else { s.size });
    let times = if s.times == 0 { 100_000 } else { s.times };
    for i in 0..times {
        trace(&format!("flood-{i}"), &text);
    }
    Ok(reply("the flood went through".into(), None, "stop"))
}

/// One request of `size` bytes (9 MiB by default), its error passed on.
fn huge_request(s: &Settings) -> Result<ChatResponse, Error> {
    let text = "r".repeat(if s.size == 0 { 9 << 20 } else { s.size });
    complete(&request(&s.model, vec![Message::user(text)]))
}

/// `times` requests of `size` bytes, every refusal ignored.
fn request_flood(s: &Settings) -> Result<ChatResponse, Error> {
    let text = "r".repeat(if s.size == 0 { 1 << 20 } else { s.size });
    let times = if s.times == 0 { 10_000 } else { s.times };
    for _ in 0..times {
        let _ = complete(&request(&s.model, vec![Message::user(text.clone())]));
    }
    Ok(reply("every request went through".into(), None, "stop"))
}

/// Answers twice; traces how the second answer went and returns the first.
fn respond_twice(inv: &Invocation, s: &Settings) -> Result<ChatResponse, Error> {
    let question = inv.request.last_user_text();
    let first = respond(&request(&s.model, vec![Message::user(question.clone())]))?;
    match respond(&request(&s.second, vec![Message::user(question)])) {
        Ok(second) => Ok(second),
        Err(e) => {
            trace("second respond", describe(&e));
            Ok(first)
        }
    }
}

/// Grows memory until the sandbox stops it.
fn hog() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

/// Burns CPU until the sandbox stops it.
fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// About `size` bytes of numbered lines on stderr, the last one `line last`.
fn chatter(size: usize) {
    for i in 0..size / 64 {
        eprintln!("line {i:08} {}", "-".repeat(49));
    }
    eprintln!("line last");
}

struct Hostile;

impl Strategy for Hostile {
    type Topology = Value;
    type Settings = Settings;

    fn run(inv: &Invocation, _: Value, s: Settings) -> Result<ChatResponse, Error> {
        match s.mode.as_str() {
            "trace-flood" => trace_flood(&s),
            "huge-request" => huge_request(&s),
            "request-flood" => request_flood(&s),
            "huge-answer" => Ok(reply("a".repeat(s.size), None, "stop")),
            "bad-tool-calls" => Ok(reply(
                String::new(),
                Some(r#"{"id":"c1","function":{"name":"f"}}"#.into()),
                "tool_calls",
            )),
            "tool-calls-without-calls" => Ok(reply(String::new(), None, "tool_calls")),
            "chatty" => {
                chatter(s.size);
                Ok(reply("chatty done".into(), None, "stop"))
            }
            "chatty-crash" => {
                chatter(s.size);
                std::process::abort()
            }
            "respond" => respond(&request(&s.model, inv.request.messages.clone())),
            "respond-twice" => respond_twice(inv, &s),
            "validate-spin" | "validate-hog" => Ok(reply("validated".into(), None, "stop")),
            other => Err(Error::InvalidRequest(format!("unknown mode {other:?}"))),
        }
    }

    fn validate(_: &Value, s: &Settings) -> Result<(), String> {
        match s.mode.as_str() {
            "validate-spin" => spin(),
            "validate-hog" => hog(),
            _ => Ok(()),
        }
    }
}

strategy!(Hostile);
