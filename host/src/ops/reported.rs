//! What an answer says about itself, read in one pass where it arrives:
//! its usage, the model that wrote it, its id and its choices' finish
//! reasons. The router reads a JSON answer once and hands the result on, so
//! the meter, the outcome and the attempt's span do not parse it again.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::outcome::Usage;
use crate::openai::Endpoint;

/// What an answer says about itself: its usage, the model that wrote it,
/// its id and its choices.
/// Usage is read in OpenAI's names and in those of natively passed answers:
/// Anthropic's (`input_tokens`, `output_tokens`, cache reads and writes
/// counted as input) and the Responses API's.
#[derive(Debug, Default, Deserialize)]
pub struct Reported {
    /// The answer's id (`chatcmpl-...`).
    #[serde(default, deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "reported_usage")]
    pub usage: Option<Usage>,
    #[serde(default, deserialize_with = "text")]
    pub model: Option<String>,
    /// A stream event's type (`message_start`, `response.completed`, ...).
    #[serde(default, rename = "type", deserialize_with = "text")]
    pub kind: Option<String>,
    /// The object a native stream event carries (`message_start`'s
    /// `message`, `response.completed`'s `response`) and its usage.
    #[serde(default, alias = "message", deserialize_with = "nested")]
    pub response: Option<Box<Reported>>,
    #[serde(default, deserialize_with = "choices")]
    pub choices: Choices,
    /// Whether `object` is `"response"`: a Responses API answer passed on
    /// as it came.
    #[serde(default, rename = "object", deserialize_with = "is_response")]
    pub is_response: bool,
    /// Whether `data` is a list (embeddings' and images' answers).
    #[serde(default, deserialize_with = "is_list")]
    pub data: bool,
    /// Whether `results` is a list (moderations' and rerank's answers).
    #[serde(default, deserialize_with = "is_list")]
    pub results: bool,
    /// Whether it has a top-level `error` that is not null: an upstream
    /// may report a failure in a 200 body ([`crate::providers::sse::answer_error`]).
    #[serde(default, deserialize_with = "present")]
    pub error: bool,
}

/// An answer's (or chunk's) choices, read only for their number (of those
/// that are objects) and finish reasons; their messages are skipped unread.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Choices {
    pub count: usize,
    /// Of them, those with an answer: a `message` object (chat) or a
    /// `text` string (completions).
    pub answered: usize,
    /// The reasons given as strings, in the choices' order.
    pub finish_reasons: Vec<String>,
}

impl Reported {
    /// What a 200 JSON answer to `endpoint` lacks to be an answer at all
    /// (`{}`, `{"choices": 5}`), named for the error: passed on, it would
    /// reach a chat client as an answer it cannot read, and a Messages or
    /// Responses client as an empty success. A native Anthropic `message`
    /// or Responses `response` answers a chat-shaped call too.
    pub fn missing_answer(&self, endpoint: Endpoint) -> Option<&'static str> {
        let (present, wanted) = match endpoint {
            Endpoint::ChatCompletions | Endpoint::Completions => (
                self.choices.answered > 0
                    || self.is_response
                    || self.kind.as_deref() == Some("message"),
                "a `choices` list with a `message` (or a completion's `text`), or, passed \
                 through natively, an Anthropic `message` or a Responses `response`",
            ),
            Endpoint::Embeddings | Endpoint::ImageGenerations => (self.data, "a `data` list"),
            Endpoint::Moderations => (self.results, "a `results` list"),
            // Cohere's shape has `results`; some rerankers answer `data`.
            Endpoint::Rerank => (self.results || self.data, "a `results` list"),
        };
        (!present).then_some(wanted)
    }

    /// Whether a choice of the answer has no finish reason (`null`): an
    /// answer not known to be whole, which the cache keeps out as it keeps
    /// out a stream that ends without one.
    pub fn unfinished(&self) -> bool {
        self.choices.finish_reasons.len() < self.choices.count
    }

    /// The usage the answer or event reports, its own or its object's.
    pub fn any_usage(&self) -> Option<Usage> {
        self.usage
            .or_else(|| self.response.as_ref().and_then(|r| r.usage))
    }
}

