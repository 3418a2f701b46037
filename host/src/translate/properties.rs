//! Properties: any chat chunk stream translates into a well-formed Messages
//! and Responses event sequence.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Event, anthropic, responses};

/// One generated chunk.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Reasoning(String),
    /// A tool call piece: index, whether it carries the id and name, arguments.
    Call(u64, bool, String),
    Finish(&'static str),
    Usage(u64, u64),
    Garbage,
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => "[a-zé \n\"]{1,8}".prop_map(Piece::Text),
        2 => "[a-z ]{1,6}".prop_map(Piece::Reasoning),
        3 => (0u64..3, any::<bool>(), "[a-z{}\":]{0,6}").prop_map(|(i, h, a)| Piece::Call(i, h, a)),
        1 => prop::sample::select(vec!["stop", "length", "tool_calls", "content_filter"]).prop_map(Piece::Finish),
        1 => (0u64..100, 0u64..100).prop_map(|(a, b)| Piece::Usage(a, b)),
        1 => Just(Piece::Garbage),
    ]
}

fn payload(p: &Piece) -> Vec<u8> {
    let choice = |delta: Value, finish: Value| json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let v = match p {
        Piece::Text(t) => choice(json!({"content": t}), Value::Null),
        Piece::Reasoning(t) => choice(json!({"reasoning_content": t}), Value::Null),
        Piece::Call(i, head, args) => {
            let mut call = json!({"index": i, "function": {"arguments": args}});
            if *head {
                call["id"] = json!(format!("call_{i}"));
                call["function"]["name"] = json!(format!("tool_{i}"));
            }
            choice(json!({"tool_calls": [call]}), Value::Null)
        }
        Piece::Finish(f) => choice(json!({}), json!(f)),
        Piece::Usage(a, b) => {
            json!({"choices": [], "usage": {"prompt_tokens": a, "completion_tokens": b}})
        }
        Piece::Garbage => return b"not json".to_vec(),
    };
    v.to_string().into_bytes()
}

/// A piece's events; only a piece that is not JSON is refused (a stream
/// would end there; the property goes on past it).
fn pushed(result: Result<Vec<Event>, String>, piece: &Piece) -> Vec<Event> {
    match result {
        Ok(events) => events,
        Err(error) => {
            assert!(matches!(piece, Piece::Garbage), "{error}");
            Vec::new()
        }
    }
}

fn all_text(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn messages_events(pieces: &[Piece]) -> Vec<Event> {
    let mut t = anthropic::MessagesStream::new("msg_p", "m");
    let mut events = t.start();
    for p in pieces {
        events.extend(pushed(t.push(&payload(p)), p));
    }
    events.extend(t.finish());
    events
}

fn responses_events(pieces: &[Piece]) -> Vec<Event> {
    let envelope = responses::Envelope::new(&json!({"model": "m"}), "resp_p", 1);
    let mut t = responses::ResponsesStream::new(envelope);
    let mut events = t.start();
    for p in pieces {
        events.extend(pushed(t.push(&payload(p)), p));
    }
    events.extend(t.finish());
    events
}

/// Checks Anthropic's sequence: start and ping first, blocks started and
/// stopped in order with deltas only inside the open block, the end last.
/// Returns the text of the text deltas.
fn check_messages(events: &[Event]) -> String {
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names[..2], ["message_start", "ping"]);
    assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
    let (mut open, mut next, mut text) = (None::<u64>, 0u64, String::new());
    for e in &events[2..events.len() - 2] {
        assert_eq!(e.data["type"], e.name.as_str());
        let index = e.data["index"].as_u64();
        match e.name.as_str() {
            "content_block_start" => {
                assert_eq!(open, None, "a block starts while another is open");
                assert_eq!(index, Some(next));
                open = index;
            }
            "content_block_delta" => {
                assert_eq!(index, open, "a delta outside its block");
                if e.data["delta"]["type"] == "text_delta" {
                    text.push_str(e.data["delta"]["text"].as_str().unwrap());
                }
            }
            "content_block_stop" => {
                assert_eq!(index, open);
                open = None;
                next += 1;
            }
            other => panic!("unexpected event {other}"),
        }
    }
    assert_eq!(open, None, "a block was never stopped");
    text
}

