//! Link the component with a 64 KiB shadow stack instead of the wasm32 targets' 1 MiB.
//!
//! gaffer runs every call in a fresh instance and, after the call, resets the slot's linear
//! memory by scanning its pages for the ones the call wrote (PAGEMAP_SCAN): the scan walks every
//! page of the memory, so its cost follows the memory's size, and with the default stack the
//! memory was 1 088 KiB of which this router touches a few pages. Rust keeps most locals in
//! WebAssembly locals; the shadow stack holds only what has its address taken, and this router
//! needs far less than 64 KiB of it. An overflow traps (the stack is placed first, below the
//! data, so running past it is an out-of-bounds access, not a corruption).
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size=65536");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
