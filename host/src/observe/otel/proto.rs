//! OTLP's trace protobuf (`ExportTraceServiceRequest`), written straight
//! from span records with prost's wire-format primitives.
//!
//! Why not the SDK's exporter: it takes `SpanData`, groups it by resource
//! and scope in a map, copies every attribute key and value into the
//! generated message types and only then encodes them. Measured under load
//! that was the largest part of what trace export cost per request. Here a
//! span is encoded once, as it reaches the export task, into the batch's
//! buffer; the resource and scope are encoded once at start-up.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, KeyValue, Value};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::span::SpanRecord;

/// `flags` bits of a span: W3C sampled, and whether the parent's remoteness is known / remote.
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// The part of every export request that does not change: the resource's
/// and the instrumentation scope's encoded messages.
pub struct Head {
    resource: Vec<u8>,
    scope: Vec<u8>,
}

impl Head {
    /// Encodes the resource `attributes` and the scope named `name` at `version`.
    pub fn new(attributes: &[KeyValue], name: &str, version: &str) -> Self {
        let mut resource = Vec::new();
        for kv in attributes {
            put_key_value(1, kv, &mut resource);
        }
        let mut scope = Vec::new();
        put_str(1, name, &mut scope);
        put_str(2, version, &mut scope);
        Self { resource, scope }
    }
}

/// Spans encoded as they arrive, waiting for the next export request.
#[derive(Default)]
pub struct Batch {
    /// `ScopeSpans.spans` entries, each with its field key and length.
    spans: Vec<u8>,
    /// One span's message while it is encoded (its length goes first).
    scratch: Vec<u8>,
    count: usize,
}

impl Batch {
    /// Spans in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch holds no span.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encodes `record` (the answer's attributes already added) into the batch.
    pub fn push(&mut self, record: SpanRecord) {
        self.scratch.clear();
        put_span(&record, &mut self.scratch);
        put_message(2, &self.scratch, &mut self.spans);
        self.count += 1;
    }

    /// The export request carrying every span of the batch under `head`;
    /// the batch is empty afterwards.
    pub fn take_request(&mut self, head: &Head) -> Bytes {
        let scope_spans_len = message_len(1, head.scope.len()) + self.spans.len();
        let resource_spans_len =
            message_len(1, head.resource.len()) + message_len(2, scope_spans_len);
        let mut out = Vec::with_capacity(message_len(1, resource_spans_len));
        put_header(1, resource_spans_len, &mut out);
        put_message(1, &head.resource, &mut out);
        put_header(2, scope_spans_len, &mut out);
        put_message(1, &head.scope, &mut out);
        out.extend_from_slice(&self.spans);
        self.spans.clear();
        self.count = 0;
        Bytes::from(out)
    }
}

/// A `Span` message's fields.
fn put_span(r: &SpanRecord, buf: &mut Vec<u8>) {
    put_message(1, &r.lineage.trace_id.to_bytes(), buf);
    put_message(2, &r.span_id.to_bytes(), buf);
    let state = r.lineage.trace_state.header();
    if !state.is_empty() {
        put_str(3, &state, buf);
    }
    if r.lineage.parent != opentelemetry::trace::SpanId::INVALID {
        put_message(4, &r.lineage.parent.to_bytes(), buf);
    }
    put_str(5, &r.name, buf);
    put_varint(6, kind_number(&r.kind), buf);
    put_fixed64(7, unix_nanos(r.start), buf);
    put_fixed64(8, unix_nanos(r.end.max(r.start)), buf);
    for kv in &r.attributes {
        put_key_value(9, kv, buf);
    }
    put_status(&r.status, buf);
    let mut flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
    if r.lineage.parent_remote {
        flags |= FLAG_IS_REMOTE;
    }
    encode_key(16, WireType::ThirtyTwoBit, buf);
    buf.extend_from_slice(&flags.to_le_bytes());
}

/// `Span.status` (field 15): always present, as the SDK's exporter sends it.
fn put_status(status: &Status, buf: &mut Vec<u8>) {
    let (message, code) = match status {
        Status::Unset => ("", 0),
        Status::Ok => ("", 1),
        Status::Error { description } => (description.as_ref(), 2),
    };
    let len = str_len(2, message)
        + if code == 0 {
            0
        } else {
            1 + encoded_len_varint(code)
        };
    put_header(15, len, buf);
    put_str(2, message, buf);
    if code != 0 {
        put_varint(3, code, buf);
    }
}

