//! `council`, an LLM council in three stages:
//!
//! 1. **answers**: the council members answer the conversation in parallel.
//! 2. **rankings**: each reviewer reads the answers, anonymized as
//!    `Response A`, `Response B`, ... (labels only, never a model name), and
//!    ends its review with a strictly formatted ranking:
//!    ```text
//!    FINAL RANKING:
//!    1. Response B
//!    2. Response A
//!    ```
//!    The rankings are parsed tolerantly (see *Ranking rule*) and aggregated
//!    by weighted mean rank, shown in the trace as a table.
//! 3. **synthesis**: the chairman reads the answers, the reviews and the
//!    aggregate ranking and writes the final answer, streamed through
//!    `respond`. Only the chairman receives the client's tools.
//!
//! Topology:
//! - `chairman`: node that writes the final answer
//! - `council`: nodes that answer (at least one)
//! - `reviewers`: optional nodes that rank; default: the council members
//!   that answered in stage 1
//! - direct form (`composite/council/<provider>/<model>`): `{model}` is the
//!   chairman and `settings.council_models` (model names) the council
//!
//! Settings:
//! - `max_council_size`: keep only the first N council members
//! - `min_answers` (default 1): fewer successful answers fails the request
//! - `council_models`: council model names (direct form; replaces `council`)
//! - `chairman_model`: a model name that replaces the chairman
//! - `include_stage_summaries_in_reasoning` (read by the host): the trace
//!
//! Ranking rule. The ranking is read from the last line that contains
//! `final ranking` (any case, markdown allowed) and the lines after it. Each
//! mention of `Response X` places label X next (on a numbered or bulleted
//! line only the first mention counts, the rest is commentary; `2. B` works
//! too). Reading stops once every label is placed, or at the first non-empty
//! line naming none after the list began. Unknown labels and repeats are
//! skipped and count as defects. Then:
//! - no `final ranking` line, or no known label in it: ignored (weight 0);
//! - every label placed, or all but one (which is then last): weight 1;
//! - k of n labels placed: the listed ones take ranks 1..k, the others share
//!   the mean of the remaining ranks, weight k/n;
//! - any defect halves the weight.
//!
//! A label's aggregate is its weighted mean rank over the usable rankings;
//! lower is better, ties go to the earlier label. With one answer, or no
//! usable ranking, the chairman works without an aggregate ranking.

use conclave_strategy_sdk::*;

#[derive(Deserialize)]
struct Topology {
    chairman: Option<Node>,
    #[serde(default)]
    council: Vec<Node>,
    reviewers: Option<Vec<Node>>,
    /// Direct form only.
    model: Option<String>,
}

#[derive(Deserialize)]
#[serde(default)]
struct Settings {
    max_council_size: Option<usize>,
    min_answers: usize,
    council_models: Vec<String>,
    chairman_model: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_council_size: None,
            min_answers: 1,
            council_models: Vec::new(),
            chairman_model: None,
        }
    }
}

const REVIEW: &str = "You are one reviewer on a panel. Several assistants answered the conversation \
below independently; their answers are shown anonymously as lettered responses. Judge each response \
on correctness, completeness, clarity and usefulness to the user, and say briefly what is strong or \
weak in each. Then finish your reply with your ranking, best first, in exactly this form and with \
nothing after it:\n\nFINAL RANKING:\n1. Response <letter>\n2. Response <letter>\n...\n\nList every \
response exactly once, one per line.";

const CHAIR: &str = "You chair a panel of assistants. Each of them answered the user's latest \
message independently, then the panel reviewed and ranked the answers anonymously. Their answers, \
the reviews and the aggregate ranking follow. Write the single best answer to the user: build on \
what the reviewers found correct and useful, fix what they found wrong, and prefer the higher-ranked \
answers where they disagree, but use your own judgement. Answer the user directly; do not mention \
the panel, the reviews, the rankings or the response letters.";

struct Plan {
    chairman: Node,
    council: Vec<Node>,
    reviewers: Option<Vec<Node>>,
}

