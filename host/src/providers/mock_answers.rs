//! The mock provider's answers on the endpoints that are neither chat,
//! completions nor embeddings: moderations, image generations and rerank,
//! each in its API's shape and deterministic, so the offline demo and the
//! tests can drive every route the gateway serves.

use serde_json::{Value, json};

use crate::openai::{RawFields, unix_now};

/// The categories OpenAI's moderation results name.
const MODERATION_CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// Most moderation or rerank results one mock answer holds.
const MOST_ITEMS: usize = 100;

/// Most images one mock answer holds (OpenAI's own limit of `n`).
const MOST_IMAGES: usize = 10;

/// A one-pixel PNG, the picture of every mock image.
const PIXEL_PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNk+A8AAQUBAScY42YAAAAASUVORK5CYII=";

/// A moderation answer: one result per input text, each flagged only for
/// `violence` when the text says "violence" (so a test can see both).
pub fn moderation(id: &str, model: &str, body: &RawFields) -> Value {
    let results: Vec<Value> = texts(body.value("input"))
        .iter()
        .map(|text| {
            let violent = text.to_lowercase().contains("violence");
            let categories: serde_json::Map<String, Value> = MODERATION_CATEGORIES
                .iter()
                .map(|c| (c.to_string(), json!(violent && *c == "violence")))
                .collect();
            let scores: serde_json::Map<String, Value> = MODERATION_CATEGORIES
                .iter()
                .map(|c| {
                    let score = if violent && *c == "violence" {
                        0.9
                    } else {
                        0.0
                    };
                    (c.to_string(), json!(score))
                })
                .collect();
            json!({"flagged": violent, "categories": categories, "category_scores": scores})
        })
        .collect();
    json!({"id": format!("modr-{id}"), "model": model, "results": results})
}

/// An image answer: `n` one-pixel images (default 1, at most OpenAI's 10),
/// as base64 or as a `data:` URL when `response_format` is `url` (a mock
/// has no server to keep files on). The prompt is not echoed: the answer
/// stays small whatever the request.
pub fn images(body: &RawFields) -> Value {
    let n = body
        .value("n")
        .and_then(|n| n.as_u64())
        .map_or(1, |n| (n as usize).clamp(1, MOST_IMAGES));
    let as_url = body
        .value("response_format")
        .as_ref()
        .and_then(Value::as_str)
        == Some("url");
    let image = if as_url {
        json!({"url": format!("data:image/png;base64,{PIXEL_PNG_BASE64}")})
    } else {
        json!({"b64_json": PIXEL_PNG_BASE64})
    };
    json!({"created": unix_now(), "data": vec![image; n]})
}

/// A rerank answer in Cohere's shape: each document scored by the share of
/// the query's words it contains, most relevant first, cut to `top_n`,
/// with the document's text when `return_documents` is true.
pub fn rerank(id: &str, body: &RawFields) -> Value {
    let query = body
        .value("query")
        .and_then(|q| q.as_str().map(str::to_lowercase))
        .unwrap_or_default();
    let wanted: Vec<&str> = words(&query).collect();
    let documents = texts(body.value("documents"));
    let mut scored: Vec<(usize, f64)> = documents
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let text = text.to_lowercase();
            let found = wanted.iter().filter(|w| words(&text).any(|t| t == **w));
            let score = found.count() as f64 / wanted.len().max(1) as f64;
            (index, score)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top_n = body
        .value("top_n")
        .and_then(|n| n.as_u64())
        .map_or(MOST_ITEMS, |n| (n as usize).min(MOST_ITEMS));
    let with_text = body.value("return_documents") == Some(Value::Bool(true));
    let results: Vec<Value> = scored
        .into_iter()
        .take(top_n)
        .map(|(index, score)| {
            let mut result = json!({"index": index, "relevance_score": score});
            if with_text {
                result["document"] = json!({"text": documents[index]});
            }
            result
        })
        .collect();
    json!({
        "id": format!("rerank-{id}"),
        "results": results,
        "meta": {"billed_units": {"search_units": 1}},
    })
}

/// The texts of an `input` or `documents` value: a string, a list of
/// strings, or of objects with a `text`.
fn texts(value: Option<Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .iter()
            .take(MOST_ITEMS)
            .map(|item| match item {
                Value::String(s) => s.clone(),
                other => other["text"].as_str().unwrap_or_default().to_owned(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The words of `text`: runs of letters and digits.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: Value) -> RawFields {
        RawFields::from_map(json.as_object().unwrap()).unwrap()
    }

    #[test]
    fn rerank_orders_documents_by_the_query_words_they_hold() {
        let answer = rerank(
            "1",
            &body(
                json!({"query": "red apples", "documents": ["blue sky", {"text": "Red apples, ripe"}, "red car"], "top_n": 2, "return_documents": true}),
            ),
        );
        let results = answer["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["index"], 1);
        assert_eq!(results[0]["relevance_score"], 1.0);
        assert_eq!(results[0]["document"]["text"], "Red apples, ripe");
        assert_eq!(results[1]["index"], 2);
    }

    #[test]
    fn moderation_gives_one_result_per_input() {
        let answer = moderation(
            "1",
            "m",
            &body(json!({"input": ["hello", "graphic violence"]})),
        );
        let results = answer["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["flagged"], false);
        assert_eq!(results[1]["flagged"], true);
        assert_eq!(results[1]["categories"]["violence"], true);
        assert_eq!(results[1]["categories"]["hate"], false);
    }

    #[test]
    fn images_come_n_at_a_time_as_asked() {
        let answer = images(&body(
            json!({"prompt": "a cat", "n": 3, "response_format": "url"}),
        ));
        let data = answer["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        assert!(
            data[0]["url"]
                .as_str()
                .unwrap()
                .starts_with("data:image/png;base64,")
        );
        let many = images(&body(json!({"prompt": "a cat", "n": 1_000_000})));
        assert_eq!(many["data"].as_array().unwrap().len(), MOST_IMAGES);
    }
}
