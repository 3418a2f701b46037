//! `cascade`: ask the cheapest tier first and escalate only when its answer
//! is not accepted.
//!
//! Topology:
//! - `tiers`: nodes, cheapest first (at least one)
//! - `verifier`: optional node asked whether an answer is acceptable
//! - direct form (`composite/cascade/<provider>/<model>`): `{model}` is the
//!   last tier, after the tiers named in `settings.tier_models`
//!
//! Settings:
//! - `accept_pattern`: a regex (regex-lite syntax) an answer must match
//! - `min_length`: the fewest characters an answer must have
//! - `tier_models`: model names of the tiers before `model` (direct form)
//! - `verifier_model`: a model name that replaces the verifier
//!
//! A tier's answer is accepted when the rule holds (every configured rule
//! key: `accept_pattern` matches and the answer has at least `min_length`
//! characters), or else when the verifier approves it. The verifier is
//! asked for a verdict line `VERDICT: YES` or `VERDICT: NO`; the parse is
//! tolerant (any case, markdown, `approved`/`rejected`, or a reply whose
//! first word is yes or no), and an unreadable verdict or a failed verifier
//! call counts as NO. A tier whose call fails is skipped. The last tier is
//! accepted unconditionally and streams through `respond`. A profile needs a
//! verifier or a rule unless it has one tier.
//!
//! The returned response's `model` is the accepted tier's node model, which
//! the host puts in the `x-conclave-final-model` header of a non-streamed
//! answer; the trace names the accepted tier in both cases. Earlier tiers and
//! the verifier never receive the client's tools: with tools, an accepted
//! tier before the last is asked once more with them (and its accepted
//! answer as a draft), and that reply is the answer.

use conclave_strategy_sdk::*;
use regex_lite::Regex;

#[derive(Deserialize)]
struct Topology {
    #[serde(default)]
    tiers: Vec<Node>,
    verifier: Option<Node>,
    /// Direct form only.
    model: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    accept_pattern: Option<String>,
    min_length: Option<usize>,
    tier_models: Vec<String>,
    verifier_model: Option<String>,
}

const VERIFY: &str = "You check answers before they reach a user. Read the conversation and the \
proposed answer to the user's latest message. Approve it only if it is correct, answers what was \
asked and is complete enough to be useful; otherwise reject it. Reply with one line, \
`VERDICT: YES` or `VERDICT: NO`, followed by one sentence explaining why.";

const DRAFT: &str = "Your earlier answer to the user's latest message, shown below, was checked \
and accepted. Give it as your answer; if the user's tools are needed to complete it, call them.";

struct Plan {
    tiers: Vec<Node>,
    verifier: Option<Node>,
    pattern: Option<Regex>,
    min_length: Option<usize>,
}

fn plan(t: &Topology, s: &Settings, at_run: bool) -> Result<Plan, String> {
    let mut tiers: Vec<Node> = t.tiers.clone();
    if let Some(m) = &t.model {
        tiers.extend(s.tier_models.iter().map(|n| Node::named(n)));
        tiers.push(Node::named(m));
    }
    if tiers.is_empty() {
        return Err("tiers: at least one tier node is required (cheapest first)".into());
    }
    let verifier = match &s.verifier_model {
        Some(name) => Some(Node::named(name)),
        None => t.verifier.clone(),
    };
    let pattern = match &s.accept_pattern {
        Some(p) => Some(
            Regex::new(p).map_err(|e| format!("settings.accept_pattern: invalid regex: {e}"))?,
        ),
        None => None,
    };
    // The direct form's rule and tiers arrive with each request.
    let check_rule = at_run || t.model.is_none();
    if check_rule
        && tiers.len() > 1
        && verifier.is_none()
        && pattern.is_none()
        && s.min_length.is_none()
    {
        return Err(
            "verifier: missing; a cascade needs a verifier node or an acceptance rule \
                    (settings.accept_pattern, settings.min_length) to decide when to stop"
                .into(),
        );
    }
    Ok(Plan {
        tiers,
        verifier,
        pattern,
        min_length: s.min_length,
    })
}

/// Why the rule accepts `answer`, or `None` when it does not (or there is none).
fn rule_accepts(plan: &Plan, answer: &str) -> Option<String> {
    if plan.pattern.is_none() && plan.min_length.is_none() {
        return None;
    }
    let mut why = Vec::new();
    if let Some(re) = &plan.pattern {
        if !re.is_match(answer) {
            return None;
        }
        why.push("accept_pattern matched".to_owned());
    }
    if let Some(min) = plan.min_length {
        let len = answer.trim().chars().count();
        if len < min {
            return None;
        }
        why.push(format!("{len} characters >= min_length {min}"));
    }
    Some(why.join(", "))
}

