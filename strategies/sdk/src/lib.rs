//! Write conclave strategies in Rust.
//!
//! A strategy implements [`Strategy`]: it declares the serde types of its
//! topology and settings, and its `run` is mostly its own logic; builders,
//! calls, fan-out, tracing and error plumbing come from here. Export it with
//! [`strategy!`]:
//!
//! ```ignore
//! use conclave_strategy_sdk::*;
//!
//! struct Echo;
//! impl Strategy for Echo {
//!     type Topology = Node;
//!     type Settings = NoSettings;
//!     fn run(inv: &Invocation, node: Node, _: NoSettings) -> Result<ChatResponse, Error> {
//!         respond(&node.request(inv.request.messages.clone()))
//!     }
//! }
//! strategy!(Echo);
//! ```

/// Bindings generated from wit/ (the `conclave:strategy` world).
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "strategy",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_strategy",
        default_bindings_module: "conclave_strategy_sdk::bindings",
    });
}

use bindings::conclave::strategy::host;
pub use bindings::conclave::strategy::types::{
    ChatRequest, ChatResponse, Error, Invocation, Message, Usage,
};
pub use serde::Deserialize;
use serde::de::DeserializeOwned;
pub use serde_json::{self, Map, Value, json};

/// A strategy: typed topology and settings, and the logic that uses them.
pub trait Strategy {
    /// The profile's topology (`topology` in the config), minus nothing: the
    /// whole object, `settings` included, is offered to it.
    type Topology: DeserializeOwned;
    /// `topology.settings` merged with the request's overrides.
    type Settings: DeserializeOwned + Default;

    /// Answers one request.
    fn run(
        inv: &Invocation,
        topology: Self::Topology,
        settings: Self::Settings,
    ) -> Result<ChatResponse, Error>;

    /// Extra checks at config load, beyond what deserialization enforces.
    fn validate(_topology: &Self::Topology, _settings: &Self::Settings) -> Result<(), String> {
        Ok(())
    }
}

/// Exports a [`Strategy`] as the component's `run` and `validate`.
#[macro_export]
macro_rules! strategy {
    ($strategy:ty) => {
        struct __ConclaveExport;
        impl $crate::bindings::Guest for __ConclaveExport {
            fn run(inv: $crate::Invocation) -> Result<$crate::ChatResponse, $crate::Error> {
                let topology = $crate::parse_json(&inv.topology_json, "topology")
                    .map_err($crate::Error::InvalidRequest)?;
                let settings = $crate::parse_settings(&inv.settings_json)
                    .map_err($crate::Error::InvalidRequest)?;
                <$strategy as $crate::Strategy>::run(&inv, topology, settings)
            }
            fn validate(topology_json: String, settings_json: String) -> Result<(), String> {
                let topology = $crate::parse_json(&topology_json, "topology")?;
                let settings = $crate::parse_settings(&settings_json)?;
                <$strategy as $crate::Strategy>::validate(&topology, &settings)
            }
        }
        $crate::bindings::export_strategy!(__ConclaveExport);
    };
}

/// Settings for strategies that take none (unknown keys are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct NoSettings {}

/// Parses JSON into `T`; errors name the key path, e.g. `aggregator.model: missing field`.
pub fn parse_json<T: DeserializeOwned>(json: &str, what: &str) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("{what}: {}", e.inner())
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

/// Parses settings; an empty string means no settings.
pub fn parse_settings<T: DeserializeOwned + Default>(json: &str) -> Result<T, String> {
    if json.trim().is_empty() {
        return Ok(T::default());
    }
    parse_json(json, "settings")
}

/// A topology node: a model, an optional provider bundle (resolved by the
/// host) and request parameters of its own.
#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    pub model: String,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub params: Option<Map<String, Value>>,
}

impl Node {
    /// A request to this node with its own params.
    pub fn request(&self, messages: Vec<Message>) -> ChatRequest {
        self.request_with(messages, &Map::new())
    }

    /// A request to this node: `base` params, then the node's own (node wins).
    pub fn request_with(&self, messages: Vec<Message>, base: &Map<String, Value>) -> ChatRequest {
        let mut params = base.clone();
        if let Some(own) = &self.params {
            params.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        request(&self.model, messages).with_params(params)
    }
}

/// A request to `model`.
pub fn request(model: &str, messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages,
        params_json: None,
    }
}

impl ChatRequest {
    /// The request's params as a JSON object (empty when none or invalid).
    pub fn params(&self) -> Map<String, Value> {
        self.params_json
            .as_deref()
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Replaces the params.
    pub fn with_params(mut self, params: Map<String, Value>) -> Self {
        self.params_json = (!params.is_empty()).then(|| Value::Object(params).to_string());
        self
    }

    /// Sets one param.
    pub fn with_param(self, key: &str, value: Value) -> Self {
        let mut params = self.params();
        params.insert(key.to_owned(), value);
        self.with_params(params)
    }

    /// The text of the last user message.
    pub fn last_user_text(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.clone())
            .unwrap_or_default()
    }
}

/// The client's params without tool definitions, for intermediate stages
/// (only the final stage may call tools).
pub fn params_without_tools(req: &ChatRequest) -> Map<String, Value> {
    let mut p = req.params();
    for key in [
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "stream_options",
    ] {
        p.remove(key);
    }
    p
}

impl Message {
    fn of(role: &str, text: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: text.into(),
            name: None,
            tool_call_id: None,
            tool_calls_json: None,
        }
    }
    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Self::of("system", text)
    }
    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::of("user", text)
    }
    /// An assistant message.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::of("assistant", text)
    }
}

/// `messages` with `system` prepended (after any system messages already there).
pub fn with_system(messages: &[Message], system: impl Into<String>) -> Vec<Message> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    let split = messages.iter().take_while(|m| m.role == "system").count();
    out.extend_from_slice(&messages[..split]);
    out.push(Message::system(system));
    out.extend_from_slice(&messages[split..]);
    out
}

/// The conversation as plain text with role labels, for prompts that quote it.
pub fn transcript(messages: &[Message]) -> String {
    messages
        .iter()
        .filter(|m| !m.content.is_empty())
        .map(|m| format!("[{}]\n{}", m.role, m.content))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// One completion through the host's router.
pub fn complete(req: &ChatRequest) -> Result<ChatResponse, Error> {
    host::complete(req)
}

/// Completions run concurrently by the host, results in order.
pub fn complete_all(reqs: &[ChatRequest]) -> Vec<Result<ChatResponse, Error>> {
    host::complete_all(reqs)
}

/// The final answer, streamed to the client when it asked for a stream.
pub fn respond(req: &ChatRequest) -> Result<ChatResponse, Error> {
    host::respond(req)
}

/// A stage event for the trace.
pub fn trace(stage: &str, text: impl AsRef<str>) {
    host::trace(stage, text.as_ref());
}

/// The first `n` characters of `text`, with an ellipsis when cut.
pub fn preview(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A short description of an error, for traces.
pub fn describe(error: &Error) -> String {
    match error {
        Error::InvalidRequest(m) => format!("invalid request: {m}"),
        Error::ModelNotFound(m) => format!("model not found: {m}"),
        Error::Upstream(m) => format!("upstream error: {m}"),
        Error::Timeout => "timed out".to_owned(),
        Error::LimitExceeded(m) => format!("limit exceeded: {m}"),
    }
}

/// Adds `b`'s token counts to `a`.
pub fn add_usage(a: &mut Usage, b: &Usage) {
    a.prompt_tokens = a.prompt_tokens.saturating_add(b.prompt_tokens);
    a.completion_tokens = a.completion_tokens.saturating_add(b.completion_tokens);
}
