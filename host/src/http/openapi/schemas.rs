//! Schemas of the documented bodies. The model endpoints forward request
//! fields as the client's raw JSON (see [`crate::openai::RawFields`]), so
//! these types exist only to describe the fields the gateway reads or that
//! clients most need; every object also admits the fields not listed here,
//! which reach the upstream untouched. They are never built at run time.
#![allow(dead_code)]

use std::collections::HashMap;

use serde_json::Value;
use utoipa::ToSchema;

/// Any JSON object: a body passed through as the upstream or the dialect
/// defines it.
#[derive(ToSchema)]
#[schema(value_type = Object)]
pub struct JsonObject(HashMap<String, Value>);

/// `POST /v1/chat/completions`.
#[derive(ToSchema)]
pub struct ChatCompletionRequest {
    /// A public model name: a model group, an alias or a composite profile.
    #[schema(example = "gpt-4o-mini")]
    model: String,
    /// The conversation, in OpenAI's message shape.
    #[schema(value_type = Vec<Object>)]
    messages: Vec<Value>,
    /// Answer as server-sent events (`chat.completion.chunk`, then `[DONE]`).
    stream: Option<bool>,
    /// Model groups to try, in order, when the requested one fails.
    fallbacks: Option<Vec<String>>,
    /// Ignore configured fallbacks for this request.
    disable_fallbacks: Option<bool>,
    /// Every other OpenAI field (temperature, tools, response_format, ...).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: HashMap<String, Value>,
}

/// `POST /v1/completions` (legacy text completions).
#[derive(ToSchema)]
pub struct CompletionRequest {
    #[schema(example = "gpt-3.5-turbo-instruct")]
    model: String,
    /// A string or a list of strings.
    #[schema(value_type = Object)]
    prompt: Value,
    stream: Option<bool>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: HashMap<String, Value>,
}

/// `POST /v1/embeddings`.
#[derive(ToSchema)]
pub struct EmbeddingRequest {
    #[schema(example = "text-embedding-3-small")]
    model: String,
    /// A string, a list of strings or token arrays.
    #[schema(value_type = Object)]
    input: Value,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: HashMap<String, Value>,
}

/// `POST /v1/moderations`.
#[derive(ToSchema)]
pub struct ModerationRequest {
    /// The model group that serves moderations (required here, unlike
    /// OpenAI's API, which picks its own default).
    #[schema(example = "omni-moderation-latest")]
    model: String,
    /// A string, a list of strings, or a list of text and image parts.
    #[schema(value_type = Object)]
    input: Value,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: HashMap<String, Value>,
}

/// `POST /v1/images/generations`.
#[derive(ToSchema)]
pub struct ImageGenerationRequest {
    /// The model group that generates images (required here).
    #[schema(example = "gpt-image-1")]
    model: String,
    prompt: String,
    n: Option<u32>,
    size: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: HashMap<String, Value>,
}

/// `POST /v1/rerank` (Cohere's shape, as LiteLLM serves it).
#[derive(ToSchema)]
pub struct RerankRequest {
    #[schema(example = "rerank-2")]
    model: String,
    query: String,
    /// Strings, or objects with a `text`.
    #[schema(value_type = Vec<Object>)]
    documents: Vec<Value>,
    top_n: Option<u32>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: HashMap<String, Value>,
}

/// `POST /v1/responses` (OpenAI's Responses API).
#[derive(ToSchema)]
pub struct ResponsesRequest {
    model: String,
    /// A string or a list of input items.
    #[schema(value_type = Object)]
    input: Value,
    instructions: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<Vec<Value>>,
    max_output_tokens: Option<u32>,
    stream: Option<bool>,
    store: Option<bool>,
    previous_response_id: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: HashMap<String, Value>,
}

/// `POST /v1/messages` (Anthropic's Messages API).
#[derive(ToSchema)]
pub struct MessagesRequest {
    #[schema(example = "claude-sonnet-4-5")]
    model: String,
    max_tokens: u32,
    /// `user` and `assistant` turns with text, image, tool_use, tool_result
    /// and thinking blocks.
    #[schema(value_type = Vec<Object>)]
    messages: Vec<Value>,
    /// A string or a list of text blocks.
    #[schema(value_type = Option<Object>)]
    system: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<Vec<Value>>,
    /// Extended thinking (`{"type": "enabled", "budget_tokens": N}`).
    #[schema(value_type = Option<Object>)]
    thinking: Option<Value>,
    stream: Option<bool>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    other: HashMap<String, Value>,
}

/// The answer of `POST /v1/messages/count_tokens`.
#[derive(ToSchema)]
pub struct CountTokensResponse {
    input_tokens: u64,
}

/// One entry of `GET /v1/models`.
#[derive(ToSchema)]
pub struct ModelEntry {
    id: String,
    #[schema(example = "model")]
    object: String,
    created: u64,
    #[schema(example = "conclave")]
    owned_by: String,
}

/// `GET /v1/models`.
#[derive(ToSchema)]
pub struct ModelList {
    #[schema(example = "list")]
    object: String,
    data: Vec<ModelEntry>,
}

/// OpenAI's error shape, used by every route but the Messages API.
#[derive(ToSchema)]
pub struct ErrorResponse {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
pub struct ErrorDetail {
    message: String,
    #[serde(rename = "type")]
    #[schema(example = "invalid_request_error")]
    kind: String,
    param: Option<String>,
    code: Option<String>,
}

/// Anthropic's error shape, used by the Messages API routes.
#[derive(ToSchema)]
pub struct AnthropicErrorResponse {
    #[serde(rename = "type")]
    #[schema(example = "error")]
    kind: String,
    error: AnthropicErrorDetail,
}

/// What went wrong, in Anthropic's words.
#[derive(ToSchema)]
pub struct AnthropicErrorDetail {
    #[serde(rename = "type")]
    #[schema(example = "invalid_request_error")]
    kind: String,
    message: String,
}
