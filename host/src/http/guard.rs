//! What every model route passes before its handler: a slot among the
//! requests in flight ([`in_flight`]), then auth ([`auth`]).
//!
//! A tower layer rather than `axum::middleware::from_fn`: a middleware
//! function boxes its future, boxes the rest of the stack as `Next` and
//! clones it, on every request. Here a request whose caller is known at once
//! (no master key, the master key, or a refusal) goes straight on to the
//! route, in a future of a named type; only a virtual key that must be
//! looked up takes a boxed future that waits for the key store.
//!
//! A request refused here leaves an outcome like any other (see
//! [`refusal`]), so wrong keys and a busy gateway show in the access log
//! and the metrics.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::StatusCode;
use tower::{Layer, Service};

use super::error::ApiError;
use super::in_flight::{self, Hold};
use super::{AppState, auth};
use crate::ops::{CallContext, Caller, OutcomeHandle, RequestContext, RequestId};

/// Puts [`Guard`] in front of a route.
#[derive(Clone)]
pub struct GuardLayer(pub AppState);

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            state: self.0.clone(),
        }
    }
}

/// A route behind the in-flight bound and auth.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Guarded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let slot = match in_flight::slot(&self.state.in_flight) {
            Ok(slot) => slot,
            Err(busy) => {
                return Guarded::answered(refusal(&self.state, &mut request, busy.into()));
            }
        };
        let (mut request, hold) = in_flight::admit(&self.state.in_flight, slot, request);
        let route = request.extensions().get::<MatchedPath>().cloned();
        match auth::authenticate_now(&self.state, route.as_ref(), &mut request) {
            Some(Ok(())) => Guarded::Routed {
                inner: self.inner.call(request),
                hold: Some(hold),
            },
            Some(Err(refused)) => {
                Guarded::answered(hold.attach(refusal(&self.state, &mut request, refused)))
            }
            None => self.after_key_lookup(request, route, hold),
        }
    }
}

impl<S> Guard<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    /// The request routed once its virtual key is looked up: the stack
    /// below moves into the boxed future, as tower's services do when they
    /// answer later (the ready service goes, a clone stays).
    #[cold]
    fn after_key_lookup(
        &mut self,
        mut request: Request,
        route: Option<MatchedPath>,
        hold: Hold,
    ) -> Guarded<S::Future> {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Guarded::Waiting {
            future: Box::pin(async move {
                let response = match auth::authenticate(&state, route.as_ref(), &mut request).await
                {
                    Ok(()) => match inner.call(request).await {
                        Ok(response) => response,
                    },
                    Err(refused) => refusal(&state, &mut request, refused),
                };
                hold.attach(response)
            }),
        }
    }
}

/// The answer to a request refused before its caller was known. A model
/// call (a `POST`) first leaves its outcome (status and error code, no
/// model, no caller) under the request's id; the listings' `GET`s leave
/// none, as when they are served.
#[cold]
fn refusal(state: &AppState, request: &mut Request, error: ApiError) -> Response {
    let response = refusal_noted(state, request, error);
    super::routes::closing_if_body_unread(request, response)
}

/// [`refusal`]'s answer, its outcome left for a model call.
fn refusal_noted(state: &AppState, request: &mut Request, error: ApiError) -> Response {
    if request.method() != http::Method::POST {
        return error.into_response();
    }
    let id = request
        .extensions_mut()
        .remove::<RequestId>()
        .unwrap_or_else(RequestId::generate);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path(), MatchedPath::as_str);
    let context = RequestContext::new(id, Caller::Unknown, route, state.ops.outcomes.clone());
    let call = CallContext {
        attempts: None,
        ..CallContext::client(std::sync::Arc::new(context))
    };
    OutcomeHandle::request(&call).finish(error.status.as_u16(), Some(error.code_or_type()));
    error.into_response()
}

pin_project_lite::pin_project! {
    /// A guarded request's answer on its way.
    #[project = GuardedProj]
    pub enum Guarded<F> {
        /// Passed on to the route; its answer takes the hold on.
        Routed { #[pin] inner: F, hold: Option<Hold> },
        /// Answered here: refused, or past the in-flight bound.
        Answered { response: Option<Response> },
        /// Waiting for the key store, then routed.
        Waiting { future: BoxFuture<'static, Response> },
    }
}

impl<F> Guarded<F> {
    fn answered(response: Response) -> Self {
        Self::Answered {
            response: Some(response),
        }
    }
}

impl<F> Future for Guarded<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardedProj::Routed { inner, hold } => {
                let Ok(response) = std::task::ready!(inner.poll(cx));
                Poll::Ready(Ok(match hold.take() {
                    Some(hold) => hold.attach(response),
                    None => response,
                }))
            }
            GuardedProj::Answered { response } => Poll::Ready(Ok(response
                .take()
                // Polled again after it answered: a caller's mistake, not a client's.
                .unwrap_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response()))),
            GuardedProj::Waiting { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}
