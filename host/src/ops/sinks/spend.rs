//! The spend sink: one spend-log row per request and one per composite
//! sub-call (linked to its request), handed to the key store's batched
//! writer without waiting. The cost on each row was priced on the response
//! path (where it was also charged to the caller's limits); this sink only
//! records it.
//!
//! A composite request's own row carries no tokens and no spend: its
//! sub-calls' rows do, so the store's totals (which add every row) count
//! each call once. Requests that never reached a model (refused by a check
//! or unroutable) leave no row.

use super::OutcomeSink;
use crate::keys::{Keys, SpendRow};
use crate::ops::{Outcome, OutcomeKind, Usage};

/// Hands every model call's spend row to the key store's writer.
pub struct SpendSink {
    keys: Keys,
}

impl SpendSink {
    /// A sink writing through `keys`.
    pub fn new(keys: Keys) -> Self {
        Self { keys }
    }
}

impl OutcomeSink for SpendSink {
    fn name(&self) -> &'static str {
        "spend"
    }

    fn record(&self, outcome: &Outcome) {
        if let Some(row) = row(outcome) {
            self.keys.record_spend(row);
        }
    }
}

/// The spend-log row of `o`, if it made (or replayed) a model call.
pub fn row(o: &Outcome) -> Option<SpendRow> {
    let cache_hit = o.cache.label() == "hit";
    let composite_request = o.kind == OutcomeKind::Request && o.profile.is_some();
    let reached_a_model = o.attempts > 0 || o.usage.is_some() || cache_hit || composite_request;
    if !reached_a_model {
        return None;
    }
    let (usage, spend) = if composite_request || cache_hit {
        (Usage::default(), 0.0)
    } else {
        (o.usage().unwrap_or_default(), o.cost.unwrap_or(0.0))
    };
    let principal = o.caller.principal();
    Some(SpendRow {
        request_id: o.request_id.as_str().to_owned(),
        parent_request_id: o.parent_request_id.as_ref().map(|p| p.as_str().to_owned()),
        response_id: o.response_id.as_deref().map(storable),
        token_hash: o.caller.token_hash().map(str::to_owned),
        user_id: o.caller.user_id().map(str::to_owned),
        team_id: o.caller.team_id().map(str::to_owned),
        model: storable(&o.model),
        model_group: o.model_group.as_deref().map(str::to_owned),
        budget_model: o.budget_model.clone(),
        deployment: o.deployment.as_deref().map(str::to_owned),
        profile: o.profile.as_deref().map(str::to_owned),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        spend,
        composite_cost: if composite_request {
            o.cost.unwrap_or(0.0)
        } else {
            0.0
        },
        status: o.status,
        cache_hit,
        started_at: o.started_at,
        latency_ms: u64::try_from(o.latency.as_millis()).unwrap_or(u64::MAX),
        // The key's tags, then the request's, each once.
        tags: crate::openai::merged_tags(
            principal.map_or(&[][..], |p| p.key.tags.as_slice()),
            o.tags.as_deref().unwrap_or_default(),
        ),
        end_user: o.end_user.as_deref().map(storable),
    })
}

/// Text from outside the gateway (the client's model name and `user`, the
/// upstream's answer id) as a store can keep it: PostgreSQL refuses a NUL
/// in text, and one refused row would hold back every row after it, so a
/// NUL is kept as U+FFFD.
fn storable(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_nul_from_outside_is_kept_as_a_replacement_character() {
        assert_eq!(super::storable("chatcmpl-\0bad"), "chatcmpl-\u{FFFD}bad");
        assert_eq!(super::storable("plain"), "plain");
    }
}