/// Whether a field holds anything but null; its value is skipped unread.
fn present<'de, D: de::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<IgnoredAny>::deserialize(d)?.is_some())
}

/// A nested object's report; anything but an object reports nothing.
fn nested<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<Box<Reported>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Nested {
        Object(Box<Reported>),
        Other(IgnoredAny),
    }
    Ok(match Deserialize::deserialize(d)? {
        Nested::Object(r) => Some(r),
        Nested::Other(_) => None,
    })
}

/// The most tokens one answer is counted with: a count past it (no model
/// answers four billion tokens) is not read as one, and the sum of a
/// prompt's parts is cut to it, so that no counter, total or stored sum it
/// feeds can overflow.
pub const MAX_TOKENS_PER_CALL: u64 = u32::MAX as u64;

/// The visitor methods of a value read leniently: a scalar, or a list or
/// object where none is expected, reads as `$none` (nested values are
/// skipped unread).
macro_rules! otherwise {
    ($none:expr, scalars) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
    ($none:expr, str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
    ($none:expr, seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($none)
        }
    };
    ($none:expr, map) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($none)
        }
    };
}

/// Whether a field is a list; its items are skipped unread.
fn is_list<'de, D: de::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Shape::deserialize(d)? == Shape::List)
}

/// Whether a field is the string `"response"`, read without a copy.
fn is_response<'de, D: de::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct ResponseVisitor;
    impl<'de> Visitor<'de> for ResponseVisitor {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object name")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(v == "response")
        }

        otherwise!(false, scalars);
        otherwise!(false, seq);
        otherwise!(false, map);
    }
    d.deserialize_any(ResponseVisitor)
}

/// `usage` as an upstream reports it; one that is not an object reports
/// nothing, and so does one with a count that cannot be a token count
/// ([`Count::Unreadable`]): the answer is then priced from an estimate, as
/// one without usage is, rather than charged for a made-up number or for
/// nothing. An odd usage never costs the client its answer.
fn reported_usage<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<Usage>, D::Error> {
    #[derive(Deserialize)]
    struct ReportedUsage {
        // OpenAI's names; a prompt count here already holds any cached
        // tokens (LiteLLM's `cache_read_input_tokens` beside it repeat them).
        #[serde(default)]
        prompt_tokens: Count,
        #[serde(default)]
        completion_tokens: Count,
        // Anthropic's and the Responses API's names (null counts as 0).
        // Anthropic's `input_tokens` leaves out the cache reads and writes.
        #[serde(default)]
        input_tokens: Count,
        #[serde(default)]
        output_tokens: Count,
        #[serde(default)]
        cache_read_input_tokens: Count,
        #[serde(default)]
        cache_creation_input_tokens: Count,
    }
    struct UsageVisitor;
    impl<'de> Visitor<'de> for UsageVisitor {
        type Value = Option<ReportedUsage>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a usage object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Deserialize::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }

        otherwise!(None, scalars);
        otherwise!(None, str);
        otherwise!(None, seq);
    }
    let Some(u) = d.deserialize_any(UsageVisitor)? else {
        return Ok(None);
    };
    let counts = [
        u.prompt_tokens,
        u.completion_tokens,
        u.input_tokens,
        u.output_tokens,
        u.cache_read_input_tokens,
        u.cache_creation_input_tokens,
    ];
    // A usage with no counts, or with one that is not a count, reports
    // nothing.
    if counts.contains(&Count::Unreadable) || counts.iter().all(|c| *c == Count::Absent) {
        return Ok(None);
    }
    let n = |c: Count| match c {
        Count::Tokens(n) => Some(n),
        Count::Absent | Count::Unreadable => None,
    };
    let prompt_tokens = n(u.prompt_tokens).unwrap_or_else(|| {
        let part = |c| n(c).unwrap_or(0);
        part(u.input_tokens)
            .saturating_add(part(u.cache_read_input_tokens))
            .saturating_add(part(u.cache_creation_input_tokens))
    });
    Ok(Some(Usage {
        prompt_tokens: prompt_tokens.min(MAX_TOKENS_PER_CALL),
        completion_tokens: n(u.completion_tokens).or(n(u.output_tokens)).unwrap_or(0),
    }))
}

