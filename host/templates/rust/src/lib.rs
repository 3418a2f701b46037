//! {{name}}: a conclave composite strategy.
//!
//! Topology: `{model, params?}`, the model that answers and request params of
//! its own. Settings: `system_prompt` (optional), put before the conversation.

// Some generated binding functions take many arguments.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "strategy", path: "wit" });

// The world's `use` brings ChatResponse, Error and Invocation to the crate root.
use conclave::strategy::host;
use conclave::strategy::types::{ChatRequest, Message};
use serde_json::{Map, Value};

/// What the profile configures.
struct Config {
    model: String,
    params: Map<String, Value>,
    system_prompt: Option<String>,
}

/// Reads the topology and settings; errors name the offending key.
fn parse(topology_json: &str, settings_json: &str) -> Result<Config, String> {
    let topology: Value =
        serde_json::from_str(topology_json).map_err(|e| format!("topology: not JSON: {e}"))?;
    let model = match topology.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(
                "model: missing (the model that answers, e.g. {model: gpt-4o-mini})".into(),
            );
        }
    };
    let params = match topology.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err("params: must be an object".into()),
    };
    let settings: Value = if settings_json.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(settings_json).map_err(|e| format!("settings: not JSON: {e}"))?
    };
    let system_prompt = match settings.get("system_prompt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("settings.system_prompt: must be a string".into()),
    };
    Ok(Config {
        model,
        params,
        system_prompt,
    })
}

struct Component;

impl Guest for Component {
    fn validate(topology_json: String, settings_json: String) -> Result<(), String> {
        parse(&topology_json, &settings_json).map(|_| ())
    }

    fn run(inv: Invocation) -> Result<ChatResponse, Error> {
        let config =
            parse(&inv.topology_json, &inv.settings_json).map_err(Error::InvalidRequest)?;
        let mut messages = inv.request.messages.clone();
        if let Some(prompt) = config.system_prompt {
            host::trace("prepare", "adding the system prompt from the settings");
            let at = messages.iter().take_while(|m| m.role == "system").count();
            messages.insert(
                at,
                Message {
                    role: "system".into(),
                    content: prompt,
                    name: None,
                    tool_call_id: None,
                    tool_calls_json: None,
                },
            );
        }
        // The client's params (tools included), then the node's own.
        let mut params: Map<String, Value> = inv
            .request
            .params_json
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default();
        params.extend(config.params);
        host::trace("answer", &format!("asking {}", config.model));
        // `respond` streams the answer to the client when it asked for a
        // stream; a failed call's error fails the run with it.
        host::respond(&ChatRequest {
            model: config.model,
            messages,
            params_json: (!params.is_empty()).then(|| Value::Object(params).to_string()),
        })
    }
}

export!(Component);
