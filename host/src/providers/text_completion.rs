//! Chat requests to a deployment that serves only OpenAI's completions
//! endpoint (`text-completion-openai/`, such as `gpt-3.5-turbo-instruct`):
//! the messages become a `prompt` as LiteLLM writes it, and the completion
//! comes back as a chat completion, whole or chunk by chunk.
//!
//! One message gives its text as the prompt; several give one prompt each,
//! so the upstream writes one completion (one choice) per message. A part
//! or a field the completions endpoint has no place for (an image, a tool
//! call) is refused by name rather than left out.

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use super::{PayloadStream, UpstreamError, sse};
use crate::openai::RawFields;

/// The chat request's fields with `messages` turned into `prompt`.
pub fn request_fields(body: &RawFields) -> Result<RawFields, UpstreamError> {
    let messages = match body.parse::<Vec<Value>>("messages") {
        Some(Ok(messages)) => messages,
        _ => return Err(refused("`messages` must be a list".into(), "messages")),
    };
    let prompt = prompt(&messages)?;
    let mut fields = body.edited(|name, _| (name != "messages").then(|| name.clone()));
    fields
        .insert_value("prompt", &prompt)
        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    Ok(fields)
}

/// The prompt for `messages`: one message's text (or its token ids, as
/// sent), else one text per message.
fn prompt(messages: &[Value]) -> Result<Value, UpstreamError> {
    if let [message] = messages
        && let Some(Value::Array(content)) = message.get("content")
        && is_token_ids(content)
    {
        return Ok(Value::Array(content.clone()));
    }
    let mut texts = messages
        .iter()
        .enumerate()
        .map(|(i, message)| message_text(message, i).map(Value::String))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match texts.len() {
        1 => texts.swap_remove(0),
        _ => Value::Array(texts),
    })
}

/// Whether a message's content is token ids (a list of numbers, or of
/// lists of numbers), which the completions endpoint takes as a prompt.
fn is_token_ids(content: &[Value]) -> bool {
    let ids = |items: &[Value]| !items.is_empty() && items.iter().all(Value::is_u64);
    ids(content)
        || (!content.is_empty()
            && content
                .iter()
                .all(|item| item.as_array().is_some_and(|inner| ids(inner))))
}

/// The text of message `i`: its content, or its text parts joined.
fn message_text(message: &Value, i: usize) -> Result<String, UpstreamError> {
    for field in ["tool_calls", "function_call"] {
        if message.get(field).is_some_and(|v| !v.is_null()) {
            return Err(refused(
                format!("a text completion deployment has no place for `{field}`"),
                &format!("messages[{i}].{field}"),
            ));
        }
    }
    match message.get("content") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(refused(
                            "a text completion deployment takes text parts only".into(),
                            &format!("messages[{i}].content[{j}]"),
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(refused(
            "`content` must be a string or a list of parts".into(),
            &format!("messages[{i}].content"),
        )),
    }
}

/// A request refused before any call (400), naming the field.
fn refused(message: String, param: &str) -> UpstreamError {
    UpstreamError::Unsendable {
        message,
        param: Some(param.into()),
    }
}

/// A completions JSON answer as a chat completion; an error object in a
/// 200 body is that error.
pub fn json_reply(body: Bytes) -> Result<Bytes, UpstreamError> {
    let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(&body) else {
        // Not an object: the router's own check names what is wrong.
        return Ok(body);
    };
    if answer.get("error").is_some_and(|e| !e.is_null())
        && let Some(error) = sse::answer_error(&body)
    {
        return Err(error);
    }
    as_chat(
        &mut answer,
        "chat.completion",
        |text| json!({"role": "assistant", "content": text}),
    )?;
    to_bytes(&answer)
}

/// A completions stream as chat chunks: each choice's `text` becomes its
/// `delta.content`, the first chunk's deltas also naming the role.
pub fn stream_reply(payloads: PayloadStream) -> PayloadStream {
    let mut first = true;
    Box::pin(payloads.map(move |payload| {
        let payload = payload?;
        let Ok(Value::Object(mut chunk)) = serde_json::from_slice::<Value>(&payload) else {
            return Ok(payload);
        };
        let with_role = std::mem::take(&mut first);
        as_chat(&mut chunk, "chat.completion.chunk", |text| {
            if with_role {
                json!({"role": "assistant", "content": text})
            } else {
                json!({"content": text})
            }
        })?;
        to_bytes(&chunk)
    }))
}

/// Rewrites a completion (or chunk) in place as a chat one: `object`, and
/// each choice's `text` as the message (or delta) `message` makes of it.
/// A `text` that is not a string is no completion a client could read.
fn as_chat(
    answer: &mut Map<String, Value>,
    object: &str,
    message: impl Fn(Value) -> Value,
) -> Result<(), UpstreamError> {
    answer.insert("object".into(), Value::String(object.into()));
    let Some(Value::Array(choices)) = answer.get_mut("choices") else {
        return Ok(());
    };
    let field = if object == "chat.completion" {
        "message"
    } else {
        "delta"
    };
    for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
        let text = match choice.remove("text") {
            None | Some(Value::Null) => Value::Null,
            Some(text @ Value::String(_)) => text,
            Some(_) => {
                return Err(UpstreamError::Protocol(
                    "the upstream sent a completion whose `text` is not a string".into(),
                ));
            }
        };
        choice.insert(field.into(), message(text));
    }
    Ok(())
}

