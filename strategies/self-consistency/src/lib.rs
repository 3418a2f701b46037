//! `self-consistency`: sample several answers, extract each one's final
//! answer, and keep the one most samples agree on.
//!
//! Topology, one of:
//! - a node at the root (`{model, provider?, params?}`, also the direct form
//!   `composite/self-consistency/<provider>/<model>`): sampled `samples` times
//! - `models`: a list of nodes; sample `i` goes to `models[i % len]`
//!
//! Settings:
//! - `samples` (default 5, or the length of `models`): how many samples
//! - `temperature`: sampling temperature (default: the client's
//!   `temperature`, else 0.7). A request's `temperature` overrides the
//!   profile's, as any request key named like a setting does; a node's own
//!   `params` win over both.
//! - `answer_pattern`: a regex (regex-lite syntax: no Unicode classes) whose
//!   first capture group (the whole match when it has none) is the answer,
//!   taken from the pattern's last match in a sample. A sample it does not
//!   match casts no vote. Without it, the answer is a sample's last
//!   non-empty line.
//! - `min_samples` (default 1): fewer successful samples fails the request
//!
//! Answers are compared after normalization: surrounding whitespace and
//! markdown emphasis (`*`, `_`, `` ` ``) removed, inner whitespace collapsed,
//! lowercased, trailing punctuation (`.`, `,`, `;`, `:`, `!`, `?`) removed.
//! The answer with the most votes wins; a tie goes to the answer whose first
//! vote came from the earliest sample (samples are numbered in request
//! order). The vote table (answers in their normalized form) is in the
//! trace. The final answer is the full text of the first sample that voted
//! for the winner; when no sample yields an answer, it is the first
//! successful sample. Samples never receive the client's tools: with tools,
//! the winning sample's node is asked once more with them (and the winning
//! text as a draft), and that reply is the answer.

use conclave_strategy_sdk::*;
use regex_lite::Regex;

#[derive(Deserialize)]
struct Topology {
    model: Option<String>,
    #[serde(default)]
    params: Option<Map<String, Value>>,
    #[serde(default)]
    models: Vec<Node>,
}

#[derive(Deserialize)]
#[serde(default)]
struct Settings {
    samples: Option<usize>,
    temperature: Option<f64>,
    answer_pattern: Option<String>,
    min_samples: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            samples: None,
            temperature: None,
            answer_pattern: None,
            min_samples: 1,
        }
    }
}

const DEFAULT_SAMPLES: usize = 5;
const DEFAULT_TEMPERATURE: f64 = 0.7;

const DRAFT: &str = "Several independent attempts at the user's latest message agreed on the \
answer below. Use it as your answer; if the user's tools are needed to complete it, call them.";

struct Plan {
    /// The node of each sample.
    samples: Vec<Node>,
    pattern: Option<Regex>,
}

fn plan(t: &Topology, s: &Settings) -> Result<Plan, String> {
    let nodes: Vec<Node> = match (&t.model, t.models.is_empty()) {
        (Some(_), false) => {
            return Err(
                "models: give either a root node (model) or a models list, not both".into(),
            );
        }
        (Some(m), true) => vec![Node {
            model: m.clone(),
            provider: None,
            params: t.params.clone(),
        }],
        (None, false) => t.models.clone(),
        (None, true) => {
            return Err(
                "model: missing (a node such as {model: gpt-4o}, or models: [nodes])".into(),
            );
        }
    };
    let count = s.samples.unwrap_or(if t.models.is_empty() {
        DEFAULT_SAMPLES
    } else {
        nodes.len()
    });
    check_count("samples", count)?;
    if s.min_samples == 0 || s.min_samples > count {
        return Err(format!(
            "settings.min_samples: must be between 1 and samples ({count})"
        ));
    }
    let pattern = match &s.answer_pattern {
        Some(p) => Some(
            Regex::new(p).map_err(|e| format!("settings.answer_pattern: invalid regex: {e}"))?,
        ),
        None => None,
    };
    Ok(Plan {
        samples: (0..count).map(|i| nodes[i % nodes.len()].clone()).collect(),
        pattern,
    })
}

/// The answer a sample gives, as written.
fn extract(text: &str, pattern: Option<&Regex>) -> Option<String> {
    match pattern {
        Some(re) => re
            .captures_iter(text)
            .last()
            .and_then(|c| c.get(1).or_else(|| c.get(0)).map(|m| m.as_str().to_owned())),
        None => text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_owned),
    }
}

