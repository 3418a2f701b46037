//! Semantic matching (`type: local-semantic`): the last user message is
//! embedded through the router with `embedding_model`, and a request whose
//! exact key misses may take the answer of the most similar earlier question
//! in the same bucket (same endpoint, model group, namespace, tenant and
//! every other field) when the cosine similarity reaches the threshold.
//!
//! The index is in memory, bounded by bytes (oldest vectors go first), and
//! scanned linearly: exact for the few thousand questions a bucket holds, no
//! approximate-search library to tune. Embeddings are cached by text, so a
//! question asked again costs no embedding call.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use moka::sync::Cache;

use crate::openai::{Endpoint, RawFields};
use crate::ops::{CallContext, PendingOutcome};
use crate::providers::UpstreamReply;
use crate::router::{RouteRequest, Router};

/// Longest text embedded (longer questions are cut at a character boundary).
const MAX_TEXT_BYTES: usize = 32 * 1024;
/// Most dimensions accepted from an embedding model.
const MAX_DIMENSIONS: usize = 16_384;
/// Embeddings kept by text.
const EMBEDDING_CACHE_ENTRIES: u64 = 10_000;

struct Vector {
    bucket: Arc<str>,
    /// Unit length, so a dot product is the cosine similarity.
    unit: Arc<[f32]>,
    key: String,
}

impl Vector {
    fn bytes(&self) -> usize {
        self.unit.len() * 4 + self.key.len() + self.bucket.len() + 64
    }
}

/// The questions answered so far, by bucket.
pub struct Index {
    threshold: f32,
    model: String,
    max_bytes: usize,
    vectors: RwLock<(VecDeque<Vector>, usize)>,
    embeddings: Cache<String, Arc<[f32]>>,
}

impl Index {
    /// An index holding at most `max_bytes` of vectors.
    pub fn new(threshold: f32, model: String, max_bytes: usize) -> Self {
        Self {
            threshold,
            model,
            max_bytes,
            vectors: RwLock::new((VecDeque::new(), 0)),
            embeddings: Cache::new(EMBEDDING_CACHE_ENTRIES),
        }
    }

    /// The key of the most similar question in `bucket`, when it reaches
    /// the threshold.
    pub fn nearest(&self, bucket: &str, unit: &[f32]) -> Option<String> {
        let guard = self.vectors.read().ok()?;
        let mut best: Option<(f32, &str)> = None;
        for v in guard
            .0
            .iter()
            .filter(|v| &*v.bucket == bucket && v.unit.len() == unit.len())
        {
            let score = dot(&v.unit, unit);
            if score >= self.threshold && best.is_none_or(|(b, _)| score > b) {
                best = Some((score, &v.key));
            }
        }
        best.map(|(_, k)| k.to_owned())
    }

    /// Remembers that `key` answers the question `unit` in `bucket`.
    pub fn insert(&self, bucket: &str, unit: Arc<[f32]>, key: String) {
        let Ok(mut guard) = self.vectors.write() else {
            return;
        };
        let v = Vector {
            bucket: bucket.into(),
            unit,
            key,
        };
        let (list, bytes) = &mut *guard;
        *bytes += v.bytes();
        list.push_back(v);
        while *bytes > self.max_bytes {
            match list.pop_front() {
                Some(old) => *bytes -= old.bytes(),
                None => break,
            }
        }
    }

    /// Forgets every vector.
    pub fn clear(&self) {
        if let Ok(mut guard) = self.vectors.write() {
            guard.0.clear();
            guard.1 = 0;
        }
        self.embeddings.invalidate_all();
    }