/// One token count of a reported usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Count {
    /// Missing or null.
    #[default]
    Absent,
    /// A whole number up to [`MAX_TOKENS_PER_CALL`], or a non-negative
    /// fraction cut to its whole part.
    Tokens(u64),
    /// Anything else: negative, text, a list, or more tokens than any
    /// answer has.
    Unreadable,
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Count;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a token count")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(if v <= MAX_TOKENS_PER_CALL {
                    Count::Tokens(v)
                } else {
                    Count::Unreadable
                })
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                u64::try_from(v).map_or(Ok(Count::Unreadable), |v| self.visit_u64(v))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
                if v.is_finite() && v >= 0.0 && v <= MAX_TOKENS_PER_CALL as f64 {
                    Ok(Count::Tokens(v as u64))
                } else {
                    Ok(Count::Unreadable)
                }
            }

            fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
                Ok(Count::Absent)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Count, E> {
                Ok(Count::Unreadable)
            }

            otherwise!(Count::Unreadable, str);
            otherwise!(Count::Unreadable, seq);
            otherwise!(Count::Unreadable, map);
        }
        d.deserialize_any(CountVisitor)
    }
}

/// Whether JSON text `text` is an object (before it is parsed): a derived
/// struct also takes an array, which no API answers with.
pub fn is_object_text(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Reads what a chat/completions/embeddings JSON answer or chunk (or a
/// native answer or event) says about itself, in one pass; `None` when it is
/// not a JSON object.
pub fn reported_in_body(body: &[u8]) -> Option<Reported> {
    // An answer that is not UTF-8 in a string this does not read still
    // gives its usage, as before.
    crate::openai::from_json_bytes(body).ok()
}

/// Reads `usage` from a chat/completions/embeddings JSON answer or chunk,
/// or from a native answer or stream event ([`Reported::any_usage`]).
pub fn usage_in_body(body: &[u8]) -> Option<Usage> {
    reported_in_body(body)?.any_usage()
}

/// `choices` as a list; anything else (null, an object, a number) counts as
/// none, so an odd `choices` never hides the answer's usage.
fn choices<'de, D: de::Deserializer<'de>>(d: D) -> Result<Choices, D::Error> {
    struct ChoicesVisitor;
    impl<'de> Visitor<'de> for ChoicesVisitor {
        type Value = Choices;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of choices")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices, A::Error> {
            let mut out = Choices::default();
            while let Some(choice) = seq.next_element()? {
                if let Choice::Object { reason, answered } = choice {
                    out.count += 1;
                    out.answered += usize::from(answered);
                    out.finish_reasons.extend(reason);
                }
            }
            Ok(out)
        }

        otherwise!(Choices::default(), scalars);
        otherwise!(Choices::default(), str);
        otherwise!(Choices::default(), map);
    }
    d.deserialize_any(ChoicesVisitor)
}

/// One choice: an object, with its finish reason when it has a string one,
/// or anything else, which is no choice.
enum Choice {
    Object {
        reason: Option<String>,
        /// It holds a `message` object or a `text` string.
        answered: bool,
    },
    Other,
}

impl<'de> Deserialize<'de> for Choice {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Field {
            FinishReason,
            Message,
            Text,
            #[serde(other)]
            Other,
        }
        struct ChoiceVisitor;
        impl<'de> Visitor<'de> for ChoiceVisitor {
            type Value = Choice;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a choice")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Choice, A::Error> {
                let mut reason = None;
                let mut answered = false;
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::FinishReason => reason = map.next_value::<Text>()?.0,
                        Field::Message => answered |= map.next_value::<Shape>()? == Shape::Object,
                        Field::Text => answered |= map.next_value::<Shape>()? == Shape::Text,
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Choice::Object { reason, answered })
            }

            otherwise!(Choice::Other, scalars);
            otherwise!(Choice::Other, str);
            otherwise!(Choice::Other, seq);
        }
        d.deserialize_any(ChoiceVisitor)
    }
}

