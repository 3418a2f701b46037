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

/// The most a count setting (samples, candidates, layers) may ask for:
/// far past any run's `max_calls`, so a larger count is a mistake, refused
/// as one rather than met with an allocation the sandbox cannot hold.
pub const MAX_COUNT: usize = 1024;

/// Refuses a count setting of 0 or past [`MAX_COUNT`], naming it.
pub fn check_count(setting: &str, count: usize) -> Result<(), String> {
    if (1..=MAX_COUNT).contains(&count) {
        Ok(())
    } else {
        Err(format!(
            "settings.{setting}: must be from 1 to {MAX_COUNT}, not {count}"
        ))
    }
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
    /// A node for a bare model name (settings that list model names, the
    /// direct form's `{model}`).
    pub fn named(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            provider: None,
            params: None,
        }
    }

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

/// Sets the sampling temperature of a stage that draws several samples:
/// `setting` when given, else the client's own `temperature` (already in
/// `params`), else `default`.
pub fn sampling_temperature(params: &mut Map<String, Value>, setting: Option<f64>, default: f64) {
    match setting {
        Some(t) => {
            params.insert("temperature".into(), json!(t));
        }
        None => {
            params
                .entry("temperature")
                .or_insert_with(|| json!(default));
        }
    }
}

/// Whether the client offered tools (`tools` or the legacy `functions`).
pub fn has_tools(req: &ChatRequest) -> bool {
    let p = req.params();
    ["tools", "functions"].iter().any(|k| {
        p.get(*k)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    })
}

/// The conversation for a stage that gets no tools: assistant tool calls and
/// `role: tool` results become plain text (providers refuse tool turns in a
/// request that defines no tools), and consecutive results merge into one
/// user message. Other messages are kept as they are.
pub fn without_tool_turns(messages: &[Message]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    let mut merging_results = false;
    for m in messages {
        if m.role == "tool" {
            let id = m.tool_call_id.as_deref().unwrap_or("?");
            let text = format!("[tool result for call {id}]\n{}", m.content);
            match out.last_mut() {
                Some(last) if merging_results => {
                    last.content.push_str("\n\n");
                    last.content.push_str(&text);
                }
                _ => out.push(Message::user(text)),
            }
            merging_results = true;
            continue;
        }
        merging_results = false;
        let mut plain = Message::of(&m.role, m.content.clone());
        plain.name = m.name.clone();
        if let Some(calls) = m.tool_calls_json.as_deref() {
            let described = describe_tool_calls(calls);
            if !plain.content.is_empty() {
                plain.content.push_str("\n\n");
            }
            plain.content.push_str(&described);
        }
        out.push(plain);
    }
    out
}

fn describe_tool_calls(json: &str) -> String {
    let calls = serde_json::from_str::<Value>(json).unwrap_or(Value::Null);
    let lines: Vec<String> = calls
        .as_array()
        .map(|list| {
            list.iter()
                .map(|c| {
                    let id = c["id"].as_str().unwrap_or("?");
                    let name = c["function"]["name"].as_str().unwrap_or("?");
                    let args = c["function"]["arguments"].as_str().unwrap_or("");
                    format!("[called tool {name} with {args} (call {id})]")
                })
                .collect()
        })
        .unwrap_or_default();
    if lines.is_empty() {
        "[called tools]".to_owned()
    } else {
        lines.join("\n")
    }
}

/// The final stage of a strategy that picked an answer (a vote, a judge, a
/// verifier). Without client tools the picked response is the answer as it
/// is (no extra call). With tools, the picked answer's node is asked once
/// more through [`respond`], with the client's whole conversation and
/// params (tools included) and `note` plus the picked text as a system
/// message, so it can answer or call a tool; only this call sees the tools.
pub fn deliver(
    inv: &Invocation,
    node: &Node,
    picked: ChatResponse,
    note: &str,
) -> Result<ChatResponse, Error> {
    if !has_tools(&inv.request) {
        return Ok(picked);
    }
    let messages = with_system(
        &inv.request.messages,
        format!("{note}\n\n{}", picked.content),
    );
    respond(&node.request_with(messages, &inv.request.params()))
}

/// What a fan-out returned: the successes and failures, by request index.
pub struct Gathered {
    pub ok: Vec<(usize, ChatResponse)>,
    pub failed: Vec<(usize, Error)>,
    /// How many requests were sent.
    pub asked: usize,
    names: Vec<String>,
}

/// Sends `reqs` concurrently ([`complete_all`]) and traces each result under
/// `stage`, naming request `i` by `names[i]` (its model when absent).
pub fn gather(stage: &str, reqs: &[ChatRequest], names: &[String]) -> Gathered {
    let names: Vec<String> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| names.get(i).cloned().unwrap_or_else(|| r.model.clone()))
        .collect();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (i, result) in complete_all(reqs).into_iter().enumerate() {
        match result {
            Ok(r) => {
                let flat = r.content.split_whitespace().collect::<Vec<_>>().join(" ");
                trace(
                    stage,
                    format!("{} answered: {}", names[i], preview(&flat, 160)),
                );
                ok.push((i, r));
            }
            Err(e) => {
                trace(
                    stage,
                    format!("{} failed and is left out: {}", names[i], describe(&e)),
                );
                failed.push((i, e));
            }
        }
    }
    Gathered {
        ok,
        failed,
        asked: reqs.len(),
        names,
    }
}

impl Gathered {
    /// An error when fewer than `min` requests succeeded: `what` names the
    /// askers (e.g. `council members`), and the failures are listed. A
    /// sandbox limit among the failures is reported as such.
    pub fn require(&self, min: usize, what: &str, setting: &str) -> Result<(), Error> {
        let min = min.max(1);
        if self.ok.len() >= min {
            return Ok(());
        }
        let reasons: Vec<String> = self
            .failed
            .iter()
            .map(|(i, e)| format!("{}: {}", self.names[*i], describe(e)))
            .collect();
        let message = format!(
            "only {} of {} {what} answered; {setting} is {min}{}",
            self.ok.len(),
            self.asked,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join("; "))
            }
        );
        if self
            .failed
            .iter()
            .any(|(_, e)| matches!(e, Error::LimitExceeded(_)))
        {
            Err(Error::LimitExceeded(message))
        } else {
            Err(Error::Upstream(message))
        }
    }
}

/// Titled blocks (`### title` then the text), for prompts that quote
/// several answers.
pub fn sections<'a>(items: impl IntoIterator<Item = (String, &'a str)>) -> String {
    items
        .into_iter()
        .map(|(title, text)| format!("### {title}\n{}", text.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A Markdown table, for traces.
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: Vec<String>| format!("| {} |", cells.join(" | "));
    let mut out = vec![
        line(headers.iter().map(|h| (*h).to_owned()).collect()),
        line(headers.iter().map(|_| "---".to_owned()).collect()),
    ];
    out.extend(rows.iter().map(|r| {
        line(
            r.iter()
                .map(|c| c.replace('|', "\\|").replace('\n', " "))
                .collect(),
        )
    }));
    out.join("\n")
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
