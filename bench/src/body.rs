//! The request bodies every measurement sends: a realistic chat request (a
//! system prompt, a few turns, two tools), so parsing, routing and the
//! outbound re-serialization see the shape real clients send.

/// A chat request for `model`, as JSON text.
pub fn chat_body(model: &str, stream: bool) -> String {
    let body = serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a concise assistant for an online bookshop. Answer in at most three sentences, cite the catalogue number when you mention a book, and ask one clarifying question when the request is ambiguous."},
            {"role": "user", "content": "I am looking for a good introduction to distributed systems, something practical rather than purely theoretical."},
            {"role": "assistant", "content": "Designing Data-Intensive Applications (cat. 4471) is the usual recommendation: practical, broad, and readable. Do you prefer a book that also covers consensus algorithms in depth?"},
            {"role": "user", "content": "Yes, consensus matters to me. Is it in stock, and can you compare it with one other title?"}
        ],
        "tools": [
            {"type": "function", "function": {
                "name": "check_stock",
                "description": "Look up whether a catalogue number is in stock and how many copies are left.",
                "parameters": {"type": "object", "properties": {
                    "catalogue_number": {"type": "string", "description": "The catalogue number, e.g. 4471"}
                }, "required": ["catalogue_number"]}
            }},
            {"type": "function", "function": {
                "name": "search_catalogue",
                "description": "Full-text search over titles, authors and subjects.",
                "parameters": {"type": "object", "properties": {
                    "query": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 20}
                }, "required": ["query"]}
            }}
        ],
        "tool_choice": "auto",
        "temperature": 0.3,
        "max_tokens": 256,
        "user": "bench-user-17"
    });
    body.to_string()
}

/// A short chat request (one user message) for `model`, as JSON text.
pub fn short_body(model: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Name one prime number greater than 40."}]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_with_the_model() {
        let v: serde_json::Value = serde_json::from_str(&chat_body("m", true)).unwrap();
        assert_eq!(v["model"], "m");
        assert_eq!(v["stream"], true);
        assert_eq!(v["messages"].as_array().unwrap().len(), 4);
        assert!(chat_body("m", false).len() > 1000);
        let v: serde_json::Value = serde_json::from_str(&short_body("x", false)).unwrap();
        assert_eq!(v["model"], "x");
    }
}