/// The form answers are compared in.
fn normalize(answer: &str) -> String {
    let collapsed = answer.split_whitespace().collect::<Vec<_>>().join(" ");
    let unwrapped =
        collapsed.trim_matches(|c: char| matches!(c, '*' | '_' | '`') || c.is_whitespace());
    unwrapped
        .to_lowercase()
        .trim_end_matches(|c: char| {
            matches!(c, '.' | ',' | ';' | ':' | '!' | '?') || c.is_whitespace()
        })
        .to_owned()
}

/// One distinct answer and the samples (positions in the success list) that gave it.
struct Tally {
    key: String,
    voters: Vec<usize>,
}

struct SelfConsistency;

impl Strategy for SelfConsistency {
    type Topology = Topology;
    type Settings = Settings;

    fn validate(t: &Topology, s: &Settings) -> Result<(), String> {
        plan(t, s).map(|_| ())
    }

    fn run(inv: &Invocation, t: Topology, s: Settings) -> Result<ChatResponse, Error> {
        let plan = plan(&t, &s).map_err(Error::InvalidRequest)?;
        let stage = "samples";
        let mut params = params_without_tools(&inv.request);
        sampling_temperature(&mut params, s.temperature, DEFAULT_TEMPERATURE);
        let conversation = without_tool_turns(&inv.request.messages);
        let requests: Vec<ChatRequest> = plan
            .samples
            .iter()
            .map(|n| n.request_with(conversation.clone(), &params))
            .collect();
        let names: Vec<String> = plan
            .samples
            .iter()
            .enumerate()
            .map(|(i, n)| format!("sample {} ({})", i + 1, n.model))
            .collect();
        trace(stage, format!("drawing {} sample(s)", requests.len()));
        let gathered = gather(stage, &requests, &names);
        gathered.require(s.min_samples, "samples", "min_samples")?;

        let stage = "vote";
        let mut tallies: Vec<Tally> = Vec::new();
        let mut abstained: Vec<String> = Vec::new();
        for (pos, (i, r)) in gathered.ok.iter().enumerate() {
            let answer = extract(&r.content, plan.pattern.as_ref());
            let key = answer.as_deref().map(normalize).unwrap_or_default();
            if key.is_empty() {
                abstained.push((i + 1).to_string());
                continue;
            }
            match tallies.iter_mut().find(|t| t.key == key) {
                Some(t) => t.voters.push(pos),
                None => tallies.push(Tally {
                    key,
                    voters: vec![pos],
                }),
            }
        }
        if !abstained.is_empty() {
            trace(
                stage,
                format!(
                    "no answer found in sample(s) {}; they do not vote",
                    abstained.join(", ")
                ),
            );
        }
        // Most votes first; on a tie the earliest first vote (tallies are
        // created in sample order, and the sort is stable).
        tallies.sort_by_key(|t| std::cmp::Reverse(t.voters.len()));
        let Some(winner) = tallies.first() else {
            trace(
                stage,
                "no sample gave an answer to vote on; keeping the first successful sample",
            );
            let (i, first) = gathered
                .ok
                .into_iter()
                .next()
                .ok_or_else(|| Error::Upstream("no sample answered".into()))?;
            return deliver(inv, &plan.samples[i], first, DRAFT);
        };
        let rows: Vec<Vec<String>> = tallies
            .iter()
            .map(|t| {
                let samples: Vec<String> = t
                    .voters
                    .iter()
                    .map(|p| (gathered.ok[*p].0 + 1).to_string())
                    .collect();
                vec![
                    preview(&t.key, 60),
                    t.voters.len().to_string(),
                    samples.join(", "),
                ]
            })
            .collect();
        let tie = tallies
            .get(1)
            .is_some_and(|second| second.voters.len() == winner.voters.len());
        let (index, picked) = gathered.ok[winner.voters[0]].clone();
        trace(
            stage,
            format!(
                "{}\nwinner: {:?} with {} of {} vote(s){}; answering with sample {}",
                markdown_table(&["answer", "votes", "samples"], &rows),
                preview(&winner.key, 60),
                winner.voters.len(),
                gathered.ok.len() - abstained.len(),
                if tie {
                    " (a tie, won by the answer given first)"
                } else {
                    ""
                },
                index + 1
            ),
        );
        deliver(inv, &plan.samples[index], picked, DRAFT)
    }
}

strategy!(SelfConsistency);