/// OTLP's `SpanKind` numbers.
fn kind_number(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A `KeyValue` message as field `field`.
fn put_key_value(field: u32, kv: &KeyValue, buf: &mut Vec<u8>) {
    let key = kv.key.as_str();
    let value_len = any_value_len(&kv.value);
    put_header(field, str_len(1, key) + message_len(2, value_len), buf);
    put_str(1, key, buf);
    put_header(2, value_len, buf);
    put_any_value(&kv.value, buf);
}

/// The length of an `AnyValue` message holding `value`.
fn any_value_len(value: &Value) -> usize {
    match value {
        Value::Bool(_) => 2,
        Value::I64(n) => 1 + encoded_len_varint(*n as u64),
        Value::F64(_) => 9,
        // A oneof member is written even when empty.
        Value::String(s) => message_len(1, s.as_str().len()),
        Value::Array(array) => message_len(5, array_items_len(array)),
        other => message_len(1, other.as_str().len()),
    }
}

/// An `AnyValue` message's fields.
fn put_any_value(value: &Value, buf: &mut Vec<u8>) {
    match value {
        Value::Bool(b) => put_varint(2, u64::from(*b), buf),
        Value::I64(n) => put_varint(3, *n as u64, buf),
        Value::F64(x) => {
            encode_key(4, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&x.to_le_bytes());
        }
        Value::String(s) => put_message(1, s.as_str().as_bytes(), buf),
        Value::Array(array) => {
            put_header(5, array_items_len(array), buf);
            put_array_items(array, buf);
        }
        other => put_message(1, other.as_str().as_bytes(), buf),
    }
}

/// The length of an `ArrayValue` message: its items, each an `AnyValue` in field 1.
fn array_items_len(array: &Array) -> usize {
    let each = |len: usize| message_len(1, len);
    match array {
        Array::Bool(items) => items.len() * each(2),
        Array::I64(items) => items
            .iter()
            .map(|n| each(1 + encoded_len_varint(*n as u64)))
            .sum(),
        Array::F64(items) => items.len() * each(9),
        Array::String(items) => items
            .iter()
            .map(|s| each(message_len(1, s.as_str().len())))
            .sum(),
        _ => 0,
    }
}

fn put_array_items(array: &Array, buf: &mut Vec<u8>) {
    let item = |value: Value, buf: &mut Vec<u8>| {
        put_header(1, any_value_len(&value), buf);
        put_any_value(&value, buf);
    };
    match array {
        Array::Bool(items) => items.iter().for_each(|b| item(Value::Bool(*b), buf)),
        Array::I64(items) => items.iter().for_each(|n| item(Value::I64(*n), buf)),
        Array::F64(items) => items.iter().for_each(|x| item(Value::F64(*x), buf)),
        Array::String(items) => {
            for s in items {
                put_header(1, message_len(1, s.as_str().len()), buf);
                put_message(1, s.as_str().as_bytes(), buf);
            }
        }
        _ => {}
    }
}

/// Bytes a length-delimited field `field` of `len` bytes takes.
fn message_len(field: u32, len: usize) -> usize {
    key_len(field) + encoded_len_varint(len as u64) + len
}

/// Bytes a string field takes (empty strings are left out, as proto3 does).
fn str_len(field: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        message_len(field, s.len())
    }
}

fn key_len(field: u32) -> usize {
    encoded_len_varint(u64::from(field << 3))
}

/// The key and length of a length-delimited field whose content follows.
fn put_header(field: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn put_message(field: u32, content: &[u8], buf: &mut Vec<u8>) {
    put_header(field, content.len(), buf);
    buf.extend_from_slice(content);
}

fn put_str(field: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        put_message(field, s.as_bytes(), buf);
    }
}

fn put_varint(field: u32, value: u64, buf: &mut Vec<u8>) {
    encode_key(field, WireType::Varint, buf);
    encode_varint(value, buf);
}