/// What kind of JSON value a field holds; its content is skipped unread.
#[derive(PartialEq, Eq)]
enum Shape {
    Object,
    List,
    Text,
    Other,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ShapeVisitor;
        impl<'de> Visitor<'de> for ShapeVisitor {
            type Value = Shape;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Shape::Object)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Shape::List)
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::Text)
            }

            otherwise!(Shape::Other, scalars);
        }
        d.deserialize_any(ShapeVisitor)
    }
}

/// A string field (an id, a model, a finish reason); any other value reads
/// as none rather than failing the whole answer.
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(Some(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(Some(v)))
            }

            otherwise!(Text(None), scalars);
            otherwise!(Text(None), seq);
            otherwise!(Text(None), map);
        }
        d.deserialize_any(TextVisitor)
    }
}

fn text<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Text::deserialize(d)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(body: &str, endpoint: Endpoint) -> Option<&'static str> {
        reported_in_body(body.as_bytes())
            .unwrap()
            .missing_answer(endpoint)
    }

    #[test]
    fn an_answer_needs_the_list_its_endpoint_answers_with() {
        let chat = Endpoint::ChatCompletions;
        for answer in [
            r#"{"choices":[{"message":{"content":"hi"}}]}"#,
            r#"{"type":"message","content":[]}"#,
            r#"{"choices":[{"text":"hi"}]}"#,
            r#"{"choices":[{"message":{"content":null,"tool_calls":[]}}]}"#,
            r#"{"object":"response","output":[]}"#,
        ] {
            assert_eq!(missing(answer, chat), None, "{answer}");
        }
        for shapeless in [
            "{}",
            r#"{"choices":[{"index":0,"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"index":0,"message":null}]}"#,
            r#"{"choices":5}"#,
            r#"{"choices":[]}"#,
            r#"{"choices":[1,"a"]}"#,
            r#"{"object":"chat.completion"}"#,
        ] {
            assert!(missing(shapeless, chat).is_some(), "{shapeless}");
        }
        assert_eq!(missing(r#"{"data":[]}"#, Endpoint::Embeddings), None);
        assert!(missing(r#"{"data":{}}"#, Endpoint::Embeddings).is_some());
        assert_eq!(missing(r#"{"results":[]}"#, Endpoint::Rerank), None);
        assert!(missing(r#"{"choices":[{}]}"#, Endpoint::Moderations).is_some());
    }

    #[test]
    fn usage_is_read_from_an_answer_or_a_usage_chunk() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#;
        assert_eq!(
            usage_in_body(body),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 5
            })
        );
        assert_eq!(usage_in_body(br#"{"choices":[]}"#), None);
        let usage = |prompt_tokens, completion_tokens| {
            Some(Usage {
                prompt_tokens,
                completion_tokens,
            })
        };
        let message = br#"{"type":"message","usage":{"input_tokens":3,"output_tokens":5,"cache_read_input_tokens":10,"cache_creation_input_tokens":null}}"#;
        assert_eq!(usage_in_body(message), usage(13, 5));
        let start = br#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":4,"output_tokens":1}}}"#;
        assert_eq!(usage_in_body(start), usage(4, 1));
        let completed = br#"{"type":"response.completed","response":{"object":"response","usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":2},"output_tokens":2,"total_tokens":9}}}"#;
        assert_eq!(usage_in_body(completed), usage(7, 2));
        let created = br#"{"type":"response.created","response":{"usage":null}}"#;
        assert_eq!(usage_in_body(created), None);
        assert_eq!(usage_in_body(b"not json"), None);
    }

    #[test]
    fn a_chat_prompt_count_already_holds_its_cached_tokens() {
        // A chat answer translated from Anthropic (or any LiteLLM-style
        // upstream) repeats the cache counts beside a prompt count that
        // includes them.
        let body = br#"{"choices":[],"usage":{"prompt_tokens":27,"completion_tokens":4,"cache_read_input_tokens":4,"cache_creation_input_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        let usage = usage_in_body(body).unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (27, 4));
    }

    #[test]
    fn an_answer_that_is_not_utf8_where_it_is_not_read_still_reports_its_usage() {
        // `\xff` is never UTF-8.
        let body = b"{\"choices\":[{\"message\":{\"content\":\"\xff\"}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}";
        assert_eq!(usage_in_body(body).map(|u| u.completion_tokens), Some(5));
    }

    #[test]
    fn finish_reasons_and_the_id_are_read_beside_the_usage() {
        let body = br#"{"id":"chatcmpl-1","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi","tool_calls":[{"id":"t"}]},"finish_reason":"stop"},{"index":1,"finish_reason":null}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        let r = reported_in_body(body).unwrap();
        assert_eq!(r.id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(r.model.as_deref(), Some("m"));
        assert_eq!(r.choices.count, 2);
        assert_eq!(r.choices.finish_reasons, ["stop"]);
        assert_eq!(r.usage.unwrap().completion_tokens, 2);
    }

    #[test]
    fn a_usage_with_a_count_that_is_not_one_reports_nothing_and_keeps_the_answer() {
        let usage = |u: &str| {
            let body = format!(r#"{{"id":"x","choices":[],"usage":{u}}}"#);
            reported_in_body(body.as_bytes())
                .expect("still an answer")
                .usage
                .map(|u| (u.prompt_tokens, u.completion_tokens))
        };
        assert_eq!(
            usage(r#"{"prompt_tokens":1.5,"completion_tokens":null}"#),
            Some((1, 0)),
            "a fraction is cut, a null is none"
        );
        assert_eq!(
            usage(&format!(
                r#"{{"prompt_tokens":{MAX_TOKENS_PER_CALL},"completion_tokens":2}}"#
            )),
            Some((MAX_TOKENS_PER_CALL, 2))
        );
        for unreadable in [
            r#"{"prompt_tokens":-5,"completion_tokens":2}"#,
            r#"{"prompt_tokens":3,"completion_tokens":"lots"}"#,
            r#"{"prompt_tokens":1e30,"completion_tokens":1}"#,
            r#"{"prompt_tokens":4294967296,"completion_tokens":1}"#,
            r#"{"input_tokens":3,"output_tokens":[1]}"#,
            r#"{"prompt_tokens":true}"#,
            r#"{"prompt_tokens":null}"#,
            r#"{}"#,
            r#""n/a""#,
            "[1,2]",
            "7",
        ] {
            assert_eq!(usage(unreadable), None, "{unreadable}");
        }
    }

    #[test]
    fn odd_fields_never_hide_the_usage() {
        let r = reported_in_body(br#"{"id":7,"model":["m"],"usage":{"prompt_tokens":4}}"#).unwrap();
        assert_eq!((r.id, r.model), (None, None));
        assert_eq!(r.usage.unwrap().prompt_tokens, 4);
        for choices in [
            "null",
            "{}",
            "3",
            "\"x\"",
            "[1, null, [], {\"finish_reason\": 7}]",
        ] {
            let body = format!(r#"{{"choices":{choices},"usage":{{"prompt_tokens":4}}}}"#);
            let r = reported_in_body(body.as_bytes()).unwrap();
            assert_eq!(r.usage.unwrap().prompt_tokens, 4, "{choices}");
            assert!(r.choices.finish_reasons.is_empty(), "{choices}");
        }
    }
}
