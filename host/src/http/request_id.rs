//! Every request gets an id before anything else happens: the client's
//! `x-request-id` when it is a safe token, else a new one. It names the
//! request in logs, outcomes and the `x-conclave-request-id` answer header,
//! and is echoed where the official clients read a request id: `x-request-id`
//! (OpenAI's SDKs) and, on the Messages API, `request-id` (Anthropic's).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::response::Response;
use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue, Request};

use crate::ops::RequestId;

const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-conclave-request-id");
const ANTHROPIC_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// Most headers [`AssignId`] adds to an answer, so that handlers can size
/// the answer's header map for them.
pub const ECHOED_HEADERS: usize = 3;

/// The outermost service: assigns each request its id and echoes it on the
/// answer, after rewriting a plain-text error answer in the JSON error
/// shape. A service of its own rather than an axum middleware: it wraps
/// every request, and its future is the inner one's, not a boxed one.
#[derive(Clone)]
pub struct AssignId<S> {
    inner: S,
}

impl<S> AssignId<S> {
    /// Wraps `inner`, the rest of the stack.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> tower::Service<Request<B>> for AssignId<S>
where
    S: tower::Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Assigned<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let proposed = request
            .headers()
            .get(CLIENT_REQUEST_ID)
            .and_then(|v| v.to_str().ok());
        let id = RequestId::from_client(proposed);
        let header = HeaderValue::from_str(id.as_str()).ok();
        let anthropic = request.uri().path().contains("/messages");
        request.extensions_mut().insert(id);
        Assigned {
            answer: Answer::Inner {
                future: self.inner.call(request),
            },
            header,
            anthropic,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer on its way out through [`AssignId`].
    pub struct Assigned<F> {
        #[pin]
        answer: Answer<F>,
        header: Option<HeaderValue>,
        anthropic: bool,
    }
}

pin_project_lite::pin_project! {
    /// The rest of the stack answering, then (for a plain-text error only)
    /// the rewrite of its body.
    #[project = AnswerProjection]
    enum Answer<F> {
        Inner { #[pin] future: F },
        Rewriting { future: BoxFuture<'static, Response> },
    }
}

impl<F> Future for Assigned<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut response = loop {
            match this.answer.as_mut().project() {
                AnswerProjection::Inner { future } => {
                    let Ok(response) = ready!(future.poll(cx));
                    if !super::routes::is_plain_error(&response) {
                        break response;
                    }
                    let rewrite = super::routes::plain_error_as_json(response);
                    this.answer.set(Answer::Rewriting {
                        future: Box::pin(rewrite),
                    });
                }
                AnswerProjection::Rewriting { future } => break ready!(future.as_mut().poll(cx)),
            }
        };
        if let Some(value) = this.header.take() {
            let headers = response.headers_mut();
            if *this.anthropic {
                headers.insert(ANTHROPIC_REQUEST_ID, value.clone());
            }
            headers.insert(CLIENT_REQUEST_ID, value.clone());
            headers.insert(REQUEST_ID, value);
        }
        Poll::Ready(Ok(response))
    }
}