fn put_fixed64(field: u32, value: u64, buf: &mut Vec<u8>) {
    encode_key(field, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{SpanId, TraceId, TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;

    use super::*;
    use crate::observe::otel::span::Lineage;

    fn record(parent: u64, remote: bool, status: Status) -> SpanRecord {
        let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        SpanRecord {
            lineage: Lineage {
                trace_id: TraceId::from(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10_u128),
                parent: SpanId::from(parent),
                parent_remote: remote,
                trace_state: TraceState::from_key_value([("vendor", "x1")]).unwrap(),
            },
            span_id: SpanId::from(0xabcd_u64),
            kind: SpanKind::Client,
            name: Cow::Borrowed("chat gpt-4o-mini"),
            start,
            end: start + Duration::from_micros(1500),
            attributes: vec![
                KeyValue::new("gen_ai.request.model", "gpt-4o-mini"),
                KeyValue::new("gen_ai.usage.input_tokens", -3_i64),
                KeyValue::new("conclave.stream", true),
                KeyValue::new("ratio", 0.5),
                KeyValue::new(
                    "gen_ai.response.finish_reasons",
                    Value::Array(
                        vec![opentelemetry::StringValue::from("stop"), "length".into()].into(),
                    ),
                ),
                KeyValue::new("empty", ""),
            ],
            status,
            answer: None,
            input: None,
            capture: false,
        }
    }

    fn decode(body: &Bytes) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(body.clone()).unwrap()
    }

    #[test]
    fn a_batch_decodes_as_the_otlp_request_with_every_field_in_place() {
        let head = Head::new(&[KeyValue::new("service.name", "gw")], "conclave", "1.2.3");
        let mut batch = Batch::default();
        batch.push(record(0x77, true, Status::error("upstream 503")));
        batch.push(record(0, false, Status::Unset));
        assert_eq!(batch.len(), 2);
        let request = decode(&batch.take_request(&head));
        assert!(batch.is_empty());
        let [rs] = &request.resource_spans[..] else {
            panic!("one resource")
        };
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        let [ss] = &rs.scope_spans[..] else {
            panic!("one scope")
        };
        let scope = ss.scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("conclave", "1.2.3")
        );
        let [child, root] = &ss.spans[..] else {
            panic!("two spans")
        };
        assert_eq!(hex(&child.trace_id), "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(hex(&child.span_id), "000000000000abcd");
        assert_eq!(hex(&child.parent_span_id), "0000000000000077");
        assert!(root.parent_span_id.is_empty());
        assert_eq!(child.trace_state, "vendor=x1");
        assert_eq!(child.name, "chat gpt-4o-mini");
        assert_eq!(child.kind, 3);
        assert_eq!(child.start_time_unix_nano, 1_700_000_000_123_000_000);
        assert_eq!(
            child.end_time_unix_nano - child.start_time_unix_nano,
            1_500_000
        );
        assert_eq!(child.flags, 0x301);
        assert_eq!(root.flags, 0x101);
        let status = child.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "upstream 503"));
        assert_eq!(root.status.as_ref().unwrap().code, 0);
        let value = |key: &str| {
            child
                .attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(
            value("gen_ai.request.model"),
            Some(Any::StringValue("gpt-4o-mini".into()))
        );
        assert_eq!(value("gen_ai.usage.input_tokens"), Some(Any::IntValue(-3)));
        assert_eq!(value("conclave.stream"), Some(Any::BoolValue(true)));
        assert_eq!(value("ratio"), Some(Any::DoubleValue(0.5)));
        let Some(Any::ArrayValue(reasons)) = value("gen_ai.response.finish_reasons") else {
            panic!("an array")
        };
        let reasons: Vec<_> = reasons.values.into_iter().filter_map(|v| v.value).collect();
        assert_eq!(
            reasons,
            [
                Any::StringValue("stop".into()),
                Any::StringValue("length".into())
            ]
        );
        assert_eq!(value("empty"), Some(Any::StringValue(String::new())));
        assert_eq!(child.attributes.len(), 6);
    }

    #[test]
    fn an_empty_batch_still_encodes_a_valid_request() {
        let head = Head::new(&[], "conclave", "1");
        let request = decode(&Batch::default().take_request(&head));
        assert!(request.resource_spans[0].scope_spans[0].spans.is_empty());
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
