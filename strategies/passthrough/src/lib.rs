//! `passthrough`: one call to one model, streamed as the answer. The smallest
//! useful strategy, and a baseline for measuring the host's overhead.
//!
//! Topology: `{model, provider?, params?}` (a node).

use conclave_strategy_sdk::*;

struct Passthrough;

impl Strategy for Passthrough {
    type Topology = Node;
    type Settings = NoSettings;

    fn run(inv: &Invocation, node: Node, _: NoSettings) -> Result<ChatResponse, Error> {
        trace("passthrough", format!("forwarding to {}", node.model));
        respond(&node.request_with(inv.request.messages.clone(), &inv.request.params()))
    }
}

strategy!(Passthrough);
