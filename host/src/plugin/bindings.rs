//! Host-side bindings of the `gaffer:plugin@0.1.0` worlds, generated from `wit/0.1.0`.
//!
//! The three worlds share the `types` and `host` interfaces; they are generated once (with the
//! router world) and reused by the other two through `with`, so the host has one Rust type per
//! WIT type.

/// The `router` world: exports `route`.
pub mod router {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "router",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [PartialEq, Eq],
    });
}

/// The `verifier` world: exports `verify`.
pub mod verifier {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "verifier",
        imports: { default: async },
        exports: { default: async },
        with: {
            "gaffer:plugin/types": super::router::gaffer::plugin::types,
            "gaffer:plugin/host": super::router::gaffer::plugin::host,
        },
    });
}

/// The `hook` world: exports `pre-tool`, `on-edit` and `on-diff`.
pub mod hook {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "hook",
        imports: { default: async },
        exports: { default: async },
        with: {
            "gaffer:plugin/types": super::router::gaffer::plugin::types,
            "gaffer:plugin/host": super::router::gaffer::plugin::host,
        },
    });
}

/// Every WIT type of `gaffer:plugin/types@0.1.0`, as the host sees it.
pub mod types {
    pub use super::router::gaffer::plugin::types::*;
}

/// The `host` interface the plugins import: its types and the trait the host implements.
pub mod host_api {
    pub use super::router::gaffer::plugin::host::*;
}