/// Checks the Responses sequence: numbers 0, 1, 2…, every added item done
/// before the next, and the final response's output matching the items.
/// Returns the text of the output_text deltas and each call's arguments.
fn check_responses(events: &[Event]) -> (String, BTreeMap<String, String>) {
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e.data["sequence_number"], n as u64);
        assert_eq!(e.data["type"], e.name.as_str());
    }
    assert_eq!(events[0].name, "response.created");
    assert_eq!(events[1].name, "response.in_progress");
    let last = events.last().unwrap();
    assert!(matches!(
        last.name.as_str(),
        "response.completed" | "response.incomplete"
    ));
    let (mut open, mut done) = (None::<u64>, Vec::new());
    let (mut text, mut args) = (String::new(), BTreeMap::<String, String>::new());
    for e in &events[2..events.len() - 1] {
        let index = e.data["output_index"].as_u64();
        match e.name.as_str() {
            "response.output_item.added" => {
                assert_eq!(open, None);
                assert_eq!(index, Some(done.len() as u64));
                open = index;
            }
            "response.output_item.done" => {
                assert_eq!(index, open);
                open = None;
                done.push(e.data["item"].clone());
            }
            "response.output_text.delta" => {
                assert_eq!(index, open);
                text.push_str(e.data["delta"].as_str().unwrap());
            }
            "response.function_call_arguments.delta" => {
                assert_eq!(index, open);
                let id = e.data["item_id"].as_str().unwrap().to_owned();
                args.entry(id)
                    .or_default()
                    .push_str(e.data["delta"].as_str().unwrap());
            }
            _ => assert_eq!(index, open, "{} outside its item", e.name),
        }
    }
    assert_eq!(open, None, "an item was never done");
    assert_eq!(last.data["response"]["output"], Value::Array(done.clone()));
    for item in &done {
        if item["type"] == "function_call" {
            let streamed = args
                .get(item["id"].as_str().unwrap())
                .cloned()
                .unwrap_or_default();
            assert_eq!(item["arguments"].as_str().unwrap(), streamed);
        }
    }
    let final_text: String = done
        .iter()
        .filter(|i| i["type"] == "message")
        .filter_map(|i| i["content"][0]["text"].as_str())
        .collect();
    assert_eq!(final_text, text);
    (text, args)
}

/// Each call's arguments, its pieces joined, sorted: what a translation must
/// give as one block (item) per call, whatever came between its pieces.
fn each_calls_arguments(pieces: &[Piece]) -> Vec<String> {
    let mut calls = BTreeMap::<u64, String>::new();
    for p in pieces {
        if let Piece::Call(i, _, args) = p {
            calls.entry(*i).or_default().push_str(args);
        }
    }
    let mut arguments: Vec<String> = calls.into_values().collect();
    arguments.sort();
    arguments
}

/// The arguments of each `tool_use` block of a Messages stream, sorted.
fn messages_tool_arguments(events: &[Event]) -> Vec<String> {
    let mut blocks = BTreeMap::<u64, String>::new();
    for e in events {
        let index = e.data["index"].as_u64().unwrap_or_default();
        if e.name == "content_block_start" && e.data["content_block"]["type"] == "tool_use" {
            blocks.insert(index, String::new());
        }
        if let (Some(block), Some(piece)) = (
            blocks.get_mut(&index),
            e.data["delta"]["partial_json"].as_str(),
        ) {
            block.push_str(piece);
        }
    }
    let mut arguments: Vec<String> = blocks.into_values().collect();
    arguments.sort();
    arguments
}

proptest! {
    #[test]
    fn any_chunk_stream_makes_a_well_formed_messages_stream(pieces in prop::collection::vec(piece(), 0..30)) {
        let events = messages_events(&pieces);
        let text = check_messages(&events);
        prop_assert_eq!(text, all_text(&pieces));
        // A call's arguments are sent whole when they are a JSON object,
        // else not at all (its input stays the block's `{}`).
        let mut expected: Vec<String> = each_calls_arguments(&pieces)
            .into_iter()
            .map(|a| if serde_json::from_str::<serde_json::Map<String, Value>>(&a).is_ok() { a } else { String::new() })
            .collect();
        expected.sort();
        prop_assert_eq!(messages_tool_arguments(&events), expected);
    }

    #[test]
    fn any_chunk_stream_makes_a_well_formed_responses_stream(pieces in prop::collection::vec(piece(), 0..30)) {
        let (text, args) = check_responses(&responses_events(&pieces));
        prop_assert_eq!(text, all_text(&pieces));
        // A call given without arguments gets `{}` as its one piece.
        let mut expected: Vec<String> = each_calls_arguments(&pieces)
            .into_iter()
            .map(|a| if a.is_empty() { "{}".to_owned() } else { a })
            .collect();
        expected.sort();
        let mut given: Vec<String> = args.into_values().collect();
        given.sort();
        prop_assert_eq!(given, expected);
    }
}

/// One generated content block of an Anthropic stream, as its delta pieces.
#[derive(Debug, Clone)]
enum Block {
    Text(Vec<String>),
    Thinking(Vec<String>),
    Tool(Vec<String>),
}

fn block() -> impl Strategy<Value = Block> {
    let pieces = || prop::collection::vec("[a-zé \n\"{}:]{0,6}", 0..5);
    prop_oneof![
        3 => pieces().prop_map(Block::Text),
        1 => pieces().prop_map(Block::Thinking),
        2 => pieces().prop_map(Block::Tool),
    ]
}

