//! Taking a deployment's secrets (its key, and credentials among its
//! `extra_headers`) out of everything its upstream sends back: JSON
//! answers, error texts and stream events. An upstream that echoes a key
//! must not hand it to the gateway's clients, whole, JSON-escaped, or in
//! pieces spread over a stream's events.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::UpstreamError;
use crate::config::Secret;

/// Searchers for a deployment's secrets, built once with the target: its
/// key, and the credentials among its `extra_headers`. Every answer, chunk
/// and error text is searched for them.
pub struct KeyRedactor {
    /// One searcher per secret, the longest first, so that a secret holding
    /// another (`Bearer sk-...` and `sk-...`) is replaced whole.
    finders: Vec<memchr::memmem::Finder<'static>>,
}

/// The shortest `api_key` searched for.
const MIN_KEY_LEN: usize = 4;
/// The shortest credential searched for in `extra_headers`: shorter values
/// would replace ordinary words in answers.
const MIN_HEADER_SECRET_LEN: usize = 8;

impl KeyRedactor {
    /// The redactor for `key` and the credentials in `extra_headers`;
    /// `None` when there is nothing to search for.
    /// `login` holds what an api_base's login gave: its password and the
    /// `Authorization` value it became.
    pub fn new(
        key: Option<&Secret>,
        extra_headers: &BTreeMap<String, String>,
        login: &[&str],
    ) -> Option<Self> {
        let mut secrets: Vec<&str> = key
            .map(Secret::expose)
            .filter(|key| key.len() >= MIN_KEY_LEN && looks_secret(key))
            .into_iter()
            .collect();
        for (name, value) in extra_headers {
            secrets.extend(header_secrets(name, value));
        }
        for secret in login {
            secrets.extend(header_secrets("authorization", secret));
        }
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        let finders: Vec<_> = secrets
            .into_iter()
            .map(|secret| memchr::memmem::Finder::new(secret.as_bytes()).into_owned())
            .collect();
        (!finders.is_empty()).then_some(Self { finders })
    }

    /// `payload` with every occurrence of a secret replaced by `[redacted]`,
    /// also where JSON escapes spell it (`\u0073k-...`), which a client
    /// reads as the secret itself.
    /// One the gateway cannot read as JSON to search is refused rather than
    /// passed on unsearched.
    pub fn payload(&self, payload: Bytes) -> Result<Bytes, UpstreamError> {
        let payload = self
            .finders
            .iter()
            .fold(payload, |payload, finder| redact_payload(payload, finder));
        if !has_escapes(&payload) {
            return Ok(payload);
        }
        let mut value = parsed(&payload)?;
        Ok(if self.redact_strings(&mut value) {
            serialized(&value).unwrap_or(payload)
        } else {
            payload
        })
    }

    /// Redacts every string in `value`, as decoded; whether any changed.
    fn redact_strings(&self, value: &mut Value) -> bool {
        match value {
            Value::String(text) => {
                let mut clean = self.text(text);
                // A string may hold JSON of its own (tool arguments), whose
                // escapes its reader decodes in turn.
                if clean.contains("\\u") || clean.contains("\\/") {
                    let decoded = unescaped(&clean);
                    let redacted = self.text(&decoded);
                    if redacted != decoded {
                        clean = redacted;
                    }
                }
                let changed = clean != *text;
                *text = clean;
                changed
            }
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.redact_strings(item) | changed),
            Value::Object(map) => {
                let mut changed = map
                    .values_mut()
                    .fold(false, |changed, item| self.redact_strings(item) | changed);
                // A name can spell a secret as well as a value.
                if map.keys().any(|name| self.text(name) != *name) {
                    *map = std::mem::take(map)
                        .into_iter()
                        .map(|(name, item)| (self.text(&name), item))
                        .collect();
                    changed = true;
                }
                changed
            }
            _ => false,
        }
    }

    /// The secrets, longest first.
    fn secrets(&self) -> impl Iterator<Item = &[u8]> {
        self.finders.iter().map(|finder| finder.needle())
    }

    /// `message` with every occurrence of a secret replaced by `[redacted]`.
    pub fn text(&self, message: &str) -> String {
        let mut text = message.to_owned();
        for finder in &self.finders {
            if finder.find(text.as_bytes()).is_some()
                && let Ok(secret) = std::str::from_utf8(finder.needle())
            {
                text = text.replace(secret, "[redacted]");
            }
        }
        text
    }
}

