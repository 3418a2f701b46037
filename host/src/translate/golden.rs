//! Golden files: each `golden/*.json` holds `kind`, `in` and `out`; the
//! translation of `in` must equal `out`. `UPDATE_GOLDEN=1` rewrites `out`.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{anthropic, anthropic_upstream, responses};

fn translate(kind: &str, input: &Value) -> Value {
    match kind {
        "anthropic_request" => match anthropic::request_to_chat(input, false) {
            Ok(v) => v,
            Err(e) => json!({"error": e.message, "param": e.param}),
        },
        "anthropic_answer" => anthropic::answer_from_chat(input, "claude-test", "msg_test"),
        "anthropic_stream" => {
            let mut t = anthropic::MessagesStream::new("msg_test", "claude-test");
            let mut events = t.start();
            for chunk in input.as_array().into_iter().flatten() {
                events.extend(t.push(chunk.to_string().as_bytes()).unwrap());
            }
            events.extend(t.finish());
            json!(
                events
                    .iter()
                    .map(|e| json!({"event": e.name, "data": e.data}))
                    .collect::<Vec<_>>()
            )
        }
        "responses_request" => match responses::request_to_chat(input) {
            Ok(v) => v,
            Err(e) => json!({"error": e.message, "param": e.param}),
        },
        "responses_continued" => {
            let earlier = &input["earlier"];
            let stored = earlier["input"].as_array().cloned().unwrap_or_default();
            let mut items = responses::conversation(stored, &earlier["response"]);
            items.extend(responses::input_items(&input["request"], "resp_test").unwrap());
            let body = responses::continued(&input["request"], items);
            match responses::request_to_chat(&body) {
                Ok(v) => v,
                Err(e) => json!({"error": e.message, "param": e.param}),
            }
        }
        "responses_native_request" => {
            responses::native_request(input, "gpt-up", true).unwrap_or(Value::Null)
        }
        "responses_answer" => {
            let envelope = responses::Envelope::new(&input["request"], "resp_test", 1_700_000_000);
            responses::answer_from_chat(&input["chat"], &envelope)
        }
        "responses_stream" => {
            let envelope = responses::Envelope::new(&input["request"], "resp_test", 1_700_000_000);
            let mut t = responses::ResponsesStream::new(envelope);
            let mut events = t.start();
            for chunk in input["chunks"].as_array().into_iter().flatten() {
                events.extend(t.push(chunk.to_string().as_bytes()).unwrap());
            }
            events.extend(t.finish());
            json!(
                events
                    .iter()
                    .map(|e| json!({"event": e.name, "data": e.data}))
                    .collect::<Vec<_>>()
            )
        }
        "anthropic_upstream_request" => {
            match anthropic_upstream::request_from_chat(input, "claude-up", false) {
                Ok(v) => v.body,
                Err(e) => json!({"error": e.message, "param": e.param}),
            }
        }
        "anthropic_upstream_answer" => {
            anthropic_upstream::answer_to_chat(input, 1_700_000_000, false)
        }
        "anthropic_upstream_json_answer" => {
            anthropic_upstream::answer_to_chat(input, 1_700_000_000, true)
        }
        "anthropic_upstream_stream" => {
            upstream_stream(anthropic_upstream::ChunkStream::new(1_700_000_000), input)
        }
        "anthropic_upstream_json_stream" => upstream_stream(
            anthropic_upstream::ChunkStream::new(1_700_000_000).answering_through_json_tool(),
            input,
        ),
        other => panic!("unknown golden kind {other}"),
    }
}

/// The steps a Messages event stream `input` becomes through `t`.
fn upstream_stream(mut t: anthropic_upstream::ChunkStream, input: &Value) -> Value {
    json!(
        input
            .as_array()
            .into_iter()
            .flatten()
            .map(|event| match t.push(event) {
                anthropic_upstream::StreamStep::Chunks(chunks) => json!(chunks),
                anthropic_upstream::StreamStep::Done => json!("done"),
                anthropic_upstream::StreamStep::Error { kind, message } => {
                    json!({"error": kind, "message": message})
                }
            })
            .collect::<Vec<_>>()
    )
}

#[test]
fn every_golden_file_translates_to_its_output() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/translate/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "golden files missing in {}",
        dir.display()
    );
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut case: Value = serde_json::from_str(&text).unwrap();
        let actual = translate(case["kind"].as_str().unwrap(), &case["in"]);
        if update {
            case["out"] = actual;
            let pretty = serde_json::to_string_pretty(&case).unwrap() + "\n";
            std::fs::write(&path, pretty).unwrap();
        } else {
            assert_eq!(actual, case["out"], "{}", path.display());
        }
    }
}