fn plan(t: &Topology, s: &Settings, at_run: bool) -> Result<Option<Plan>, String> {
    if s.max_council_size == Some(0) {
        return Err("settings.max_council_size: must be at least 1".into());
    }
    if s.min_answers == 0 {
        return Err("settings.min_answers: must be at least 1".into());
    }
    let chairman = match (&s.chairman_model, &t.chairman, &t.model) {
        (Some(name), _, _) => Node::named(name),
        (None, Some(c), _) => c.clone(),
        (None, None, Some(m)) => Node::named(m),
        (None, None, None) => {
            return Err("chairman: missing (a node such as {model: gpt-4o})".into());
        }
    };
    let mut council = if !s.council_models.is_empty() {
        s.council_models.iter().map(|m| Node::named(m)).collect()
    } else if !t.council.is_empty() {
        t.council.clone()
    } else if t.model.is_some() && !at_run {
        // Direct form: the council arrives with each request.
        return Ok(None);
    } else if t.model.is_some() {
        return Err(
            "settings.council_models: the direct form needs the council's model names \
                    (request field council_models: [...])"
                .into(),
        );
    } else {
        return Err("council: at least one council member node is required".into());
    };
    if let Some(max) = s.max_council_size {
        council.truncate(max);
    }
    // Known before any member is called (and paid for).
    if s.min_answers > council.len() {
        return Err(format!(
            "settings.min_answers: {} is more than the {} council member(s)",
            s.min_answers,
            council.len()
        ));
    }
    if let Some(r) = &t.reviewers
        && r.is_empty()
    {
        return Err("reviewers: give at least one reviewer node, or leave it out".into());
    }
    Ok(Some(Plan {
        chairman,
        council,
        reviewers: t.reviewers.clone(),
    }))
}

/// `A`, `B`, ..., `Z`, `AA`, `AB`, ...
fn label(i: usize) -> String {
    let letter = |n: usize| char::from(b'A' + (n % 26) as u8);
    if i < 26 {
        letter(i).to_string()
    } else {
        format!("{}{}", letter(i / 26 - 1), letter(i))
    }
}

/// One reviewer's ranking after the tolerant parse.
struct Ranking {
    /// Rank of each label (by answer index), 1 = best; shared ranks may be fractional.
    ranks: Vec<f64>,
    weight: f64,
    /// Labels in the order the reviewer placed them.
    placed: Vec<usize>,
    defects: usize,
}

/// Why a review's ranking was not used.
enum Unusable {
    NoSection,
    NoLabels,
}

/// The labels a ranking line names: each `Response X` (only the first on
/// a list item, whose rest is commentary), or a numbered bare letter (`2. B`).
fn mentions(line: &str) -> Vec<String> {
    let bare = line.trim().trim_start_matches(['#', '>', ' ']);
    let list_item = bare.starts_with(|c: char| c.is_ascii_digit())
        || ["- ", "* ", "• "].iter().any(|m| bare.starts_with(m));
    let cleaned: String = line
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
        .collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let mut found = Vec::new();
    for pair in words.windows(2) {
        let next = pair[1];
        if pair[0].eq_ignore_ascii_case("response")
            && next.len() <= 2
            && next.chars().all(|c| c.is_ascii_alphabetic())
        {
            found.push(next.to_ascii_uppercase());
            if list_item {
                break;
            }
        }
    }
    if found.is_empty()
        && words.len() == 2
        && words[0].chars().all(|c| c.is_ascii_digit())
        && words[1].len() == 1
        && words[1].chars().all(|c| c.is_ascii_alphabetic())
    {
        found.push(words[1].to_ascii_uppercase());
    }
    found
}