/// The credentials an `extra_headers` entry carries: the value of a header
/// whose name says it holds one (`Authorization`, `x-api-key`, `X-Auth-Token`,
/// ...), and the token of a `<scheme> <token>` value.
fn header_secrets<'a>(name: &str, value: &'a str) -> impl Iterator<Item = &'a str> {
    let name = name.to_ascii_lowercase();
    let credential = [
        "auth",
        "key",
        "token",
        "secret",
        "password",
        "cookie",
        "signature",
    ]
    .iter()
    .any(|word| name.contains(word));
    let value = value.trim();
    let token = value.split_once(' ').map(|(_, token)| token.trim());
    [Some(value), token]
        .into_iter()
        .flatten()
        .filter(move |secret| credential && secret.len() >= MIN_HEADER_SECRET_LEN)
}

/// Whether a key is worth searching answers for: a placeholder that
/// key-less servers are given (`none`, `EMPTY`, `fake-key`), a short plain
/// word (`stop`) or a short number (`17000`) is no secret, and replacing it
/// would rewrite the model's text, or the answer's own fields and numbers,
/// wherever it occurs.
fn looks_secret(key: &str) -> bool {
    const PLACEHOLDERS: &[&str] = &[
        "fake-key",
        "not-needed",
        "no-key",
        "sk-no-key-required",
        "lm-studio",
        "placeholder",
    ];
    let plain_word = key.len() < 12
        && (key.bytes().all(|b| b.is_ascii_alphabetic())
            || key.bytes().all(|b| b.is_ascii_digit()));
    !plain_word && !PLACEHOLDERS.iter().any(|p| key.eq_ignore_ascii_case(p))
}

/// `payload` with every occurrence of `key` (the needle `finder` searches
/// for) replaced by `[redacted]`.
fn redact_payload(payload: Bytes, finder: &memchr::memmem::Finder<'_>) -> Bytes {
    let key_len = finder.needle().len();
    if key_len == 0 || finder.find(&payload).is_none() {
        return payload;
    }
    let mut out = Vec::with_capacity(payload.len());
    let mut rest: &[u8] = &payload;
    while let Some(pos) = finder.find(rest) {
        out.extend_from_slice(&rest[..pos]);
        out.extend_from_slice(b"[redacted]");
        rest = &rest[pos + key_len..];
    }
    out.extend_from_slice(rest);
    Bytes::from(out)
}

/// Whether JSON text holds an escape that may spell part of a secret
/// (`\u`, or `\/` for a secret with a slash).
fn has_escapes(payload: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', payload).any(|at| matches!(payload.get(at + 1), Some(b'u' | b'/')))
}

