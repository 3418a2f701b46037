//! Semantic matching (`type: local-semantic`): a question phrased another
//! way takes the answer of the most similar earlier one in the same bucket.
//! The fake's embedding model returns one vector for every text, so any two
//! questions are as similar as can be: what decides a hit is the bucket
//! (model group and every other field) and the embedding cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use conclave_e2e::{Behavior, FakeUpstream, Proxy, chat_body, deployments};
use serde_json::json;

const GROUP: &str = "gpt-semantic";
const OTHER: &str = "gpt-semantic-other";
const EMBED: &str = "embed-small";

async fn start(up: &FakeUpstream) -> Proxy {
    up.set(GROUP, Behavior::ok("Paris"));
    up.set(OTHER, Behavior::ok("Paris, says the other group"));
    Proxy::start(&format!(
        "model_list:\n{}router_settings:\n  num_retries: 0\nlitellm_settings:\n  cache: true\n  \
         cache_params:\n    type: local-semantic\n    embedding_model: {EMBED}\n    similarity_threshold: 0.9\n",
        deployments(up, &[(GROUP, &[]), (OTHER, &[]), (EMBED, &[])])
    ))
    .await
}

#[tokio::test]
async fn a_rephrased_question_takes_the_earlier_answer_of_its_model_group() {
    let up = FakeUpstream::start().await;
    let proxy = start(&up).await;
    let (status, headers, first) = proxy
        .chat(&chat_body(GROUP, "What is the capital of France?"))
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(headers["x-conclave-cache"], "stored");
    assert_eq!(up.calls(EMBED), 1, "the question was embedded");

    let (status, headers, second) = proxy
        .chat(&chat_body(GROUP, "capital city of france, please"))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(headers["x-conclave-cache"], "hit");
    assert_eq!(second["choices"], first["choices"]);
    assert_eq!(up.calls(GROUP), 1);
    assert_eq!(up.calls(EMBED), 2);

    // Asked again: its embedding comes from the embedding cache.
    let (_, headers, _) = proxy
        .chat(&chat_body(GROUP, "capital city of france, please"))
        .await;
    assert_eq!(headers["x-conclave-cache"], "hit");
    assert_eq!(up.calls(EMBED), 2);

    // The same text with another temperature is another bucket.
    let mut warmer = chat_body(GROUP, "capital city of france, please");
    warmer["temperature"] = json!(1.5);
    let (_, headers, _) = proxy.chat(&warmer).await;
    assert_eq!(headers["x-conclave-cache"], "stored");
    assert_eq!(up.calls(GROUP), 2);

    // Another model group never takes this group's answers.
    let (_, headers, other) = proxy
        .chat(&chat_body(OTHER, "What is the capital of France?"))
        .await;
    assert_eq!(headers["x-conclave-cache"], "stored");
    assert_eq!(
        other["choices"][0]["message"]["content"],
        "Paris, says the other group"
    );
}

#[tokio::test]
async fn semantic_mode_without_an_embedding_model_is_a_config_error() {
    let out = conclave_e2e::failed_check(
        "model_list: []\nlitellm_settings:\n  cache: true\n  cache_params:\n    type: local-semantic\n",
    )
    .await;
    assert!(
        out.contains("litellm_settings.cache_params.embedding_model"),
        "{out}"
    );
}