fn parse_ranking(review: &str, labels: &[String]) -> Result<Ranking, Unusable> {
    let lines: Vec<&str> = review.lines().collect();
    let Some(start) = lines
        .iter()
        .rposition(|l| l.to_ascii_lowercase().contains("final ranking"))
    else {
        return Err(Unusable::NoSection);
    };
    let header = lines[start];
    let lower = header.to_ascii_lowercase();
    let after_header = lower
        .rfind("final ranking")
        .map_or("", |at| &header[at + "final ranking".len()..]);
    let n = labels.len();
    let mut placed: Vec<usize> = Vec::new();
    let mut defects = 0;
    let section = std::iter::once(after_header).chain(lines[start + 1..].iter().copied());
    for line in section {
        if placed.len() == n {
            break;
        }
        let found = mentions(line);
        if found.is_empty() {
            if !placed.is_empty() && !line.trim().is_empty() {
                break;
            }
            continue;
        }
        for name in found {
            match labels.iter().position(|l| *l == name) {
                Some(i) if !placed.contains(&i) => placed.push(i),
                Some(_) => defects += 1,
                // A one-letter label nobody was shown; two letters that are
                // not a label are just words ("response is ...").
                None if name.len() == 1 => defects += 1,
                None => {}
            }
        }
    }
    if placed.is_empty() {
        return Err(Unusable::NoLabels);
    }
    let k = placed.len();
    let complete = k + 1 >= n;
    let mut ranks = vec![0.0; n];
    for (pos, &i) in placed.iter().enumerate() {
        ranks[i] = (pos + 1) as f64;
    }
    if k < n {
        // Unlisted labels share the mean of ranks k+1..=n.
        let shared = (k + 1 + n) as f64 / 2.0;
        for (i, r) in ranks.iter_mut().enumerate() {
            if !placed.contains(&i) {
                *r = shared;
            }
        }
    }
    let mut weight = if complete { 1.0 } else { k as f64 / n as f64 };
    if defects > 0 {
        weight /= 2.0;
    }
    Ok(Ranking {
        ranks,
        weight,
        placed,
        defects,
    })
}

/// Answer indices best first, with their mean ranks (`None` when no ranking was usable).
fn aggregate(n: usize, rankings: &[Ranking]) -> Option<Vec<(usize, f64)>> {
    let total: f64 = rankings.iter().map(|r| r.weight).sum();
    if total <= 0.0 {
        return None;
    }
    let mut order: Vec<(usize, f64)> = (0..n)
        .map(|i| {
            let sum: f64 = rankings.iter().map(|r| r.weight * r.ranks[i]).sum();
            (i, sum / total)
        })
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    Some(order)
}

struct Council;

impl Strategy for Council {
    type Topology = Topology;
    type Settings = Settings;

    fn validate(t: &Topology, s: &Settings) -> Result<(), String> {
        plan(t, s, false).map(|_| ())
    }