    /// The unit embedding of `text`, from the embedding cache or one call
    /// through the router (recorded as a sub-call of the request).
    pub async fn embed(
        &self,
        router: &Router,
        ctx: &CallContext,
        text: &str,
    ) -> Option<Arc<[f32]>> {
        let text = cut(text, MAX_TEXT_BYTES);
        if let Some(unit) = self.embeddings.get(text) {
            return Some(unit);
        }
        let mut body = RawFields::default();
        body.insert_value("input", &serde_json::Value::String(text.to_owned()))
            .ok()?;
        let mut outcome = PendingOutcome::sub_call(ctx, &self.model, false);
        let routed = router
            .route(RouteRequest {
                endpoint: Endpoint::Embeddings,
                model: &self.model,
                stream: false,
                body: &body,
                fallbacks: None,
                disable_fallbacks: false,
                may_fall_back_to: None,
                limits: Default::default(),
                ctx,
            })
            .await;
        let routed = match routed {
            Ok(r) => r,
            Err(e) => {
                outcome.finish(e.status(), Some(e.code()));
                tracing::warn!(error = %e, model = %self.model, "semantic cache: embedding failed; exact match only");
                return None;
            }
        };
        if let Some(o) = outcome.get_mut() {
            o.model_group = Some(routed.meta.group.clone());
            o.deployment = Some(routed.meta.deployment.clone());
            o.attempts = routed.meta.attempts;
        }
        let UpstreamReply::Json(bytes) = routed.reply else {
            outcome.finish(502, Some("invalid_upstream_answer"));
            return None;
        };
        if let Some(o) = outcome.get_mut() {
            o.body = vec![bytes.clone()];
        }
        outcome.finish(200, None);
        let unit: Arc<[f32]> = unit_vector(&bytes)?.into();
        self.embeddings.insert(text.to_owned(), unit.clone());
        Some(unit)
    }
}

/// `data[0].embedding` of an embeddings answer, scaled to unit length.
fn unit_vector(body: &[u8]) -> Option<Vec<f32>> {
    #[derive(serde::Deserialize)]
    struct Answer {
        data: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        embedding: Vec<f32>,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    let mut v = answer.data.into_iter().next()?.embedding;
    if v.is_empty() || v.len() > MAX_DIMENSIONS {
        return None;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Some(v)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The text a semantic lookup compares: the last user message of a chat
/// request (its text parts joined), or a completion's prompt.
pub fn question(endpoint: Endpoint, body: &RawFields) -> Option<String> {
    match endpoint {
        Endpoint::ChatCompletions => {
            let messages: Vec<serde_json::Value> = body.parse("messages")?.ok()?;
            let last = messages.iter().rev().find(|m| m["role"] == "user")?;
            match &last["content"] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Array(parts) => {
                    let text: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
                    (!text.is_empty()).then(|| text.join("\n"))
                }
                _ => None,
            }
        }
        Endpoint::Completions => body.parse::<String>("prompt")?.ok(),
        Endpoint::Embeddings
        | Endpoint::Moderations
        | Endpoint::ImageGenerations
        | Endpoint::Rerank => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Arc<[f32]> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect::<Vec<_>>().into()
    }

    #[test]
    fn the_nearest_question_in_the_bucket_wins_above_the_threshold() {
        let index = Index::new(0.9, "emb".into(), 1 << 20);
        index.insert("b", unit(&[1.0, 0.0]), "k1".into());
        index.insert("b", unit(&[0.0, 1.0]), "k2".into());
        index.insert("other", unit(&[1.0, 0.05]), "k3".into());
        assert_eq!(
            index.nearest("b", &unit(&[1.0, 0.1])).as_deref(),
            Some("k1")
        );
        assert_eq!(index.nearest("b", &unit(&[1.0, 1.0])), None);
        assert_eq!(index.nearest("none", &unit(&[1.0, 0.0])), None);
    }

    #[test]
    fn the_index_stays_within_its_bytes() {
        let index = Index::new(0.9, "emb".into(), 10_000);
        for i in 0..1000 {
            index.insert("b", unit(&[1.0; 64]), format!("k{i}"));
        }
        let guard = index.vectors.read().unwrap();
        assert!(guard.1 <= 10_000 && !guard.0.is_empty());
    }

    #[test]
    fn the_question_is_the_last_user_message() {
        let body: RawFields = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"second"}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            question(Endpoint::ChatCompletions, &body).as_deref(),
            Some("second")
        );
    }
}
