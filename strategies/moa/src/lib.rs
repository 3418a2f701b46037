//! `moa`, mixture-of-agents: proposers answer in parallel, then an aggregator
//! writes one answer from theirs. With `layers > 1`, each further layer's
//! proposers see the previous layer's answers and refine them.
//!
//! Topology:
//! - `aggregator`: node that writes the final answer (it alone receives the client's tools)
//! - `proposers`: nodes of every layer, unless `layers` lists them per layer
//! - `layers`: optional list of proposer lists, one per layer
//! - direct form (`composite/moa/<provider>/<model>`): `{model}` is the aggregator
//!   and `settings.proposers` (model names) the proposers, default the model itself
//!
//! Settings: `layers` (default 1), `min_proposers` (default 1): fewer
//! successful proposals than this fails the request; `aggregator_instructions`
//! replaces the built-in synthesis prompt; `proposers` (direct form).

use conclave_strategy_sdk::*;

#[derive(Deserialize)]
struct Topology {
    aggregator: Option<Node>,
    #[serde(default)]
    proposers: Vec<Node>,
    #[serde(default)]
    layers: Vec<Vec<Node>>,
    /// Direct form only.
    model: Option<String>,
}

#[derive(Deserialize)]
#[serde(default)]
struct Settings {
    layers: usize,
    min_proposers: usize,
    aggregator_instructions: Option<String>,
    proposers: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            layers: 1,
            min_proposers: 1,
            aggregator_instructions: None,
            proposers: Vec::new(),
        }
    }
}

const SYNTHESIS: &str = "Several assistants have answered the user's latest message; their answers follow. \
Read them critically: some may be wrong, incomplete or contradict each other. Write one answer of your own \
that keeps what is correct and useful, fixes what is wrong, and fills what is missing. Answer the user \
directly; do not mention the other assistants or that you are combining answers.";

const REFINE: &str = "Other assistants have answered the user's latest message; their answers follow. \
Use them as input: check them, keep what holds up, and give your own best answer.";

struct Plan {
    aggregator: Node,
    layers: Vec<Vec<Node>>,
}

fn plan(t: &Topology, s: &Settings) -> Result<Plan, String> {
    let aggregator = match (&t.aggregator, &t.model) {
        (Some(a), _) => a.clone(),
        (None, Some(m)) => Node {
            model: m.clone(),
            provider: None,
            params: None,
        },
        (None, None) => return Err("aggregator: missing (a node such as {model: gpt-4o})".into()),
    };
    let mut layers = if !t.layers.is_empty() {
        t.layers.clone()
    } else {
        let proposers = if !t.proposers.is_empty() {
            t.proposers.clone()
        } else if !s.proposers.is_empty() {
            s.proposers
                .iter()
                .map(|m| Node {
                    model: m.clone(),
                    provider: None,
                    params: None,
                })
                .collect()
        } else if t.model.is_some() {
            vec![aggregator.clone()]
        } else {
            return Err("proposers: at least one proposer node is required".into());
        };
        check_count("layers", s.layers)?;
        vec![proposers; s.layers]
    };
    if let Some((i, _)) = layers.iter().enumerate().find(|(_, l)| l.is_empty()) {
        return Err(format!("layers[{i}]: a layer needs at least one proposer"));
    }
    if let Some((i, l)) = layers
        .iter()
        .enumerate()
        .find(|(_, l)| l.len() < s.min_proposers)
    {
        return Err(format!(
            "settings.min_proposers: {} is more than the {} proposer(s) of layer {}",
            s.min_proposers,
            l.len(),
            i + 1
        ));
    }
    layers.truncate(layers.len().max(1));
    Ok(Plan { aggregator, layers })
}

fn numbered(answers: &[(String, String)]) -> String {
    answers
        .iter()
        .enumerate()
        .map(|(i, (_, text))| format!("### Answer {}\n{}", i + 1, text))
        .collect::<Vec<_>>()
        .join("\n\n")
}

struct Moa;

/// `error` saying which layer it ended, its kind (and so its status) kept.
fn in_layer(error: Error, layer: usize) -> Error {
    match error {
        Error::Upstream(m) => Error::Upstream(format!("layer {layer}: {m}")),
        Error::LimitExceeded(m) => Error::LimitExceeded(format!("layer {layer}: {m}")),
        other => other,
    }
}

impl Strategy for Moa {
    type Topology = Topology;
    type Settings = Settings;

    fn validate(t: &Topology, s: &Settings) -> Result<(), String> {
        plan(t, s).map(|_| ())
    }

    fn run(inv: &Invocation, t: Topology, s: Settings) -> Result<ChatResponse, Error> {
        let plan = plan(&t, &s).map_err(Error::InvalidRequest)?;
        let messages = &inv.request.messages;
        let stage_params = params_without_tools(&inv.request);
        let mut previous: Vec<(String, String)> = Vec::new();
        let layer_count = plan.layers.len();
        for (layer, proposers) in plan.layers.iter().enumerate() {
            let stage = if layer_count > 1 {
                format!("proposals (layer {})", layer + 1)
            } else {
                "proposals".to_owned()
            };
            trace(&stage, format!("asking {} proposer(s)", proposers.len()));
            // Proposers get no tools, so tool turns reach them as plain text.
            let plain = without_tool_turns(messages);
            let layer_messages = if previous.is_empty() {
                plain
            } else {
                with_system(&plain, format!("{REFINE}\n\n{}", numbered(&previous)))
            };
            let requests: Vec<ChatRequest> = proposers
                .iter()
                .map(|p| p.request_with(layer_messages.clone(), &stage_params))
                .collect();
            let names: Vec<String> = proposers.iter().map(|p| p.model.clone()).collect();
            let gathered = gather(&stage, &requests, &names);
            gathered
                .require(s.min_proposers, "proposers", "min_proposers")
                .map_err(|e| in_layer(e, layer + 1))?;
            previous = gathered
                .ok
                .into_iter()
                .map(|(i, r)| (names[i].clone(), r.content))
                .collect();
        }
        let instructions = s.aggregator_instructions.as_deref().unwrap_or(SYNTHESIS);
        trace(
            "aggregation",
            format!(
                "{} writes the answer from {} proposal(s)",
                plan.aggregator.model,
                previous.len()
            ),
        );
        let final_messages = with_system(
            messages,
            format!("{instructions}\n\n{}", numbered(&previous)),
        );
        respond(
            &plan
                .aggregator
                .request_with(final_messages, &inv.request.params()),
        )
    }
}

strategy!(Moa);