    fn run(inv: &Invocation, t: Topology, s: Settings) -> Result<ChatResponse, Error> {
        let Some(plan) = plan(&t, &s, true).map_err(Error::InvalidRequest)? else {
            return Err(Error::InvalidRequest("no council".into()));
        };
        let conversation = without_tool_turns(&inv.request.messages);
        let stage_params = params_without_tools(&inv.request);

        // Stage 1: the council answers.
        let stage = "stage 1: answers";
        trace(
            stage,
            format!("asking {} council member(s)", plan.council.len()),
        );
        let requests: Vec<ChatRequest> = plan
            .council
            .iter()
            .map(|m| m.request_with(conversation.clone(), &stage_params))
            .collect();
        let answers = gather(stage, &requests, &[]);
        answers.require(s.min_answers, "council members", "min_answers")?;
        let labels: Vec<String> = (0..answers.ok.len()).map(label).collect();
        let mapping: Vec<String> = answers
            .ok
            .iter()
            .zip(&labels)
            .map(|((i, _), l)| format!("Response {l} = {}", plan.council[*i].model))
            .collect();
        trace(stage, format!("anonymized as {}", mapping.join(", ")));
        let answer_block = sections(
            answers
                .ok
                .iter()
                .zip(&labels)
                .map(|((_, r), l)| (format!("Response {l}"), r.content.as_str())),
        );

        // Stage 2: anonymous peer review.
        let stage = "stage 2: rankings";
        let mut reviews: Vec<String> = Vec::new();
        let mut rankings: Vec<Ranking> = Vec::new();
        if labels.len() < 2 {
            trace(stage, "only one answer: nothing to rank");
        } else {
            let reviewers: Vec<Node> = match &plan.reviewers {
                Some(r) => r.clone(),
                None => answers
                    .ok
                    .iter()
                    .map(|(i, _)| plan.council[*i].clone())
                    .collect(),
            };
            trace(stage, format!("asking {} reviewer(s)", reviewers.len()));
            let prompt = format!(
                "Conversation:\n\n{}\n\nResponses:\n\n{answer_block}",
                transcript(&conversation)
            );
            let review_messages = vec![Message::system(REVIEW), Message::user(prompt)];
            let requests: Vec<ChatRequest> = reviewers
                .iter()
                .map(|r| r.request_with(review_messages.clone(), &stage_params))
                .collect();
            let names: Vec<String> = reviewers
                .iter()
                .enumerate()
                .map(|(i, r)| format!("reviewer {} ({})", i + 1, r.model))
                .collect();
            let gathered = gather(stage, &requests, &names);
            for (i, review) in &gathered.ok {
                let who = &names[*i];
                match parse_ranking(&review.content, &labels) {
                    Ok(r) => {
                        let order: Vec<String> =
                            r.placed.iter().map(|p| labels[*p].clone()).collect();
                        trace(
                            stage,
                            format!(
                                "{who} ranked {} (weight {:.2}{})",
                                order.join(" > "),
                                r.weight,
                                if r.defects > 0 {
                                    format!(", {} unknown or repeated label(s) skipped", r.defects)
                                } else {
                                    String::new()
                                }
                            ),
                        );
                        rankings.push(r);
                    }
                    Err(Unusable::NoSection) => trace(
                        stage,
                        format!("{who} gave no FINAL RANKING; its ranking is ignored"),
                    ),
                    Err(Unusable::NoLabels) => trace(
                        stage,
                        format!("{who}'s FINAL RANKING names no known response; it is ignored"),
                    ),
                }
                reviews.push(review.content.clone());
            }
        }
        let ranking = aggregate(labels.len(), &rankings);
        if let Some(order) = &ranking {
            let rows: Vec<Vec<String>> = order
                .iter()
                .enumerate()
                .map(|(place, (i, mean))| {
                    vec![
                        (place + 1).to_string(),
                        format!("Response {}", labels[*i]),
                        plan.council[answers.ok[*i].0].model.clone(),
                        format!("{mean:.2}"),
                    ]
                })
                .collect();
            trace(
                stage,
                format!(
                    "aggregate of {} usable ranking(s), by mean rank (lower is better):\n{}",
                    rankings.len(),
                    markdown_table(&["place", "response", "member", "mean rank"], &rows)
                ),
            );
        } else if labels.len() >= 2 {
            trace(stage, "no usable ranking: the chairman decides without one");
        }

        // Stage 3: the chairman writes the answer.
        let stage = "stage 3: synthesis";
        trace(
            stage,
            format!(
                "{} writes the answer from {} answer(s) and {} review(s)",
                plan.chairman.model,
                labels.len(),
                reviews.len()
            ),
        );
        let mut brief = format!("{CHAIR}\n\n## Answers\n\n{answer_block}");
        if !reviews.is_empty() {
            let block = sections(
                reviews
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("Review {}", i + 1), r.as_str())),
            );
            brief.push_str(&format!("\n\n## Reviews\n\n{block}"));
        }
        if let Some(order) = &ranking {
            let lines: Vec<String> = order
                .iter()
                .enumerate()
                .map(|(place, (i, mean))| {
                    format!(
                        "{}. Response {} (mean rank {mean:.2})",
                        place + 1,
                        labels[*i]
                    )
                })
                .collect();
            brief.push_str(&format!(
                "\n\n## Aggregate ranking (best first)\n\n{}",
                lines.join("\n")
            ));
        }
        let messages = with_system(&inv.request.messages, brief);
        respond(&plan.chairman.request_with(messages, &inv.request.params()))
    }
}

strategy!(Council);
