//! OpenTelemetry traces through the real binary, received by an OTLP
//! collector in the test, over HTTP and over gRPC (protobuf decoded with the
//! opentelemetry-proto types, the gRPC side served by tonic): the span tree, parentage and attributes of a plain, a streamed,
//! a retried and a composite request; message contents only with the
//! opt-in; an incoming `traceparent` continued and one sent upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use conclave_e2e::proxy::Proxy;
use conclave_e2e::{Behavior, FakeUpstream, SseReader, chat_body, deployments};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::json;

const KEY: &str = "sk-otel-master-secret";
const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attrs: HashMap<String, String>,
    error: bool,
    service: String,
}

impl Span {
    fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map_or("", String::as_str)
    }
}

/// An OTLP/HTTP trace receiver on loopback.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    /// The `x-otel-token` header of every export request.
    tokens: Arc<Mutex<Vec<String>>>,
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(Any::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| text(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        _ => String::new(),
    }
}

async fn receive(State(c): State<Collector>, headers: HeaderMap, body: Bytes) -> &'static str {
    let token = headers
        .get("x-otel-token")
        .map(|t| t.to_str().unwrap().to_owned());
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    c.record(request, token);
    ""
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let token = request
            .metadata()
            .get("x-otel-token")
            .map(|t| t.to_str().unwrap().to_owned());
        self.record(request.into_inner(), token);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Keeps the spans of one export request, flattened, and its token.
    fn record(&self, request: ExportTraceServiceRequest, token: Option<String>) {
        if let Some(token) = token {
            self.tokens.lock().unwrap().push(token);
        }
        let mut spans = self.spans.lock().unwrap();
        for rs in request.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(Span {
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        name: s.name,
                        kind: s.kind,
                        attrs: s
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                            .collect(),
                        error: s.status.is_some_and(|st| st.code == 2),
                        service: service.clone(),
                    });
                }
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Collector {
    async fn start() -> (Self, SocketAddr) {
        let c = Collector::default();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(c.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (c, addr)
    }

    /// The same collector speaking OTLP over gRPC (tonic), as on port 4317.
    async fn start_grpc() -> (Self, SocketAddr) {
        let c = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(c.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap()
        });
        (c, addr)
    }

    /// The spans of the trace whose server span has request id `id`, once
    /// `count` of them arrived (at most ten seconds).
    async fn trace_of(&self, id: &str, count: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if let Some(server) = spans.iter().find(|s| s.attr("conclave.request_id") == id) {
                let trace: Vec<Span> = spans
                    .iter()
                    .filter(|s| s.trace_id == server.trace_id)
                    .cloned()
                    .collect();
                if trace.len() >= count {
                    return trace;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the trace of {id} did not arrive: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.parent == parent.span_id)
        .collect()
}

fn server(spans: &[Span]) -> &Span {
    let servers: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 1, "{spans:#?}");
    servers[0]
}

fn config(up: &FakeUpstream) -> String {
    let mut yaml = String::from("model_list:\n");
    yaml.push_str(&deployments(
        up,
        &[
            ("plain", &[][..]),
            ("flaky", &["max_retries: 1"][..]),
            ("primary", &["max_retries: 0"][..]),
            ("backup", &[][..]),
            ("member-a", &[][..]),
            ("member-b", &[][..]),
            ("rev-a", &[][..]),
            ("rev-b", &[][..]),
            ("chair", &[][..]),
        ],
    ));
    yaml.push_str(
        "  - model_name: council\n    litellm_params:\n      model: composite/profile/council_test\n",
    );
    yaml.push_str(
        "router_settings:\n  num_retries: 0\n  retry_after: 0\n  allowed_fails: 1000\n  \
         fallbacks: [{primary: [backup]}]\n",
    );
    yaml.push_str(&format!(
        "general_settings:\n  master_key: {KEY}\n  composite_llm:\n    profiles:\n      council_test:\n        \
         strategy: council\n        topology:\n          chairman: {{model: chair}}\n          \
         council: [{{model: member-a}}, {{model: member-b}}]\n          \
         reviewers: [{{model: rev-a}}, {{model: rev-b}}]\n          settings: {{}}\n"
    ));
    yaml
}

async fn start(up: &FakeUpstream, capture: bool) -> (Proxy, Collector) {
    let (collector, addr) = Collector::start().await;
    let endpoint = format!("http://{addr}");
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_SERVICE_NAME", "gateway-under-test"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-otel-token=otel-header-secret",
        ),
    ];
    if capture {
        env.push(("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true"));
    }
    let proxy = Proxy::start_with(&config(up), &env, &[]).await;
    (proxy, collector)
}

