//! A strategy for testing hot reload, not for use: one call to
//! `settings.model`, answered as `tag-a|<answer>|tag-a` with the tag in the
//! trace too, so a test can tell which version served a request. Its twin
//! (tag-b) differs only in the tag.

use conclave_strategy_sdk::*;

const TAG: &str = "tag-a";

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    model: String,
}

struct Tag;

impl Strategy for Tag {
    type Topology = Value;
    type Settings = Settings;

    fn run(inv: &Invocation, _: Value, s: Settings) -> Result<ChatResponse, Error> {
        trace("tag", TAG);
        let answer = complete(&request(&s.model, inv.request.messages.clone()))?;
        Ok(ChatResponse {
            content: format!("{TAG}|{}|{TAG}", answer.content),
            reasoning: None,
            tool_calls_json: None,
            finish_reason: "stop".into(),
            model: TAG.into(),
            usage: answer.usage,
        })
    }

    fn validate(_: &Value, s: &Settings) -> Result<(), String> {
        if s.model.is_empty() {
            Err("settings.model is required".into())
        } else {
            Ok(())
        }
    }
}

strategy!(Tag);
