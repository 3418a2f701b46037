//! LiteLLM's `POST /spend/calculate`: what a call would cost, or what an
//! answer did, priced as the gateway prices its own calls (the model's
//! deployment's configured price, else the built-in table).

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::{ApiError, AppState, authenticate, invalid};
use crate::http::route_rules::PublicRoute;
use crate::ops::Usage;
use crate::ops::estimate::{SentText, prompt_tokens};

#[derive(Deserialize)]
struct CalculateBody {
    model: Option<String>,
    messages: Option<Box<RawValue>>,
    completion_response: Option<Box<RawValue>>,
}

#[utoipa::path(
    post,
    path = "/spend/calculate",
    operation_id = "spend_calculate",
    tag = "spend",
    summary = "The cost of a call or of an answer",
    request_body = super::super::openapi::JsonObject,
    responses(
        (status = 200, description = "`{\"cost\": <USD>}`", body = super::super::openapi::JsonObject),
        (status = 400, description = "Neither model and messages nor completion_response, or no price known for the model", body = super::super::openapi::ErrorResponse),
        (status = 401, description = "Missing or wrong key", body = super::super::openapi::ErrorResponse)
    ),
    security(("bearer" = []))
)]
/// `POST /spend/calculate`: with `{"model", "messages"}`, the cost of the
/// prompt (its tokens estimated as the gateway estimates a prompt no
/// upstream counted); with `{"completion_response"}`, the cost of that
/// answer by its `model` and `usage` (its output estimated from its text
/// when it has no usage). Any valid key may ask, as it reads prices only;
/// `public_routes` may lift the key, as LiteLLM's docs do, and an open
/// gateway needs none.
pub async fn calculate(
    State(state): State<AppState>,
    public: Option<Extension<PublicRoute>>,
    request: Request,
) -> Result<Response, ApiError> {
    // An open gateway (no master key) has no keys to check.
    if public.is_none() && state.gateway().master_key.is_some() {
        authenticate(&state, request.headers()).await?;
    }
    let gateway = state.gateway();
    let bytes: Bytes =
        super::super::routes::read_body(request, gateway.body_limit, gateway.body_timeout).await?;
    let body: CalculateBody = super::typed(serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(
            format!(
                "the body is not valid JSON: {}",
                crate::openai::describe_json_error(&e)
            ),
            None,
        )
    })?)?;
    let (model, usage) = match (body.model, body.completion_response) {
        (Some(model), _) => {
            let listed = body
                .messages
                .as_ref()
                .is_some_and(|m| m.get().trim_start().starts_with('['));
            if !listed {
                return Err(invalid(
                    "messages",
                    "a list of messages is required with model",
                ));
            }
            let fields: crate::openai::RawFields = crate::openai::from_json_bytes(&bytes)
                .map_err(|e| ApiError::invalid(format!("the body is not usable: {e}"), None))?;
            let usage = Usage {
                prompt_tokens: prompt_tokens(&fields),
                completion_tokens: 0,
            };
            (model, usage)
        }
        (None, Some(answer)) => answered(answer.get().as_bytes())?,
        (None, None) => {
            return Err(invalid(
                "model",
                "give model and messages, or completion_response",
            ));
        }
    };
    let deployment = gateway
        .router
        .client_group(&model)
        .and_then(|(group, _)| group.deployments.first().map(|d| d.id.clone()));
    let price = gateway
        .prices
        .quote(deployment.as_deref(), &model)
        .ok_or_else(|| {
            invalid(
                "model",
                format!(
                    "no price is known for {model:?}: it is neither a priced model of this \
                     gateway nor in the built-in price table"
                ),
            )
        })?;
    let cost = price.cost(usage.prompt_tokens, usage.completion_tokens);
    Ok(Json(json!({"cost": cost})).into_response())
}

/// The model and usage of an answer given as `completion_response`.
fn answered(answer: &[u8]) -> Result<(String, Usage), ApiError> {
    #[derive(Deserialize)]
    struct Named {
        model: Option<String>,
    }
    let named: Named = serde_json::from_slice(answer).map_err(|_| {
        invalid(
            "completion_response",
            "must be an answer object with a string model",
        )
    })?;
    let model = named
        .model
        .ok_or_else(|| invalid("completion_response.model", "is required"))?;
    let usage = crate::ops::usage_in_body(answer).unwrap_or_else(|| {
        let mut text = SentText::default();
        text.add(answer);
        Usage {
            prompt_tokens: 0,
            completion_tokens: text.tokens(),
        }
    });
    Ok((model, usage))
}