async fn send(
    proxy: &Proxy,
    body: serde_json::Value,
    traceparent: Option<&str>,
) -> reqwest::Response {
    let mut r = proxy
        .client
        .post(proxy.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body);
    if let Some(tp) = traceparent {
        r = r.header("traceparent", tp);
    }
    r.send().await.unwrap()
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-conclave-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// No attribute of any span carries a key.
fn assert_no_secrets(spans: &[Span]) {
    for s in spans {
        for (k, v) in &s.attrs {
            assert!(
                !v.contains(KEY) && !v.contains("sk-test-key"),
                "{k} of {} carries a key: {v}",
                s.name
            );
        }
    }
}

#[tokio::test]
async fn a_plain_request_continues_the_client_trace_with_one_attempt_span_and_sends_traceparent_upstream()
 {
    let up = FakeUpstream::start().await;
    up.set("plain", Behavior::ok("PLAIN-ANSWER"));
    let (proxy, collector) = start(&up, false).await;
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let r = send(
        &proxy,
        chat_body("plain", "SECRET-PROMPT"),
        Some(&traceparent),
    )
    .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let spans = collector.trace_of(&id, 2).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");

    let root = server(&spans);
    assert_eq!(root.trace_id, CLIENT_TRACE);
    assert_eq!(root.parent, CLIENT_SPAN);
    assert_eq!(root.name, "POST /v1/chat/completions");
    assert_eq!(root.attr("http.route"), "/v1/chat/completions");
    assert_eq!(root.attr("http.request.method"), "POST");
    assert_eq!(root.attr("http.response.status_code"), "200");
    assert_eq!(root.attr("conclave.caller"), "master");
    assert_eq!(root.attr("gen_ai.request.model"), "plain");
    assert_eq!(root.service, "gateway-under-test");

    let attempts = children(&spans, root);
    assert_eq!(attempts.len(), 1);
    let call = attempts[0];
    assert_eq!(call.kind, SpanKind::Client as i32);
    assert_eq!(call.name, "chat plain-up");
    assert_eq!(call.attr("gen_ai.operation.name"), "chat");
    assert_eq!(call.attr("gen_ai.provider.name"), "openai");
    assert_eq!(call.attr("gen_ai.request.model"), "plain-up");
    assert_eq!(call.attr("gen_ai.response.model"), "plain-up");
    assert_eq!(call.attr("gen_ai.usage.input_tokens"), "5");
    assert_eq!(call.attr("gen_ai.usage.output_tokens"), "7");
    assert_eq!(call.attr("gen_ai.response.finish_reasons"), "[stop]");
    assert_eq!(call.attr("conclave.deployment"), "plain.0");
    assert!(!call.error);
    for s in &spans {
        assert!(!s.attrs.contains_key("gen_ai.input.messages"), "{s:#?}");
        assert!(!s.attrs.contains_key("gen_ai.output.messages"), "{s:#?}");
        assert!(s.attrs.values().all(|v| !v.contains("SECRET-PROMPT")));
    }
    assert_no_secrets(&spans);

    let tokens = collector.tokens.lock().unwrap().clone();
    assert!(!tokens.is_empty() && tokens.iter().all(|t| t == "otel-header-secret"));
    assert!(!proxy.logs().contains("otel-header-secret"));

    let sent = up.recorded();
    let upstream = sent[0].headers["traceparent"].to_str().unwrap();
    assert_eq!(upstream, format!("00-{CLIENT_TRACE}-{}-01", call.span_id));
}

#[tokio::test]
async fn a_client_trace_that_is_not_sampled_is_not_exported_nor_propagated() {
    let up = FakeUpstream::start().await;
    up.set("plain", Behavior::ok("x"));
    let (proxy, collector) = start(&up, false).await;
    let unsampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    let r = send(&proxy, chat_body("plain", "not sampled"), Some(&unsampled)).await;
    assert_eq!(r.status(), 200);
    let r = send(&proxy, chat_body("plain", "sampled"), None).await;
    let later = collector.trace_of(&request_id(&r), 2).await;
    assert_ne!(later[0].trace_id, CLIENT_TRACE);
    let all = collector.spans.lock().unwrap().clone();
    assert!(all.iter().all(|s| s.trace_id != CLIENT_TRACE), "{all:#?}");
    let sent = up.recorded();
    assert!(!sent[0].headers.contains_key("traceparent"));
    assert!(sent[1].headers.contains_key("traceparent"));
}

#[tokio::test]
async fn a_streamed_request_has_its_attempt_span_end_with_the_stream_and_carry_its_usage() {
    let up = FakeUpstream::start().await;
    up.set(
        "plain",
        Behavior::ok("one two three").chunked(3, Duration::from_millis(100)),
    );
    let (proxy, collector) = start(&up, false).await;
    let mut body = chat_body("plain", "hi");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = send(&proxy, body, None).await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let mut sse = SseReader::new(r);
    while sse.next(Duration::from_secs(5)).await.is_some() {}

    let spans = collector.trace_of(&id, 2).await;
    let root = server(&spans);
    assert_eq!(
        root.parent, "",
        "a request without traceparent starts a trace"
    );
    assert_eq!(root.attr("conclave.stream"), "true");
    let attempts = children(&spans, root);
    assert_eq!(attempts.len(), 1, "{spans:#?}");
    let call = attempts[0];
    assert_eq!(call.name, "chat plain-up");
    assert_eq!(call.attr("gen_ai.response.finish_reasons"), "[stop]");
    assert_eq!(call.attr("gen_ai.usage.output_tokens"), "7");
    assert_eq!(call.attr("gen_ai.response.model"), "plain-up");
}

#[tokio::test]
async fn a_retried_request_shows_both_attempts_as_siblings_the_failed_one_with_its_error_type() {
    let up = FakeUpstream::start().await;
    up.push("flaky", Behavior::status(503, "overloaded"));
    up.set("flaky", Behavior::ok("SECOND-TIME"));
    let (proxy, collector) = start(&up, false).await;
    let r = send(&proxy, chat_body("flaky", "hi"), None).await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let spans = collector.trace_of(&id, 3).await;
    let root = server(&spans);
    assert_eq!(root.attr("conclave.attempts"), "2");
    let attempts = children(&spans, root);
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    let failed: Vec<_> = attempts.iter().filter(|s| s.error).collect();
    assert_eq!(failed.len(), 1, "{attempts:#?}");
    assert_eq!(failed[0].attr("error.type"), "503");
    let ok: Vec<_> = attempts.iter().filter(|s| !s.error).collect();
    assert_eq!(ok[0].attr("gen_ai.usage.output_tokens"), "7");
    assert!(!ok[0].attrs.contains_key("error.type"));
    assert_no_secrets(&spans);
}

#[tokio::test]
async fn a_fallback_shows_the_failed_group_and_the_fallback_group_as_sibling_attempts() {
    let up = FakeUpstream::start().await;
    up.set("primary", Behavior::status(500, "primary is down"));
    up.set("backup", Behavior::ok("FROM-BACKUP"));
    let (proxy, collector) = start(&up, false).await;
    let r = send(&proxy, chat_body("primary", "hi"), None).await;
    assert_eq!(r.status(), 200);
    let spans = collector.trace_of(&request_id(&r), 3).await;
    let root = server(&spans);
    assert_eq!(root.attr("conclave.fallback"), "backup");
    assert_eq!(root.attr("conclave.model_group"), "backup");
    let mut attempts = children(&spans, root);
    attempts.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = attempts.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["chat backup-up", "chat primary-up"], "{spans:#?}");
    assert_eq!(attempts[1].attr("error.type"), "500");
    assert_eq!(attempts[1].attr("conclave.model_group"), "primary");
    assert!(attempts[1].error);
    assert_eq!(attempts[0].attr("conclave.model_group"), "backup");
    assert!(!attempts[0].error);
}

