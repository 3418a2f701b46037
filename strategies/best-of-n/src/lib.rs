//! `best-of-n`: generate several candidate answers, let a judge pick the
//! best, and answer with it.
//!
//! Topology:
//! - `judge`: node that picks (direct form: the model itself, or
//!   `settings.judge_model`)
//! - `candidates`: nodes called once each; or
//! - `generator`: one node sampled `n` times (direct form
//!   `composite/best-of-n/<provider>/<model>`: the model itself)
//!
//! Settings:
//! - `n` (default 4): samples of the `generator`
//! - `temperature`: the generator's sampling temperature (default: the
//!   client's `temperature`, else 0.8). A request's `temperature` overrides
//!   the profile's, as any request key named like a setting does; the
//!   node's own `params` win over both.
//! - `min_candidates` (default 1): fewer successful candidates fails the request
//! - `judge_model`: a model name that replaces the judge
//!
//! Against position bias the judge sees the candidates in a shuffled order:
//! a permutation seeded by a hash of the conversation, never the generation
//! order when there are two or more candidates (so the same request always
//! shows the same order, and the first candidate generated is not shown
//! first by default). The judge ends its reply with `CHOICE: <number>`; the
//! parse also accepts `BEST:`/`WINNER:` lines, a bare number, or a single
//! candidate number mentioned. If the judge fails or its choice cannot be
//! read, the first successful candidate (generation order) is the answer,
//! and the trace says so. The judge's reason is in the trace. With one
//! successful candidate there is nothing to judge.
//!
//! Candidates and the judge never receive the client's tools: with tools,
//! the picked candidate's node is asked once more with them (and the picked
//! text as a draft), and that reply is the answer.

use conclave_strategy_sdk::*;

#[derive(Deserialize)]
struct Topology {
    judge: Option<Node>,
    #[serde(default)]
    candidates: Vec<Node>,
    generator: Option<Node>,
    /// Direct form only.
    model: Option<String>,
}

#[derive(Deserialize)]
#[serde(default)]
struct Settings {
    n: usize,
    temperature: Option<f64>,
    min_candidates: usize,
    judge_model: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            n: 4,
            temperature: None,
            min_candidates: 1,
            judge_model: None,
        }
    }
}

const DEFAULT_TEMPERATURE: f64 = 0.8;

const JUDGE: &str = "You are judging candidate answers to the conversation below. Compare them \
on correctness first, then completeness, clarity and usefulness to the user. Explain your \
decision in a few sentences, then end with a line of exactly this form naming the single best \
candidate:\n\nCHOICE: <candidate number>";

const DRAFT: &str = "A reviewer picked the answer below as the best response to the user's \
latest message. Use it as your answer; if the user's tools are needed to complete it, call them.";

struct Plan {
    judge: Node,
    /// The node of each candidate, in generation order.
    candidates: Vec<Node>,
    /// Whether candidates are samples of one generator (temperature applies).
    sampled: bool,
}

fn plan(t: &Topology, s: &Settings) -> Result<Plan, String> {
    let judge = match (&s.judge_model, &t.judge, &t.model) {
        (Some(name), _, _) => Node::named(name),
        (None, Some(j), _) => j.clone(),
        (None, None, Some(m)) => Node::named(m),
        (None, None, None) => return Err("judge: missing (a node such as {model: gpt-4o})".into()),
    };
    if s.min_candidates == 0 {
        return Err("settings.min_candidates: must be at least 1".into());
    }
    let generator = t
        .generator
        .clone()
        .or_else(|| t.model.as_deref().map(Node::named));
    let (candidates, sampled) = match (t.candidates.is_empty(), generator) {
        (false, Some(_)) if t.generator.is_some() => {
            return Err("candidates: give either candidates or a generator, not both".into());
        }
        (false, _) => (t.candidates.clone(), false),
        (true, Some(g)) => {
            check_count("n", s.n)?;
            (vec![g; s.n], true)
        }
        (true, None) => {
            return Err("candidates: give candidate nodes, or a generator node to sample".into());
        }
    };
    if s.min_candidates > candidates.len() {
        return Err(format!(
            "settings.min_candidates: {} is more than the {} candidate(s)",
            s.min_candidates,
            candidates.len()
        ));
    }
    Ok(Plan {
        judge,
        candidates,
        sampled,
    })
}

/// FNV-1a of the conversation: the shuffle's seed.
fn seed(messages: &[Message]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for m in messages {
        for b in m
            .role
            .bytes()
            .chain([0])
            .chain(m.content.bytes())
            .chain([0])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A permutation of `0..n` from `seed` (Fisher-Yates over splitmix64),
/// rotated by one when it came out as the identity.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    if n > 1 && order.iter().enumerate().all(|(i, &o)| i == o) {
        order.rotate_left(1);
    }
    order
}

