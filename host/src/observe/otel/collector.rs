//! Sending an encoded export request to the OTLP collector: over HTTP with
//! the gateway's reqwest (no second HTTP or TLS stack), or over gRPC with a
//! tonic channel, the body passed through as the bytes [`super::proto`]
//! wrote. A failure the collector may recover from is tried again a few
//! times within the export timeout.

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::settings::{Settings, Transport};
use crate::public_url::public_url;

/// The trace service's one method.
const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// Largest collector answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Retries after a failed send, and the first wait (doubled each time).
const RETRIES: u32 = 3;
const FIRST_WAIT: Duration = Duration::from_millis(100);

/// Where export requests go.
pub struct Collector {
    link: Link,
    timeout: Duration,
}

enum Link {
    Http {
        client: reqwest::Client,
        url: String,
        headers: HeaderMap,
    },
    Grpc {
        grpc: Grpc<Channel>,
        metadata: MetadataMap,
    },
}

/// Why a send failed, and whether trying again may help.
#[derive(Debug)]
pub struct SendError {
    pub message: String,
    retryable: bool,
}

impl Collector {
    /// The collector `settings` name. An error names the header or the
    /// endpoint that is wrong, never a header's value.
    pub fn new(settings: &Settings) -> Result<Self, String> {
        let link = match settings.transport {
            Transport::HttpProtobuf => http_link(settings)?,
            Transport::Grpc => grpc_link(settings)?,
        };
        Ok(Self {
            link,
            timeout: settings.timeout,
        })
    }

    /// Sends `body`, retrying a failure the collector may recover from
    /// (unreachable, 429, 502–504, gRPC UNAVAILABLE) while the export
    /// timeout allows.
    pub async fn send(&self, body: Bytes) -> Result<(), SendError> {
        let deadline = Instant::now() + self.timeout;
        let mut wait = FIRST_WAIT;
        let mut retries = 0;
        loop {
            let sent = tokio::time::timeout_at(deadline.into(), self.send_once(body.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(SendError {
                        message: format!("no answer within {:?}", self.timeout),
                        retryable: false,
                    })
                });
            match sent {
                Err(e) if e.retryable && retries < RETRIES && Instant::now() + wait < deadline => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    retries += 1;
                }
                other => return other,
            }
        }
    }

    async fn send_once(&self, body: Bytes) -> Result<(), SendError> {
        match &self.link {
            Link::Http {
                client,
                url,
                headers,
            } => {
                let response = client
                    .post(url)
                    .headers(headers.clone())
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| SendError {
                        message: format!("cannot reach {}: {e}", public_url(url)),
                        retryable: true,
                    })?;
                let status = response.status();
                drain(response).await;
                if status.is_success() {
                    return Ok(());
                }
                Err(SendError {
                    message: format!("{} answered {status}", public_url(url)),
                    retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
                })
            }
            Link::Grpc { grpc, metadata } => {
                let mut grpc = grpc.clone();
                grpc.ready().await.map_err(|e| SendError {
                    message: format!("cannot reach the gRPC collector: {e}"),
                    retryable: true,
                })?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = metadata.clone();
                let path = PathAndQuery::from_static(GRPC_EXPORT_PATH);
                match grpc.unary(request, path, PassThrough).await {
                    Ok(_) => Ok(()),
                    Err(status) => Err(SendError {
                        retryable: matches!(
                            status.code(),
                            tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                        ),
                        message: format!("the gRPC collector answered {status}"),
                    }),
                }
            }
        }
    }
}

/// Reads what the collector answered (at most [`MAX_ANSWER_BYTES`]) so the
/// connection can be used again; the answer itself is not needed.
async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > MAX_ANSWER_BYTES {
            break;
        }
    }
}

fn http_link(settings: &Settings) -> Result<Link, String> {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    for (name, value) in &settings.headers {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("OTLP header {name:?} is not a valid HTTP header name"))?;
        // The value is a credential: the error names the header only.
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("OTLP header {name:?} has a value HTTP cannot carry"))?;
        headers.insert(key, value);
    }
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
    Ok(Link::Http {
        client,
        url: settings.endpoint.clone(),
        headers,
    })
}

/// A lazily connecting channel: the collector may come up after the gateway.
fn grpc_link(settings: &Settings) -> Result<Link, String> {
    let mut metadata = MetadataMap::new();
    for (name, value) in &settings.headers {
        let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("OTLP header {name:?} is not a valid gRPC metadata name"))?;
        let value = MetadataValue::try_from(value.as_str())
            .map_err(|_| format!("OTLP header {name:?} has a value gRPC cannot carry"))?;
        metadata.insert(key, value);
    }
    let url = &settings.endpoint;
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| format!("OTLP endpoint {url:?} is not a valid URL: {e}"))?;
    if url.starts_with("https:") {
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().with_webpki_roots())
            .map_err(|e| format!("cannot set up TLS for OTLP endpoint {url:?}: {e}"))?;
    }
    Ok(Link::Grpc {
        grpc: Grpc::new(endpoint.connect_lazy()),
        metadata,
    })
}

/// A gRPC codec that sends bytes already encoded and ignores the answer's
/// message (an export's answer only reports partial success).
#[derive(Clone, Copy, Default)]
struct PassThrough;

impl Codec for PassThrough {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for PassThrough {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for PassThrough {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}