#[tokio::test]
async fn a_streamed_composite_run_has_its_streamed_final_call_under_the_last_stage() {
    let up = FakeUpstream::start().await;
    up.set("member-a", Behavior::ok("A-ANSWER"));
    up.set("member-b", Behavior::ok("B-ANSWER"));
    let ranking = "FINAL RANKING:\n1. Response A\n2. Response B";
    up.set("rev-a", Behavior::ok(ranking));
    up.set("rev-b", Behavior::ok(ranking));
    up.set(
        "chair",
        Behavior::ok("CHAIR ANSWER").chunked(2, Duration::from_millis(50)),
    );
    let (proxy, collector) = start(&up, false).await;
    let mut body = chat_body("council", "question");
    body["stream"] = json!(true);
    let r = send(&proxy, body, None).await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let mut sse = SseReader::new(r);
    while sse.next(Duration::from_secs(10)).await.is_some() {}
    let spans = collector.trace_of(&id, 10).await;
    let root = server(&spans);
    assert_eq!(root.attr("conclave.stream"), "true");
    let run = children(&spans, root)[0];
    let synthesis = children(&spans, run)
        .into_iter()
        .find(|s| s.name == "stage 3: synthesis")
        .unwrap();
    let calls = children(&spans, synthesis);
    assert_eq!(calls.len(), 1, "{spans:#?}");
    assert_eq!(calls[0].attr("gen_ai.request.model"), "chair-up");
    assert_eq!(calls[0].attr("gen_ai.response.finish_reasons"), "[stop]");
    assert_eq!(calls[0].attr("gen_ai.usage.output_tokens"), "7");
}

