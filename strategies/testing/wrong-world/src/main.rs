//! A valid WebAssembly component of the wrong world (a WASI command, not a
//! `conclave:strategy`), for testing that the host refuses it.

fn main() {
    println!("I am a command, not a strategy");
}