/// `text` with JSON's `\uXXXX` and `\/` escapes decoded (others kept), as
/// a reader of JSON held in a string would see it.
fn unescaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let decoded = match after.as_bytes().first() {
            Some(b'/') => Some(('/', 1)),
            Some(b'u') => after
                .get(1..5)
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .and_then(char::from_u32)
                .map(|c| (c, 5)),
            _ => None,
        };
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &after[len..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A payload that must be searched as decoded JSON.
fn parsed(payload: &[u8]) -> Result<Value, UpstreamError> {
    serde_json::from_slice(payload).map_err(|e| {
        UpstreamError::Protocol(format!(
            "the upstream sent JSON the gateway cannot read to check it for the deployment's \
             key ({e})"
        ))
    })
}

fn serialized(value: &Value) -> Option<Bytes> {
    serde_json::to_vec(value).ok().map(Bytes::from)
}

/// An event's own fields that tell apart the texts one stream carries (an
/// Anthropic block, a Responses output item and its part); a list's items
/// (chat's choices and tool calls) go by their `index`.
const INDEX_FIELDS: &[&str] = &["index", "output_index", "content_index", "summary_index"];

/// The most texts a stream's redactor remembers the end of: past it, ends
/// that hold nothing back are forgotten.
const MOST_REMEMBERED: usize = 1024;

/// The most of a secret's start a stream may show before the rest is
/// held back: a text ending in fewer characters of it goes out as it is.
const MOST_SHOWN: usize = 8;

/// The end of one joined text that begins a secret.
struct Pending {
    /// That end: a proper prefix of a secret.
    text: String,
    /// How many of its bytes were sent; the rest is held back.
    sent: usize,
}

impl Pending {
    fn holds(&self) -> bool {
        self.sent < self.text.len()
    }
}

/// A [`KeyRedactor`] for one stream: it also follows each text from event
/// to event (every string, by its place: clients join a delta's strings,
/// a tool call's `name` as much as its `arguments`), so that a secret sent
/// in pieces is caught. The end of a text that begins a secret is
/// remembered; once it is longer than [`MOST_SHOWN`] (or half the secret),
/// the rest is held back until the next piece of that text shows whether
/// it is the secret (then `[redacted]`) or not (then sent ahead of the
/// piece). A stream that ends while holding some drops it: it is the start
/// of a secret. Events are parsed only when some text is held back, or a
/// scan of the raw bytes finds a string that may begin or continue one.
pub struct StreamRedactor {
    redactor: Arc<KeyRedactor>,
    /// By the text's place in the event (its path, with its indices). At
    /// most one entry per joined text of the stream, each shorter than a
    /// secret: bounded by the stream's own size limit.
    pending: HashMap<String, Pending>,
    /// How many of them hold text back.
    holding: usize,
}

impl StreamRedactor {
    pub fn new(redactor: Arc<KeyRedactor>) -> Self {
        Self {
            redactor,
            pending: HashMap::new(),
            holding: 0,
        }
    }

    /// Error text, as [`KeyRedactor::text`].
    pub fn text(&self, message: &str) -> String {
        self.redactor.text(message)
    }

    /// One event's payload, redacted (as [`KeyRedactor::payload`]).
    pub fn payload(&mut self, payload: Bytes) -> Result<Bytes, UpstreamError> {
        let payload = self.redactor.payload(payload)?;
        if !self.may_hold_a_piece(&payload) {
            return Ok(payload);
        }
        let mut value = parsed(&payload)?;
        // An event's own indices name its texts, 0 when it gives none.
        let mut path = String::new();
        for field in INDEX_FIELDS {
            let n = value.get(*field).and_then(Value::as_u64).unwrap_or(0);
            let _ = write!(path, "#{field}={n}");
        }
        Ok(if self.walk(&mut value, &mut path) {
            serialized(&value).unwrap_or(payload)
        } else {
            payload
        })
    }

    /// Whether a string in the raw event may end with a secret's start, or
    /// begin with what a remembered end lacks (or hides either in escapes).
    fn may_hold_a_piece(&self, raw: &[u8]) -> bool {
        if has_escapes(raw) || self.holding > 0 {
            return true;
        }
        let ends_with_a_start = self.redactor.secrets().any(|secret| {
            memchr::memchr_iter(secret[0], raw).any(|at| {
                let shared = raw[at..]
                    .iter()
                    .zip(secret)
                    .take_while(|(a, b)| a == b)
                    .count();
                shared < secret.len()
                    && raw.get(at + shared) == Some(&b'"')
                    && raw.get(at + shared + 1) != Some(&b':')
            })
        });
        if ends_with_a_start {
            return true;
        }
        if self.pending.is_empty() {
            return false;
        }
        // The bytes a remembered end would continue with, sought at the
        // start of a string: one pass over the event however many there are.
        let mut next = [false; 256];
        for pending in self.pending.values() {
            for secret in self.redactor.secrets() {
                if secret.starts_with(pending.text.as_bytes()) {
                    next[usize::from(secret[pending.text.len()])] = true;
                }
            }
        }
        memchr::memchr_iter(b'"', raw)
            .any(|at| raw.get(at + 1).is_some_and(|b| next[usize::from(*b)]))
    }

    /// Follows every text in `value`; whether any changed.
    fn walk(&mut self, value: &mut Value, path: &mut String) -> bool {
        let start = path.len();
        let mut changed = false;
        match value {
            Value::String(text) => {
                if let Some(clean) = self.piece(path, text) {
                    *text = clean;
                    changed = true;
                }
            }
            Value::Object(map) => {
                for (name, item) in map.iter_mut() {
                    path.push('/');
                    path.push_str(name);
                    changed |= self.walk(item, path);
                    path.truncate(start);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let index = item.get("index").and_then(Value::as_u64);
                    let _ = write!(path, "/{}", index.unwrap_or(i as u64));
                    changed |= self.walk(item, path);
                    path.truncate(start);
                }
            }
            _ => {}
        }
        changed
    }

    /// The next piece of the joined text at `path` as it may be sent;
    /// `None` when it goes out as it came.
    fn piece(&mut self, path: &str, text: &str) -> Option<String> {
        // Whole secrets are gone already ([`KeyRedactor::payload`]): a text
        // with nothing remembered that does not end like one goes as it is.
        if !self.pending.contains_key(path) && self.secret_start_at_end(text, 0).is_none() {
            return None;
        }
        let (mut joined, sent) = match self.pending.remove(path) {
            Some(pending) => {
                if pending.holds() {
                    self.holding -= 1;
                }
                (pending.text, pending.sent)
            }
            None => (String::new(), 0),
        };
        joined.push_str(text);
        // The secrets in the joined text, each from where it was not yet sent.
        let mut out = String::with_capacity(text.len());
        let mut at = sent;
        let mut redacted_to = 0;
        for (start, end) in secrets_in(&self.redactor, joined.as_bytes()) {
            out.push_str(&joined[at..start.max(at)]);
            out.push_str("[redacted]");
            at = end;
            redacted_to = end;
        }
        out.push_str(&joined[at..]);
        if let Some((start, hold_from)) = self.secret_start_at_end(&joined, redacted_to) {
            let held_from = if joined.len() - start >= hold_from {
                start.max(sent)
            } else {
                joined.len()
            };
            out.truncate(out.len() - (joined.len() - held_from));
            let pending = Pending {
                text: joined[start..].to_owned(),
                sent: held_from - start,
            };
            self.remember(path, pending);
        }
        (out != text).then_some(out)
    }

    /// Remembers the end of the text at `path`, forgetting an end that
    /// holds nothing back when [`MOST_REMEMBERED`] are kept.
    fn remember(&mut self, path: &str, pending: Pending) {
        if self.pending.len() >= MOST_REMEMBERED
            && let Some(idle) = self
                .pending
                .iter()
                .find(|(_, p)| !p.holds())
                .map(|(path, _)| path.clone())
        {
            self.pending.remove(&idle);
        }
        if pending.holds() {
            self.holding += 1;
        }
        self.pending.insert(path.to_owned(), pending);
    }

    /// Where `text` (from byte `from`) ends with a proper prefix of a
    /// secret, the longest one: its start and how long it may grow before
    /// it is held back.
    fn secret_start_at_end(&self, text: &str, from: usize) -> Option<(usize, usize)> {
        let bytes = &text.as_bytes()[from..];
        self.redactor
            .secrets()
            .filter_map(|secret| {
                let longest = (secret.len() - 1).min(bytes.len());
                (1..=longest)
                    .rev()
                    .find(|&k| bytes.ends_with(&secret[..k]))
                    .map(|k| (k, (secret.len() / 2).clamp(1, MOST_SHOWN)))
            })
            .max_by_key(|(k, _)| *k)
            .map(|(k, hold_from)| (text.len() - k, hold_from))
    }
}

/// Where the secrets occur in `text`, in order, without overlaps (a longer
/// secret first where two start together).
fn secrets_in(redactor: &KeyRedactor, text: &[u8]) -> Vec<(usize, usize)> {
    let mut found: Vec<(usize, usize)> = redactor
        .finders
        .iter()
        .flat_map(|finder| {
            let len = finder.needle().len();
            finder.find_iter(text).map(move |at| (at, at + len))
        })
        .collect();
    found.sort_by_key(|&(start, end)| (start, std::cmp::Reverse(end)));
    let mut kept: Vec<(usize, usize)> = Vec::with_capacity(found.len());
    for (start, end) in found {
        if kept.last().is_none_or(|&(_, last_end)| start >= last_end) {
            kept.push((start, end));
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_lose_every_copy_of_the_key() {
        let p = Bytes::from_static(br#"{"error":{"message":"k sk-1234 and sk-1234!"}}"#);
        assert_eq!(
            redact_payload(p, &memchr::memmem::Finder::new("sk-1234")),
            Bytes::from_static(br#"{"error":{"message":"k [redacted] and [redacted]!"}}"#)
        );
        let clean = Bytes::from_static(b"{}");
        assert_eq!(
            redact_payload(clean.clone(), &memchr::memmem::Finder::new("sk-1234")),
            clean
        );
    }

    #[test]
    fn credentials_in_extra_headers_are_redacted_beside_the_key() {
        let headers = BTreeMap::from([
            (
                "Authorization".to_owned(),
                "Bearer sk-from-a-header-456".to_owned(),
            ),
            ("X-Title".to_owned(), "my shared application".to_owned()),
            ("x-api-key".to_owned(), "short".to_owned()),
        ]);
        let key = Secret::new("sk-1234".to_owned());
        let redactor = KeyRedactor::new(Some(&key), &headers, &[]).unwrap();
        assert_eq!(
            redactor.text("sent Bearer sk-from-a-header-456, sk-from-a-header-456 and sk-1234"),
            "sent [redacted], [redacted] and [redacted]"
        );
        let payload =
            Bytes::from_static(b"{\"c\":\"sk-from-a-header-456 for my shared application\"}");
        assert_eq!(
            redactor.payload(payload).unwrap(),
            Bytes::from_static(b"{\"c\":\"[redacted] for my shared application\"}")
        );
        assert!(KeyRedactor::new(None, &BTreeMap::new(), &[]).is_none());
    }

    #[test]
    fn placeholder_keys_leave_answers_as_written() {
        for placeholder in [
            "none",
            "EMPTY",
            "fake",
            "stop",
            "dummy",
            "fake-key",
            "not-needed",
            "17000",
        ] {
            let key = Secret::new(placeholder.to_owned());
            assert!(
                KeyRedactor::new(Some(&key), &BTreeMap::new(), &[]).is_none(),
                "{placeholder}"
            );
        }
        let real = Secret::new("sk-test-key".to_owned());
        assert!(KeyRedactor::new(Some(&real), &BTreeMap::new(), &[]).is_some());
    }

    fn stream_redactor(key: &str) -> StreamRedactor {
        let key = Secret::new(key.to_owned());
        StreamRedactor::new(Arc::new(
            KeyRedactor::new(Some(&key), &BTreeMap::new(), &[]).unwrap(),
        ))
    }

    /// The chat chunks for `pieces` of one content, redacted; the content
    /// a client joins from them.
    fn joined_content(redactor: &mut StreamRedactor, pieces: &[&str]) -> String {
        pieces
            .iter()
            .map(|piece| {
                let chunk = serde_json::json!({"object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": piece}}]});
                let out = redactor.payload(Bytes::from(chunk.to_string())).unwrap();
                let out: Value = serde_json::from_slice(&out).unwrap();
                out["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn a_key_sent_in_pieces_never_reaches_the_client_past_its_start() {
        let key = "sk-upstream-secret-0123456789";
        for size in [1, 2, 3, 5, 7, 9, 13] {
            let text = format!("your key is {key} ok");
            let pieces: Vec<String> = text
                .as_bytes()
                .chunks(size)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect();
            let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
            let joined = joined_content(&mut stream_redactor(key), &pieces);
            assert!(!joined.contains(&key[MOST_SHOWN..]), "{size}: {joined}");
            assert!(joined.ends_with("[redacted] ok"), "{size}: {joined}");
        }
    }

    #[test]
    fn text_that_only_begins_like_a_key_is_sent_whole_and_in_order() {
        let key = "sk-upstream-secret-0123456789";
        for pieces in [
            &["it is sk", "-upstream-sec", "ond time, yes", "s"][..],
            &["export KEY=sk-upstream-", "YOUR_KEY"],
            &["a sk-upstream-", "X ", "sunny"],
        ] {
            let joined = joined_content(&mut stream_redactor(key), pieces);
            assert_eq!(joined, pieces.concat());
        }
    }

    #[test]
    fn a_key_is_followed_whether_or_not_chunks_name_their_index() {
        let key = "sk-upstream-secret-0123456789";
        let mut redactor = stream_redactor(key);
        let mut client = String::new();
        for (i, piece) in ["key sk-up", "stream-sec", "ret-0123", "456789 ok"]
            .iter()
            .enumerate()
        {
            let choice = match i % 2 {
                0 => serde_json::json!({"index": 0, "delta": {"content": piece}}),
                _ => serde_json::json!({"delta": {"content": piece}}),
            };
            let chunk = serde_json::json!({"choices": [choice]});
            let out: Value =
                serde_json::from_slice(&redactor.payload(Bytes::from(chunk.to_string())).unwrap())
                    .unwrap();
            client.push_str(out["choices"][0]["delta"]["content"].as_str().unwrap());
        }
        assert_eq!(client, "key sk-up[redacted] ok");
    }

    #[test]
    fn a_key_spread_over_a_tool_calls_name_is_caught() {
        let key = "sk-upstream-secret-0123456789";
        let mut redactor = stream_redactor(key);
        let mut name = String::new();
        for piece in ["sk-upstream", "-secret-0123", "456789"] {
            let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"name": piece}}]}}]});
            let out: Value =
                serde_json::from_slice(&redactor.payload(Bytes::from(chunk.to_string())).unwrap())
                    .unwrap();
            name.push_str(
                out["choices"][0]["delta"]["tool_calls"][0]["function"]["name"]
                    .as_str()
                    .unwrap(),
            );
        }
        assert_eq!(name, "[redacted]");
    }

    #[test]
    fn pieces_of_separate_texts_are_followed_apart() {
        let key = "sk-upstream-secret-0123456789";
        let mut redactor = stream_redactor(key);
        let mut client = [String::new(), String::new()];
        for (choice, piece) in [
            (0, "sk-upstr"),
            (1, "sk-"),
            (0, "eam-secret-0123456789"),
            (1, "no"),
        ] {
            let chunk =
                serde_json::json!({"choices": [{"index": choice, "delta": {"content": piece}}]});
            let out: Value =
                serde_json::from_slice(&redactor.payload(Bytes::from(chunk.to_string())).unwrap())
                    .unwrap();
            client[choice].push_str(out["choices"][0]["delta"]["content"].as_str().unwrap());
        }
        // Eight characters of the key are held back, so none reach choice 0.
        assert_eq!(client, ["[redacted]", "sk-no"]);
    }

    #[test]
    fn an_event_that_cannot_be_searched_as_json_is_refused() {
        // Out of a float's range: skipped unread by the stream's own
        // check, but no JSON tree holds it.
        let chunk = br#"{"x":1e400,"choices":[{"index":0,"delta":{"content":"s"}}]}"#;
        let mut redactor = stream_redactor("sk-upstream-secret-0123456789");
        assert!(redactor.payload(Bytes::from_static(chunk)).is_err());
    }

    #[test]
    fn an_api_base_login_is_redacted_like_a_key() {
        let login = ["pa55word-secret", "Basic dGVhbTpwYTU1d29yZC1zZWNyZXQ="];
        let redactor = KeyRedactor::new(None, &BTreeMap::new(), &login).unwrap();
        assert_eq!(
            redactor.text("you sent Basic dGVhbTpwYTU1d29yZC1zZWNyZXQ=, pa55word-secret"),
            "you sent [redacted], [redacted]"
        );
    }

    #[test]
    fn an_escaped_key_is_redacted_as_the_client_reads_it() {
        let key = Secret::new("sk-abc123def456".to_owned());
        let redactor = KeyRedactor::new(Some(&key), &BTreeMap::new(), &[]).unwrap();
        let escaped = Bytes::from_static(br#"{"text":"k=\u0073k-abc123def456!"}"#);
        let out: Value = serde_json::from_slice(&redactor.payload(escaped).unwrap()).unwrap();
        assert_eq!(out["text"], "k=[redacted]!");
        let nested = Bytes::from_static(br#"{"arguments":"{\"k\":\"\\u0073k-abc123def456\"}"}"#);
        let out: Value = serde_json::from_slice(&redactor.payload(nested).unwrap()).unwrap();
        assert_eq!(out["arguments"], r#"{"k":"[redacted]"}"#);
        let named = Bytes::from_static(br#"{"input":{"\u0073k-abc123def456":1}}"#);
        let out: Value = serde_json::from_slice(&redactor.payload(named).unwrap()).unwrap();
        assert_eq!(out["input"], serde_json::json!({"[redacted]": 1}));
        let other = Bytes::from_static(br#"{"text":"caf\u00e9"}"#);
        assert_eq!(redactor.payload(other.clone()).unwrap(), other);
    }
}