/// The verifier's verdict: `Some(true)` approves, `Some(false)` rejects,
/// `None` could not be read.
fn verdict(reply: &str) -> Option<bool> {
    let word = |w: &str| -> Option<bool> {
        match w {
            "yes" | "approve" | "approved" | "accept" | "accepted" | "pass" => Some(true),
            "no" | "reject" | "rejected" | "fail" | "failed" => Some(false),
            _ => None,
        }
    };
    let words_of = |text: &str| -> Vec<String> {
        text.to_ascii_lowercase()
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for line in reply.lines().rev() {
        let words = words_of(line);
        if let Some(at) = words.iter().position(|w| w == "verdict")
            && let Some(v) = words.get(at + 1).and_then(|w| word(w))
        {
            return Some(v);
        }
    }
    words_of(reply).first().and_then(|w| word(w))
}

struct Cascade;

impl Strategy for Cascade {
    type Topology = Topology;
    type Settings = Settings;

    fn validate(t: &Topology, s: &Settings) -> Result<(), String> {
        plan(t, s, false).map(|_| ())
    }

    fn run(inv: &Invocation, t: Topology, s: Settings) -> Result<ChatResponse, Error> {
        let plan = plan(&t, &s, true).map_err(Error::InvalidRequest)?;
        let conversation = without_tool_turns(&inv.request.messages);
        let stage_params = params_without_tools(&inv.request);
        let count = plan.tiers.len();
        let mut failures: Vec<String> = Vec::new();
        for (i, tier) in plan.tiers.iter().enumerate() {
            let stage = format!("tier {}", i + 1);
            if i + 1 == count {
                trace(
                    &stage,
                    format!(
                        "{} is the last tier; its answer is accepted as it is",
                        tier.model
                    ),
                );
                let mut answer = respond(
                    &tier.request_with(inv.request.messages.clone(), &inv.request.params()),
                )
                .map_err(|e| match e {
                    Error::Upstream(m) if !failures.is_empty() => Error::Upstream(format!(
                        "every tier failed: {}; {}: {m}",
                        failures.join("; "),
                        tier.model
                    )),
                    other => other,
                })?;
                answer.model = tier.model.clone();
                return Ok(answer);
            }
            trace(&stage, format!("asking {}", tier.model));
            let answer = match complete(&tier.request_with(conversation.clone(), &stage_params)) {
                Ok(a) => a,
                Err(e) => {
                    trace(
                        &stage,
                        format!("{} failed ({}); escalating", tier.model, describe(&e)),
                    );
                    failures.push(format!("{}: {}", tier.model, describe(&e)));
                    continue;
                }
            };
            trace(
                &stage,
                format!("{} answered: {}", tier.model, preview(&answer.content, 160)),
            );
            let accepted = match rule_accepts(&plan, &answer.content) {
                Some(why) => Some(format!("rule: {why}")),
                None => plan.verifier.as_ref().and_then(|v| {
                    let prompt = format!(
                        "Conversation:\n\n{}\n\nProposed answer:\n\n{}",
                        transcript(&conversation),
                        answer.content
                    );
                    let request = v.request_with(
                        vec![Message::system(VERIFY), Message::user(prompt)],
                        &stage_params,
                    );
                    match complete(&request) {
                        Ok(reply) => match verdict(&reply.content) {
                            Some(true) => Some(format!(
                                "verifier {} approved: {}",
                                v.model,
                                preview(reply.content.trim(), 200)
                            )),
                            Some(false) => {
                                trace(
                                    &stage,
                                    format!(
                                        "verifier {} rejected it: {}",
                                        v.model,
                                        preview(reply.content.trim(), 200)
                                    ),
                                );
                                None
                            }
                            None => {
                                trace(
                                    &stage,
                                    format!(
                                        "verifier {}'s verdict could not be read ({}); counted as NO",
                                        v.model,
                                        preview(reply.content.trim(), 120)
                                    ),
                                );
                                None
                            }
                        },
                        Err(e) => {
                            trace(
                                &stage,
                                format!(
                                    "verifier {} failed ({}); counted as NO",
                                    v.model,
                                    describe(&e)
                                ),
                            );
                            None
                        }
                    }
                }),
            };
            match accepted {
                Some(why) => {
                    trace(
                        &stage,
                        format!("accepted the answer of {} ({why})", tier.model),
                    );
                    let mut final_answer = deliver(inv, tier, answer, DRAFT)?;
                    final_answer.model = tier.model.clone();
                    return Ok(final_answer);
                }
                None => trace(&stage, "not accepted; escalating"),
            }
        }
        Err(Error::Upstream("the cascade has no tiers".into()))
    }
}

strategy!(Cascade);