#[tokio::test]
async fn a_composite_run_is_one_workflow_span_with_its_stages_and_every_call_under_its_stage() {
    let up = FakeUpstream::start().await;
    up.set("member-a", Behavior::ok("A-ANSWER"));
    up.set("member-b", Behavior::ok("B-ANSWER"));
    let ranking = "FINAL RANKING:\n1. Response A\n2. Response B";
    up.set("rev-a", Behavior::ok(ranking));
    up.set("rev-b", Behavior::ok(ranking));
    up.set("chair", Behavior::ok("CHAIR-ANSWER"));
    let (proxy, collector) = start(&up, false).await;
    let r = send(&proxy, chat_body("council", "question"), None).await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    // server + workflow + 3 stages + 5 calls
    let spans = collector.trace_of(&id, 10).await;
    assert_eq!(spans.len(), 10, "{spans:#?}");
    let root = server(&spans);
    assert_eq!(root.attr("conclave.profile"), "council_test");

    let top = children(&spans, root);
    assert_eq!(top.len(), 1, "{top:#?}");
    let run = top[0];
    assert_eq!(run.name, "invoke_workflow council_test");
    assert_eq!(run.attr("gen_ai.operation.name"), "invoke_workflow");
    assert_eq!(run.attr("conclave.strategy"), "council");
    assert_eq!(run.attr("conclave.strategy.hash").len(), 64);
    assert_eq!(run.attr("gen_ai.usage.output_tokens"), "35");

    let stages = children(&spans, run);
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 3, "stages: {names:?}");
    let calls_of = |stage: &str| -> Vec<String> {
        let s = stages.iter().find(|s| s.name == stage).unwrap();
        let mut models: Vec<String> = children(&spans, s)
            .iter()
            .map(|c| c.attr("gen_ai.request.model").to_owned())
            .collect();
        models.sort();
        models
    };
    assert_eq!(calls_of("stage 1: answers"), ["member-a-up", "member-b-up"]);
    assert_eq!(calls_of("stage 2: rankings"), ["rev-a-up", "rev-b-up"]);
    assert_eq!(calls_of("stage 3: synthesis"), ["chair-up"]);
    for s in &spans {
        assert!(!s.attrs.contains_key("conclave.stage.text"));
    }
}