fn to_bytes(value: &Map<String, Value>) -> Result<Bytes, UpstreamError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| UpstreamError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> RawFields {
        serde_json::from_str(json).unwrap()
    }

    fn prompt_of(messages: Value) -> Result<Value, UpstreamError> {
        let body = fields(&json!({"messages": messages, "max_tokens": 5}).to_string());
        let out = request_fields(&body)?;
        assert!(out.get("messages").is_none());
        assert_eq!(out.value("max_tokens"), Some(json!(5)));
        Ok(out.value("prompt").unwrap())
    }

    fn param(error: UpstreamError) -> String {
        match error {
            UpstreamError::Unsendable { param, .. } => param.unwrap().into(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_message_is_the_prompt_and_several_are_one_prompt_each() {
        assert_eq!(
            prompt_of(json!([{"role": "user", "content": "Say hi"}])).unwrap(),
            json!("Say hi")
        );
        let parts = json!([{"role": "user", "content": [
            {"type": "text", "text": "Say "}, {"type": "text", "text": "hi"}]}]);
        assert_eq!(prompt_of(parts).unwrap(), json!("Say hi"));
        let two = json!([{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi"}]);
        assert_eq!(prompt_of(two).unwrap(), json!(["Be brief.", "Say hi"]));
        let ids = json!([{"role": "user", "content": [1, 2, 3]}]);
        assert_eq!(prompt_of(ids).unwrap(), json!([1, 2, 3]));
    }

    #[test]
    fn parts_and_calls_without_a_place_are_refused_by_name() {
        let image = json!([{"role": "user", "content": [
            {"type": "text", "text": "What is it?"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]);
        assert_eq!(
            param(prompt_of(image).unwrap_err()),
            "messages[0].content[1]"
        );
        let call = json!([{"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c"}]}]);
        assert_eq!(
            param(prompt_of(call).unwrap_err()),
            "messages[1].tool_calls"
        );
    }

    #[test]
    fn a_completion_reads_as_a_chat_completion() {
        let body = json!({"id": "cmpl-1", "object": "text_completion", "created": 1,
            "model": "gpt-3.5-turbo-instruct",
            "choices": [{"text": "Hi!", "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}});
        let out: Value =
            serde_json::from_slice(&json_reply(Bytes::from(body.to_string())).unwrap()).unwrap();
        assert_eq!(out["object"], "chat.completion");
        assert_eq!(
            out["choices"][0],
            json!({"index": 0, "logprobs": null, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Hi!"}})
        );
        assert_eq!(out["usage"]["total_tokens"], 4);
        assert_eq!(out["id"], "cmpl-1");
    }

    #[test]
    fn a_text_that_is_not_a_string_is_malformed() {
        let body = json!({"choices": [{"text": 42, "index": 0, "finish_reason": "stop"}]});
        assert!(matches!(
            json_reply(Bytes::from(body.to_string())),
            Err(UpstreamError::Protocol(_))
        ));
    }

    #[test]
    fn an_error_in_a_200_body_is_that_error() {
        let body = json!({"error": {"message": "slow down", "type": "rate_limit_error"}});
        match json_reply(Bytes::from(body.to_string())).unwrap_err() {
            UpstreamError::Status { status, .. } => assert_eq!(status, 429),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn chunks_read_as_chat_chunks_the_first_naming_the_role() {
        let chunk = |text: &str| {
            Ok(Bytes::from(
                json!({"object": "text_completion", "choices": [
                    {"text": text, "index": 0, "finish_reason": null}]})
                .to_string(),
            ))
        };
        let payloads: PayloadStream =
            Box::pin(futures_util::stream::iter([chunk("Hi"), chunk("!")]));
        let out: Vec<Value> = stream_reply(payloads)
            .map(|p| serde_json::from_slice(&p.unwrap()).unwrap())
            .collect()
            .await;
        assert_eq!(out[0]["object"], "chat.completion.chunk");
        assert_eq!(
            out[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": "Hi"})
        );
        assert_eq!(out[1]["choices"][0]["delta"], json!({"content": "!"}));
    }
}
