//! The export task: takes finished spans from a bounded channel, turns them
//! into span data, and sends them in batches to the collector with
//! `opentelemetry-otlp`'s exporter: over OTLP/HTTP driven by the gateway's
//! own reqwest client on its runtime (the exporter's bundled client would
//! bring a second HTTP and TLS stack), or over gRPC with tonic's channel
//! (the only gRPC client the exporter supports).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry::InstrumentationScope;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{
    Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::ClientTlsConfig;

use super::settings::{Settings, Transport};
use super::span::SpanRecord;

/// Largest collector answer read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest an export request may take (`OTEL_EXPORTER_OTLP_TIMEOUT` shortens it).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one "export failed" warning per this many failures.
const WARN_EVERY: u64 = 100;

/// What the export task is sent.
pub enum Message {
    Span(Box<SpanRecord>),
    /// Export everything queued, then answer.
    Flush(oneshot::Sender<()>),
}

/// Builds the exporter and starts the task; returns its channel.
pub fn start(settings: Settings) -> Result<mpsc::Sender<Message>, String> {
    let mut exporter = match settings.transport {
        Transport::HttpProtobuf => http_exporter(&settings)?,
        Transport::Grpc => grpc_exporter(&settings)?,
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(
            settings
                .service_name
                .clone()
                .unwrap_or_else(|| "conclave".to_owned()),
        );
    }
    exporter.set_resource(&resource.build());
    let scope = InstrumentationScope::builder("conclave")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let (tx, rx) = mpsc::channel(settings.max_queue);
    tokio::spawn(run(rx, exporter, scope, settings));
    Ok(tx)
}

/// The OTLP/HTTP exporter on the gateway's reqwest.
fn http_exporter(settings: &Settings) -> Result<SpanExporter, String> {
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
    let mut builder = SpanExporter::builder()
        .with_http()
        .with_http_client(Reqwest(client))
        .with_protocol(Protocol::HttpBinary)
        .with_headers(settings.headers.clone());
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up OTLP trace export: {e}"))
}

/// The OTLP/gRPC exporter: the config's headers as gRPC metadata (the
/// exporter adds `OTEL_EXPORTER_OTLP_HEADERS`), TLS with the webpki roots for
/// an `https` endpoint. The channel connects lazily, on the first export.
fn grpc_exporter(settings: &Settings) -> Result<SpanExporter, String> {
    let mut metadata = MetadataMap::new();
    for (name, value) in &settings.headers {
        let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("OTLP header {name:?} is not a valid gRPC metadata name"))?;
        // The value is a credential: the error names the header only.
        let value = MetadataValue::try_from(value.as_str())
            .map_err(|_| format!("OTLP header {name:?} has a value gRPC cannot carry"))?;
        metadata.insert(key, value);
    }
    let endpoint = settings.endpoint.clone().unwrap_or_default();
    let mut builder = SpanExporter::builder()
        .with_tonic()
        .with_protocol(Protocol::Grpc)
        .with_metadata(metadata)
        .with_endpoint(endpoint.clone());
    if endpoint.starts_with("https:") {
        builder = builder.with_tls_config(ClientTlsConfig::new().with_webpki_roots());
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up OTLP trace export over gRPC: {e}"))
}

/// Collects spans until a batch is full or the schedule delay passed, then
/// exports them; a flush request exports at once.
async fn run(
    mut rx: mpsc::Receiver<Message>,
    exporter: SpanExporter,
    scope: InstrumentationScope,
    settings: Settings,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(settings.max_batch);
    let mut failures = 0u64;
    let mut tick = tokio::time::interval(settings.schedule_delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut ack = None;
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Span(record)) => {
                    batch.push(record.into_span_data(&scope));
                    if batch.len() < settings.max_batch {
                        continue;
                    }
                }
                Some(Message::Flush(done)) => ack = Some(done),
                None => {
                    export(&exporter, &mut batch, &mut failures).await;
                    return;
                }
            },
            _ = tick.tick() => {}
        }
        export(&exporter, &mut batch, &mut failures).await;
        if let Some(done) = ack {
            let _ = done.send(());
        }
    }
}

async fn export(exporter: &SpanExporter, batch: &mut Vec<SpanData>, failures: &mut u64) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::take(batch);
    let count = spans.len();
    if let Err(e) = exporter.export(spans).await {
        *failures += 1;
        if (*failures - 1).is_multiple_of(WARN_EVERY) {
            tracing::warn!(spans = count, failures = *failures, error = %e, "cannot export spans to the OTLP collector");
        }
    }
}

/// The exporter's HTTP client: the gateway's reqwest, on its runtime.
#[derive(Debug)]
struct Reqwest(reqwest::Client);

#[async_trait]
impl HttpClient for Reqwest {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let mut answer = Response::new(Bytes::from(body));
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}