#[tokio::test]
async fn message_contents_are_recorded_only_with_the_opt_in() {
    let up = FakeUpstream::start().await;
    up.set("plain", Behavior::ok("THE-ANSWER"));
    let (proxy, collector) = start(&up, true).await;
    let r = send(&proxy, chat_body("plain", "THE-PROMPT"), None).await;
    assert_eq!(r.status(), 200);
    let spans = collector.trace_of(&request_id(&r), 2).await;
    let root = server(&spans);
    let call = children(&spans, root)[0];
    let input: serde_json::Value =
        serde_json::from_str(call.attr("gen_ai.input.messages")).unwrap();
    assert_eq!(input[0]["role"], "user");
    assert_eq!(input[0]["parts"][0]["content"], "THE-PROMPT");
    let output: serde_json::Value =
        serde_json::from_str(call.attr("gen_ai.output.messages")).unwrap();
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(output[0]["parts"][0]["content"], "THE-ANSWER");
    assert_eq!(output[0]["finish_reason"], "stop");
    assert_no_secrets(&spans);
}

#[tokio::test]
async fn over_grpc_the_collector_gets_the_same_span_tree_and_the_export_headers() {
    let up = FakeUpstream::start().await;
    up.set("plain", Behavior::ok("GRPC-ANSWER"));
    let (collector, addr) = Collector::start_grpc().await;
    let endpoint = format!("http://{addr}");
    let env = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_SERVICE_NAME", "gateway-under-test"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-otel-token=otel-header-secret",
        ),
    ];
    let proxy = Proxy::start_with(&config(&up), &env, &[]).await;
    let r = send(&proxy, chat_body("plain", "hi"), None).await;
    assert_eq!(r.status(), 200);
    let spans = collector.trace_of(&request_id(&r), 2).await;
    let root = server(&spans);
    assert_eq!(root.service, "gateway-under-test");
    let calls = children(&spans, root);
    assert_eq!(calls.len(), 1, "{spans:#?}");
    assert_eq!(calls[0].kind, SpanKind::Client as i32);
    assert_eq!(calls[0].attr("gen_ai.request.model"), "plain-up");
    assert!(
        collector
            .tokens
            .lock()
            .unwrap()
            .iter()
            .all(|t| t == "otel-header-secret")
    );
    assert!(!collector.tokens.lock().unwrap().is_empty());
    assert_no_secrets(&spans);
    assert!(!proxy.logs().contains("otel-header-secret"));
}

#[tokio::test]
async fn json_bodies_are_refused_at_start_up_with_the_variable_named() {
    let dir = conclave_e2e::proxy::TempDir::new();
    let path = dir.write("c.yaml", "model_list: []\n");
    let out = conclave_e2e::proxy::run_conclave(
        &[
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--config",
            path.to_str().unwrap(),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && stderr.contains("grpc"),
        "{stderr}"
    );
}

/// A LiteLLM config sets its exporter in `environment_variables` with
/// LiteLLM's names: the spans reach that collector with its header.
#[tokio::test]
async fn litellms_otel_variables_in_the_config_name_the_collector_and_its_header() {
    let up = FakeUpstream::start().await;
    up.set("plain", Behavior::ok("PLAIN-ANSWER"));
    let (collector, addr) = Collector::start().await;
    let yaml = config(&up).replace(
        "router_settings:",
        &format!(
            "environment_variables:\n  OTEL_EXPORTER: otlp_http\n  OTEL_ENDPOINT: http://{addr}\n  \
             OTEL_HEADERS: x-otel-token=from-litellm-config\n  OTEL_BSP_SCHEDULE_DELAY: \"50\"\n\
             litellm_settings:\n  callbacks: [otel]\nrouter_settings:"
        ),
    );
    let proxy = Proxy::start_with(&yaml, &[], &[]).await;
    let r = send(&proxy, chat_body("plain", "hello"), None).await;
    assert_eq!(r.status(), 200);
    let spans = collector.trace_of(&request_id(&r), 2).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let tokens = collector.tokens.lock().unwrap().clone();
    assert!(
        !tokens.is_empty() && tokens.iter().all(|t| t == "from-litellm-config"),
        "{tokens:?}"
    );
}