/// The number on the judge's last line that starts with `CHOICE:` (or
/// `BEST:`, `WINNER:`, any case, markdown allowed), else a bare number
/// reply, else the one candidate number it mentions.
fn parse_choice(reply: &str, shown: usize) -> Option<usize> {
    let in_range = |n: usize| (1..=shown).contains(&n).then_some(n);
    let first_number = |text: &str| -> Option<usize> {
        let digits: String = text
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    for line in reply.lines().rev() {
        let lower = line.to_ascii_lowercase();
        let bare = lower.trim_start_matches(['*', '#', '>', '-', ' ', '_']);
        let bare = bare.strip_prefix("final ").unwrap_or(bare);
        for key in ["choice", "best", "winner"] {
            if let Some(rest) = bare.strip_prefix(key)
                && rest
                    .trim_start_matches(['*', '_', ' '])
                    .starts_with([':', '='])
                && let Some(n) = first_number(rest).and_then(in_range)
            {
                return Some(n);
            }
        }
    }
    let trimmed = reply
        .trim()
        .trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if let Ok(n) = trimmed.parse::<usize>() {
        return in_range(n);
    }
    let lower = reply.to_ascii_lowercase();
    let mut named: Vec<usize> = lower
        .match_indices("candidate")
        .filter_map(|(at, _)| {
            let rest = &lower[at + "candidate".len()..];
            rest.trim_start()
                .starts_with(|c: char| c.is_ascii_digit() || c == '#')
                .then(|| first_number(rest))
                .flatten()
        })
        .filter_map(in_range)
        .collect();
    named.sort_unstable();
    named.dedup();
    match named.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// The judge's reply without its choice line.
fn reason(reply: &str) -> String {
    let kept: Vec<&str> = reply
        .lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            let bare = lower.trim_start_matches(['*', '#', '>', '-', ' ', '_']);
            let bare = bare.strip_prefix("final ").unwrap_or(bare);
            !["choice", "best", "winner"].iter().any(|k| {
                bare.strip_prefix(k).is_some_and(|rest| {
                    rest.trim_start_matches(['*', '_', ' '])
                        .starts_with([':', '='])
                })
            })
        })
        .collect();
    kept.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

struct BestOfN;

impl Strategy for BestOfN {
    type Topology = Topology;
    type Settings = Settings;

    fn validate(t: &Topology, s: &Settings) -> Result<(), String> {
        plan(t, s).map(|_| ())
    }

    fn run(inv: &Invocation, t: Topology, s: Settings) -> Result<ChatResponse, Error> {
        let plan = plan(&t, &s).map_err(Error::InvalidRequest)?;
        let conversation = without_tool_turns(&inv.request.messages);
        let mut params = params_without_tools(&inv.request);
        if plan.sampled {
            sampling_temperature(&mut params, s.temperature, DEFAULT_TEMPERATURE);
        }

        let stage = "candidates";
        trace(
            stage,
            format!("generating {} candidate(s)", plan.candidates.len()),
        );
        let requests: Vec<ChatRequest> = plan
            .candidates
            .iter()
            .map(|c| c.request_with(conversation.clone(), &params))
            .collect();
        let names: Vec<String> = plan
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| format!("candidate {} ({})", i + 1, c.model))
            .collect();
        let gathered = gather(stage, &requests, &names);
        gathered.require(s.min_candidates, "candidates", "min_candidates")?;
        let ok = &gathered.ok;
        let first = ok[0].clone();
        if ok.len() == 1 {
            trace(
                "judgement",
                format!("only {} answered: nothing to judge", names[first.0]),
            );
            return deliver(inv, &plan.candidates[first.0], first.1, DRAFT);
        }

        let stage = "judgement";
        let order = shuffled(ok.len(), seed(&inv.request.messages));
        let shown: Vec<String> = order.iter().map(|p| (ok[*p].0 + 1).to_string()).collect();
        trace(
            stage,
            format!(
                "{} compares the candidates shown in the order {}",
                plan.judge.model,
                shown.join(", ")
            ),
        );
        let block = sections(
            order
                .iter()
                .enumerate()
                .map(|(at, p)| (format!("Candidate {}", at + 1), ok[*p].1.content.as_str())),
        );
        let prompt = format!(
            "Conversation:\n\n{}\n\nCandidate answers:\n\n{block}",
            transcript(&conversation)
        );
        let judge_request = plan.judge.request_with(
            vec![Message::system(JUDGE), Message::user(prompt)],
            &params_without_tools(&inv.request),
        );
        let picked = match complete(&judge_request) {
            Ok(reply) => match parse_choice(&reply.content, ok.len()) {
                Some(n) => {
                    let (index, response) = ok[order[n - 1]].clone();
                    trace(
                        stage,
                        format!(
                            "picked candidate {} (shown as {n}); reason: {}",
                            index + 1,
                            preview(&reason(&reply.content), 400)
                        ),
                    );
                    (index, response)
                }
                None => {
                    trace(
                        stage,
                        format!(
                            "the judge's choice could not be read ({}); keeping candidate {}",
                            preview(reply.content.trim(), 120),
                            first.0 + 1
                        ),
                    );
                    first
                }
            },
            Err(e) => {
                trace(
                    stage,
                    format!(
                        "the judge failed ({}); keeping candidate {}",
                        describe(&e),
                        first.0 + 1
                    ),
                );
                first
            }
        };
        deliver(inv, &plan.candidates[picked.0], picked.1, DRAFT)
    }
}

strategy!(BestOfN);
