//! Token estimates for answers that report no usage: a stream the client
//! left before its usage chunk, one whose upstream sent none, a request
//! abandoned before its answer. Cheap enough for every chunk of a stream:
//! sizes are read off the raw JSON, nothing is parsed.

use crate::openai::RawFields;
use crate::providers::sse::Needle;

/// The fields whose size estimates a request's prompt.
const PROMPT_FIELDS: [&str; 6] = [
    "messages",
    "input",
    "prompt",
    "system",
    "instructions",
    "tools",
];

/// A request's prompt tokens when no upstream reported them: one per four
/// bytes of its prompt fields, as `count_tokens` estimates.
pub fn prompt_tokens(body: &RawFields) -> u64 {
    let bytes: usize = PROMPT_FIELDS
        .iter()
        .filter_map(|field| body.get(field))
        .map(|raw| raw.get().len())
        .sum();
    bytes.div_ceil(4) as u64
}

/// The fields whose strings are a stream's generated text: a chat chunk's
/// (content, reasoning, tool arguments) and a native Anthropic event's.
static TEXT_FIELDS: [Needle; 6] = [
    Needle::new(b"\"content\":"),
    Needle::new(b"\"reasoning_content\":"),
    Needle::new(b"\"arguments\":"),
    Needle::new(b"\"text\":"),
    Needle::new(b"\"partial_json\":"),
    Needle::new(b"\"thinking\":"),
];

/// The text a stream has sent, counted for an estimate of its output
/// tokens without parsing its payloads: the length of each text field's
/// string (found with one vectorised search per field), about four bytes
/// to a token, and at least one token per chunk that carried text (OpenAI
/// sends one token a chunk).
#[derive(Debug, Default, Clone, Copy)]
pub struct SentText {
    /// Payloads that carried text.
    pub chunks: u64,
    text_bytes: u64,
}

impl SentText {
    /// Counts the text one payload carries.
    pub fn add(&mut self, payload: &[u8]) {
        let text: usize = TEXT_FIELDS
            .iter()
            .filter_map(|field| field.end_in(payload))
            .map(|end| string_len(&payload[end..]))
            .sum();
        if text > 0 {
            self.chunks += 1;
            self.text_bytes += text as u64;
        }
    }

    /// The output tokens estimated; none when no text was sent.
    pub fn tokens(self) -> u64 {
        self.text_bytes.div_ceil(4).max(self.chunks)
    }
}

/// The length of the JSON string `rest` starts with (after blanks), as
/// written, escapes included; 0 when it does not start with one.
fn string_len(rest: &[u8]) -> usize {
    let start = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let Some(body) = rest.get(start..).and_then(|r| r.strip_prefix(b"\"")) else {
        return 0;
    };
    let mut from = 0;
    while let Some(quote) = memchr::memchr(b'"', &body[from..]) {
        let end = from + quote;
        let backslashes = body[..end]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            return end;
        }
        from = end + 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> crate::openai::ProxyRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn output_is_estimated_from_the_text_the_chunks_carried() {
        let mut sent = SentText::default();
        assert_eq!(sent.tokens(), 0);
        let chunk = |text: &str| {
            format!(
                r#"{{"id":"c1","choices":[{{"delta":{{"role":"assistant","content":"{text}"}},"finish_reason":null}}]}}"#
            )
        };
        sent.add(chunk("").as_bytes());
        for _ in 0..10 {
            sent.add(chunk(&"w".repeat(40)).as_bytes());
        }
        sent.add(br#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#);
        assert_eq!(sent.tokens(), 100);
        // One token per chunk is counted by its chunks; escapes count as written.
        let mut single = SentText::default();
        for _ in 0..50 {
            single.add(chunk(r#"a\""#).as_bytes());
        }
        assert_eq!(single.tokens(), 50);
        // Tool arguments and native Anthropic text count too.
        let mut other = SentText::default();
        other.add(br#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments": "{\"city\":\"Paris\"}"}}]}}]}"#);
        other.add(
            br#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"12345678"}}"#,
        );
        assert_eq!(other.tokens(), (20_u64 + 8).div_ceil(4));
    }

    #[test]
    fn a_prompt_is_estimated_from_its_prompt_fields_only() {
        let req = request(
            r#"{"model":"m","messages":[{"role":"user","content":"abcdefgh"}],"temperature":0.5}"#,
        );
        let messages = r#"[{"role":"user","content":"abcdefgh"}]"#;
        assert_eq!(prompt_tokens(&req.rest), messages.len().div_ceil(4) as u64);
    }
}
