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
        _ => None,
    }
}
