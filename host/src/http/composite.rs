//! Composite requests: a public model backed by a strategy profile. The
//! strategy host answers with one JSON body, or with a stream whose
//! `reasoning_content` carries the stage trace and whose content is the final
//! stage's tokens as they arrive. A JSON answer also names the model that
//! gave the final answer in `x-conclave-final-model`.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;
use http::{HeaderValue, header};
use tokio_stream::wrappers::ReceiverStream;

use super::error::ApiError;
use super::sse::sse_response;
use super::stream_cutoff::StreamCutoff;
use super::tracked::Tracked;
use crate::gateway::Gateway;
use crate::openai::ProxyRequest;
use crate::ops::admission::Admitted;
use crate::ops::{CallContext, OutcomeHandle};
use crate::strategy::LoadedProfile;

/// Answers a request for a composite model. The strategy host fills in the
/// outcome's usage and trace; the status is set here (JSON) or by the stream.
pub async fn handle(
    gateway: &Gateway,
    profile: &Arc<LoadedProfile>,
    req: &ProxyRequest,
    ctx: &CallContext,
    outcome: &OutcomeHandle,
    admitted: Admitted,
    cutoff: &StreamCutoff,
) -> Result<Response, ApiError> {
    let strategies = &gateway.strategies;
    outcome.update(|o| {
        o.profile = Some(profile.plan.name.as_str().into());
        o.model_group = Some(req.model.clone());
    });
    let mut response = if req.stream {
        let (rx, abort) = strategies.execute_stream(profile, &req.model, req, ctx, outcome)?;
        let payloads = ReceiverStream::new(rx).map(|item| item.map_err(ApiError::from));
        // The abort guard lives in the body: a client that goes away stops the run.
        sse_response(Tracked::new(
            payloads,
            outcome.clone(),
            Box::new((abort, admitted)),
            cutoff,
        ))
    } else {
        let answer = strategies
            .execute_answer(profile, &req.model, req, ctx, outcome)
            .await?;
        drop(admitted);
        outcome.first_token();
        outcome.finish(200, None);
        let mut r = Response::new(Body::from(answer.body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Streams start before the final model is known: there only the
        // trace names it.
        if !answer.final_model.is_empty()
            && let Ok(v) = HeaderValue::from_str(&answer.final_model)
        {
            r.headers_mut().insert("x-conclave-final-model", v);
        }
        r
    };
    if let Ok(v) = HeaderValue::from_str(&profile.plan.name) {
        response.headers_mut().insert("x-conclave-strategy", v);
    }
    if let Ok(v) = HeaderValue::from_str(&req.model) {
        response.headers_mut().insert("x-conclave-model-group", v);
    }
    Ok(response)
}
