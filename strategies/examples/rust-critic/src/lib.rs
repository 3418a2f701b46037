//! critic: a draft model answers, a reviewer model improves the draft.
//!
//! Topology: `draft` and `reviewer` nodes (`{model, params?}`); settings:
//! `reviewer_instructions` (optional) replaces the built-in review prompt.
//! The same strategy as ../python-critic and ../js-critic, on the Rust SDK.

use conclave_strategy_sdk::*;

#[derive(Deserialize)]
struct Topology {
    draft: Node,
    reviewer: Node,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Settings {
    reviewer_instructions: Option<String>,
}

const REVIEW: &str = "Another assistant wrote the draft answer below to the user's latest message. \
Review it critically: fix mistakes, fill gaps, cut what is unnecessary. Reply with the improved \
answer only, addressed to the user; do not mention the draft or the review.";

struct Critic;

impl Strategy for Critic {
    type Topology = Topology;
    type Settings = Settings;

    fn run(inv: &Invocation, t: Topology, s: Settings) -> Result<ChatResponse, Error> {
        let messages = &inv.request.messages;
        trace("draft", format!("asking {} for a draft", t.draft.model));
        // The draft gets no tools: only the final stage may call them.
        let draft = complete(&t.draft.request_with(
            without_tool_turns(messages),
            &params_without_tools(&inv.request),
        ))?;
        trace(
            "draft",
            format!("{} drafted: {}", draft.model, preview(&draft.content, 160)),
        );

        trace("review", format!("{} improves the draft", t.reviewer.model));
        let instructions = s.reviewer_instructions.as_deref().unwrap_or(REVIEW);
        let review = with_system(
            messages,
            format!("{instructions}\n\n### Draft\n{}", draft.content),
        );
        // Streamed to the client when it asked for a stream.
        respond(&t.reviewer.request_with(review, &inv.request.params()))
    }
}

strategy!(Critic);
