//! Host-side bindings of the `strategy` world in wit/.

wasmtime::component::bindgen!({
    world: "strategy",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::conclave::strategy::host::Host;
pub use self::conclave::strategy::types::{ChatRequest, Host as TypesHost, Message, Usage};
