//! Strategy components compiled from strategies/ by build.rs and embedded in
//! the binary, so `conclave serve` needs no .wasm files on disk.

/// The embedded component of a built-in strategy.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    match name {
        "passthrough" => Some(include_bytes!(concat!(
            env!("OUT_DIR"),
            "/strategies/passthrough.wasm"
        ))),
        "moa" => Some(include_bytes!(concat!(
            env!("OUT_DIR"),
            "/strategies/moa.wasm"
        ))),
        "council" => Some(include_bytes!(concat!(
            env!("OUT_DIR"),
            "/strategies/council.wasm"
        ))),
        "self-consistency" => Some(include_bytes!(concat!(
            env!("OUT_DIR"),
            "/strategies/self-consistency.wasm"
        ))),
        "best-of-n" => Some(include_bytes!(concat!(
            env!("OUT_DIR"),
            "/strategies/best-of-n.wasm"
        ))),
        "cascade" => Some(include_bytes!(concat!(
            env!("OUT_DIR"),
            "/strategies/cascade.wasm"
        ))),
        _ => None,
    }
}