/// The Messages events for `blocks`, with pings between blocks.
fn anthropic_events(blocks: &[Block], stop: &str) -> Vec<Value> {
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "m", "model": "c", "usage": {"input_tokens": 3, "cache_read_input_tokens": 2, "output_tokens": 1}}}),
    ];
    for (i, b) in blocks.iter().enumerate() {
        let (start, kind, key, pieces) = match b {
            Block::Text(p) => (json!({"type": "text", "text": ""}), "text_delta", "text", p),
            Block::Thinking(p) => (
                json!({"type": "thinking", "thinking": ""}),
                "thinking_delta",
                "thinking",
                p,
            ),
            Block::Tool(p) => (
                json!({"type": "tool_use", "id": format!("t{i}"), "name": "f", "input": {}}),
                "input_json_delta",
                "partial_json",
                p,
            ),
        };
        events.push(json!({"type": "ping"}));
        events.push(json!({"type": "content_block_start", "index": i, "content_block": start}));
        for piece in pieces {
            events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": kind, key: piece}}));
        }
        events.push(json!({"type": "content_block_stop", "index": i}));
    }
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 9}}));
    events.push(json!({"type": "message_stop"}));
    events
}

proptest! {
    #[test]
    fn any_anthropic_stream_makes_well_formed_chat_chunks(
        blocks in prop::collection::vec(block(), 0..8),
        stop in prop::sample::select(vec!["end_turn", "max_tokens", "tool_use", "stop_sequence"]),
    ) {
        let mut t = super::anthropic_upstream::ChunkStream::new(1);
        let mut chunks = Vec::new();
        let mut done = 0;
        for event in anthropic_events(&blocks, stop) {
            match t.push(&event) {
                super::anthropic_upstream::StreamStep::Chunks(c) => {
                    prop_assert_eq!(done, 0, "a chunk after message_stop");
                    chunks.extend(c);
                }
                super::anthropic_upstream::StreamStep::Done => done += 1,
                super::anthropic_upstream::StreamStep::Error { .. } => prop_assert!(false, "no error was sent"),
            }
        }
        prop_assert_eq!(done, 1);
        prop_assert_eq!(&chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let finished: Vec<usize> = chunks.iter().enumerate()
            .filter(|(_, c)| !c["choices"][0]["finish_reason"].is_null())
            .map(|(i, _)| i)
            .collect();
        // The finish comes last but for the usage, in a chunk of its own.
        prop_assert_eq!(finished, vec![chunks.len() - 2]);
        let finish = &chunks[chunks.len() - 2];
        prop_assert_eq!(&finish["choices"][0]["finish_reason"], super::anthropic_upstream::finish_reason(stop));
        let last = &chunks[chunks.len() - 1];
        prop_assert_eq!(&last["choices"], &json!([]));
        prop_assert_eq!(&last["usage"]["prompt_tokens"], 5);
        prop_assert_eq!(&last["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
        prop_assert_eq!(&last["usage"]["completion_tokens"], 9);
        let delta = |key: &str| -> String {
            chunks.iter().filter_map(|c| c["choices"][0]["delta"][key].as_str()).collect()
        };
        let want = |pick: fn(&Block) -> Option<&Vec<String>>| -> String {
            blocks.iter().filter_map(pick).flatten().cloned().collect()
        };
        prop_assert_eq!(delta("content"), want(|b| match b { Block::Text(p) => Some(p), _ => None }));
        prop_assert_eq!(delta("reasoning_content"), want(|b| match b { Block::Thinking(p) => Some(p), _ => None }));
        // Each tool block is one call, indexed in order, its pieces joined.
        let tools: Vec<&Vec<String>> = blocks.iter().filter_map(|b| match b { Block::Tool(p) => Some(p), _ => None }).collect();
        let mut args = vec![String::new(); tools.len()];
        let mut ids = vec![Value::Null; tools.len()];
        for c in &chunks {
            for call in c["choices"][0]["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let i = usize::try_from(call["index"].as_u64().unwrap()).unwrap();
                if !call["id"].is_null() {
                    prop_assert!(ids[i].is_null(), "the id is sent once");
                    ids[i] = call["id"].clone();
                }
                args[i].push_str(call["function"]["arguments"].as_str().unwrap());
            }
        }
        // A call whose pieces are all empty (a tool without arguments) gets `{}`.
        for (i, pieces) in tools.iter().enumerate() {
            prop_assert!(!ids[i].is_null());
            let joined = pieces.concat();
            let expected = if joined.is_empty() { "{}" } else { joined.as_str() };
            prop_assert_eq!(args[i].as_str(), expected);
        }
    }
}
