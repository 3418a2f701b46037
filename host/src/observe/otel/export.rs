//! The export task: takes finished spans from a bounded channel, encodes
//! each into the batch as it arrives (see [`super::proto`]), and sends the
//! batch to the collector when it is full, when the schedule delay passed,
//! or when asked to flush.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use tokio::sync::{mpsc, oneshot};

use super::collector::Collector;
use super::proto::{Batch, Head};
use super::settings::Settings;
use super::span::SpanRecord;

/// At most one "export failed" warning per this many failures.
const WARN_EVERY: u64 = 100;

/// What the export task is sent.
pub enum Message {
    Span(Box<SpanRecord>),
    /// Export everything queued, then answer.
    Flush(oneshot::Sender<()>),
}

/// Connects to the collector and starts the task; returns its channel.
pub fn start(settings: Settings) -> Result<mpsc::Sender<Message>, String> {
    let collector = Collector::new(&settings)?;
    let (tx, rx) = mpsc::channel(settings.max_queue);
    tokio::spawn(run(rx, collector, head(&settings), settings));
    Ok(tx)
}

/// The resource (the SDK's detectors: `OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`, the SDK's own attributes) and the scope.
fn head(settings: &Settings) -> Head {
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(
            settings
                .service_name
                .clone()
                .unwrap_or_else(|| "conclave".to_owned()),
        );
    }
    let resource = resource.build();
    let attributes: Vec<KeyValue> = resource
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    Head::new(&attributes, "conclave", env!("CARGO_PKG_VERSION"))
}

/// Collects spans until a batch is full or the schedule delay passed, then
/// exports them; a flush request exports at once.
async fn run(
    mut rx: mpsc::Receiver<Message>,
    collector: Collector,
    head: Head,
    settings: Settings,
) {
    let mut batch = Batch::default();
    let mut failures = 0u64;
    let mut tick = tokio::time::interval(settings.schedule_delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut ack = None;
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Span(record)) => {
                    batch.push(record.with_answer_attributes());
                    if batch.len() < settings.max_batch {
                        continue;
                    }
                }
                Some(Message::Flush(done)) => ack = Some(done),
                None => {
                    export(&collector, &head, &mut batch, &mut failures).await;
                    return;
                }
            },
            _ = tick.tick() => {}
        }
        export(&collector, &head, &mut batch, &mut failures).await;
        if let Some(done) = ack {
            let _ = done.send(());
        }
    }
}

async fn export(collector: &Collector, head: &Head, batch: &mut Batch, failures: &mut u64) {
    if batch.is_empty() {
        return;
    }
    let spans = batch.len();
    let body = batch.take_request(head);
    if let Err(e) = collector.send(body).await {
        *failures += 1;
        if (*failures - 1).is_multiple_of(WARN_EVERY) {
            tracing::warn!(spans, failures = *failures, error = %e.message, "cannot export spans to the OTLP collector");
        }
    }
}
