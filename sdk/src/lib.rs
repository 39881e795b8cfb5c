//! # gaffer-sdk: write gaffer plugins in Rust
//!
//! gaffer's policy parts — **routers**, **verifiers** and **hooks** — are WebAssembly
//! components defined by the WIT package `gaffer:plugin@0.1.0`. With this crate a plugin is a
//! plain Rust type that implements one trait ([`Router`], [`Verifier`] or [`Hook`]) plus one
//! line that exports it ([`export_router!`], [`export_verifier!`], [`export_hook!`]).
//!
//! The same code builds natively, so plugin logic is unit-tested with `cargo test`: on native
//! targets the [`host`] functions talk to a thread-local [`testing::MockHost`] instead of gaffer.
//! Build the component with
//!
//! ```text
//! cargo build --target wasm32-wasip2 --profile plugin -p my-plugin
//! ```
//!
//! and point `gaffer.toml` at `target/wasm32-wasip2/plugin/my_plugin.wasm`. The plugin crate
//! needs `crate-type = ["cdylib", "rlib"]` (`rlib` so that its tests and benchmarks can call it).
//!
//! A plugin that reaches the world only through [`host`] needs no WASI at all, and is faster
//! built without it: every call links and instantiates a fresh component, and one with no WASI
//! imports does less of that (gaffer's reference plugins are built this way: cost-tier's route
//! call took 10.8 µs against 12.0–12.3 µs, a hook event of `gaffer-hook` about 0.15 ms less).
//! Build it for `wasm32-unknown-unknown` and let the toolchain's `wasm-component-ld` make the
//! component:
//!
//! ```text
//! rustup target add wasm32-unknown-unknown
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-component-ld \
//!     cargo build --target wasm32-unknown-unknown --profile plugin -p my-plugin
//! ```
//!
//! A panic's message then reaches gaffer through the log instead of stderr (the export macros
//! see to it), and `std`'s files, clocks and environment report "unsupported".
//!
//! Every plugin call runs in a fresh sandbox: there is no state between calls, and the
//! plugin's configuration (its `config` table from `gaffer.toml`) is read with
//! [`host::config`] on each call.
//!
//! ## A router
//!
//! ```
//! use gaffer_sdk::types::{RouteDecision, RouteRequest};
//!
//! /// Always the cheapest model by output price.
//! pub struct Cheapest;
//!
//! impl gaffer_sdk::Router for Cheapest {
//!     fn route(request: RouteRequest) -> Result<RouteDecision, String> {
//!         let model = request
//!             .models
//!             .iter()
//!             .min_by_key(|m| m.prices.output)
//!             .ok_or("no models configured")?;
//!         Ok(RouteDecision {
//!             model: model.id.clone(),
//!             attempt_budget: 1_000_000, // $1.00
//!             reason: format!("`{}` has the lowest output price", model.id),
//!         })
//!     }
//! }
//!
//! gaffer_sdk::export_router!(Cheapest);
//! # fn main() {}
//! ```
//!
//! ## A verifier
//!
//! ```
//! use gaffer_sdk::types::{Finding, Verdict, VerifyRequest};
//!
//! #[derive(serde::Deserialize, Default)]
//! #[serde(default, deny_unknown_fields)]
//! struct Config {
//!     max_files: u32,
//! }
//!
//! pub struct TestsPass;
//!
//! impl gaffer_sdk::Verifier for TestsPass {
//!     fn verify(request: VerifyRequest) -> Result<Verdict, String> {
//!         let config: Config = gaffer_sdk::host::config()?;
//!         if request.tests.ran && !request.tests.passed {
//!             return Ok(Verdict::Reject(vec![Finding {
//!                 message: format!("`{}` failed", request.tests.command),
//!                 path: None,
//!                 line: None,
//!             }]));
//!         }
//!         if config.max_files > 0 && request.diff.stats.files_changed > config.max_files {
//!             return Ok(Verdict::NeedsHuman("the change is too wide".into()));
//!         }
//!         gaffer_sdk::host::info("tests passed");
//!         Ok(Verdict::Approve)
//!     }
//! }
//!
//! gaffer_sdk::export_verifier!(TestsPass);
//! # fn main() {}
//! ```
//!
//! ## A hook
//!
//! A hook implements only the events it cares about; the others allow.
//!
//! ```
//! use gaffer_sdk::types::{FileEdit, Finding, RuleDecision, Task};
//!
//! pub struct NoSecrets;
//!
//! impl gaffer_sdk::Hook for NoSecrets {
//!     fn on_edit(_task: Task, edit: FileEdit) -> Result<RuleDecision, String> {
//!         if gaffer_sdk::glob::matches(".env", &edit.path) {
//!             return Ok(RuleDecision::Deny(vec![Finding {
//!                 message: format!("`{}` is protected", edit.path),
//!                 path: Some(edit.path),
//!                 line: None,
//!             }]));
//!         }
//!         Ok(RuleDecision::Allow)
//!     }
//! }
//!
//! gaffer_sdk::export_hook!(NoSecrets);
//! # fn main() {}
//! ```
//!
//! ## Testing natively
//!
//! ```
//! # use gaffer_sdk::types::*;
//! # pub struct NoSecrets;
//! # impl gaffer_sdk::Hook for NoSecrets {}
//! use gaffer_sdk::testing::MockHost;
//! use gaffer_sdk::Hook;
//!
//! let _host = MockHost::new()
//!     .config(serde_json::json!({ "globs": [".env"] }))
//!     .file("src/main.rs", "fn main() {}\n")
//!     .install();
//! let task = Task {
//!     id: "T-1".into(),
//!     title: "t".into(),
//!     body: String::new(),
//!     labels: vec![],
//!     paths: vec![],
//! };
//! let edit = FileEdit { path: "src/lib.rs".into(), before: None, after: Some("x".into()) };
//! assert_eq!(NoSecrets::on_edit(task, edit), Ok(RuleDecision::Allow));
//! assert!(MockHost::logs().is_empty());
//! ```
//!
//! ## How the bindings are laid out
//!
//! [`bindings`] holds the `wit-bindgen` output: the shared `types` and `host` interfaces are
//! generated once (in an imports-only world) and reused by the three world modules, so
//! [`types::Task`] is one Rust type whichever world a plugin exports. The export macros emit
//! the component's export glue only when compiling for `wasm32`; on native targets they only
//! check that the type implements the trait.

#![warn(missing_docs)]

pub mod alloc;
pub mod bindings;
pub mod glob;
pub mod host;
pub mod paths;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

/// Every type of the WIT interface `gaffer:plugin/types@0.1.0`, under its generated name.
///
/// Records derive `Clone`, `Debug`, `PartialEq` and `Eq`; enums are also `Copy`.
/// Money ([`MicroUsd`](types::MicroUsd)) is integer micro-dollars: one dollar is 1_000_000.
pub mod types {
    pub use crate::bindings::imports::gaffer::plugin::types::{
        Attempt, AttemptOutcome, BudgetLevel, BudgetView, Diff, DiffLine, DiffStats, FileDiff,
        FileEdit, FileStatus, Finding, HookDecision, Hunk, LineKind, MicroUsd, ModelInfo,
        MoneyLeft, Prices, RouteDecision, RouteRequest, RuleDecision, Task, TestResult, TokenUsage,
        ToolCall, Verdict, VerifyRequest,
    };
    // The host interface's own types, for convenience (also in `gaffer_sdk::host`).
    pub use crate::bindings::imports::gaffer::plugin::host::{
        Completion, CompletionRequest, HostError, LogLevel, Message, Role,
    };
}

use types::{
    Diff, FileEdit, HookDecision, RouteDecision, RouteRequest, RuleDecision, Task, ToolCall,
    Verdict, VerifyRequest,
};

/// A router chooses the model and the money cap of the next attempt at a task.
///
/// Export an implementation with [`export_router!`]. An `Err` (or a trap) makes the host fall
/// back to `[plugins.router] fallback_model`.
pub trait Router {
    /// Choose a model for the next attempt.
    fn route(request: RouteRequest) -> Result<RouteDecision, String>;
}

/// A verifier judges a finished attempt: approve, reject with findings, or hand to a person.
///
/// Export an implementation with [`export_verifier!`]. An `Err` (or a trap) ends the attempt
/// as `needs-human` by default.
pub trait Verifier {
    /// Judge an attempt.
    fn verify(request: VerifyRequest) -> Result<Verdict, String>;
}

/// A hook is one of the team's rules, checked while the agent works and on the final change.
///
/// Every method defaults to allowing, so a hook implements only the events it needs.
/// Export an implementation with [`export_hook!`]. An `Err` (or a trap) denies by default:
/// hooks fail closed.
pub trait Hook {
    /// Before every tool call of the implementing agent.
    fn pre_tool(task: Task, call: ToolCall) -> Result<HookDecision, String> {
        let _ = (task, call);
        Ok(HookDecision::Allow)
    }

    /// Before every change to a file made through the agent's file tools.
    fn on_edit(task: Task, edit: FileEdit) -> Result<RuleDecision, String> {
        let _ = (task, edit);
        Ok(RuleDecision::Allow)
    }

    /// On the whole change of an attempt, before it is verified (catches shell writes too).
    fn on_diff(task: Task, diff: Diff) -> Result<RuleDecision, String> {
        let _ = (task, diff);
        Ok(RuleDecision::Allow)
    }
}

/// Send a panic's message to gaffer's log before the plugin traps; the export macros call it
/// at the start of every export.
///
/// Built for `wasm32-wasip2`, a plugin has stderr: Rust's own panic hook writes the message
/// there and gaffer quotes it when it reports the trap. Built for `wasm32-unknown-unknown` (no
/// WASI imports at all: the component links and instantiates faster, see the crate's build
/// notes) it has no stderr, so this hook logs the message at `error` level through the `host`
/// interface instead, and gaffer quotes that. Every call is a fresh instance, so the hook is
/// set on every call; elsewhere this does nothing.
#[doc(hidden)]
#[inline]
pub fn __report_panics_to_host() {
    #[cfg(all(target_arch = "wasm32", not(target_os = "wasi")))]
    std::panic::set_hook(Box::new(|info| host::error(&info.to_string())));
}

/// Export a [`Router`] implementation as the component's `router` world.
///
/// Use it once, at the top level of the plugin crate, with the type's name (an identifier):
///
/// ```
/// # use gaffer_sdk::types::*;
/// pub struct MyRouter;
/// impl gaffer_sdk::Router for MyRouter {
///     fn route(request: RouteRequest) -> Result<RouteDecision, String> {
///         Err("not yet".into())
///     }
/// }
/// gaffer_sdk::export_router!(MyRouter);
/// # fn main() {}
/// ```
///
/// On `wasm32` this emits the `route` export; on other targets it only type-checks.
#[macro_export]
macro_rules! export_router {
    ($ty:ident) => {
        impl $crate::bindings::router::Guest for $ty {
            #[inline]
            fn route(
                request: $crate::types::RouteRequest,
            ) -> ::core::result::Result<$crate::types::RouteDecision, ::std::string::String>
            {
                $crate::__report_panics_to_host();
                <$ty as $crate::Router>::route(request)
            }
        }
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::router::__export_router_world!($ty with_types_in $crate::bindings::router);
    };
}

/// Export a [`Verifier`] implementation as the component's `verifier` world.
///
/// Use it once, at the top level of the plugin crate: `gaffer_sdk::export_verifier!(MyType);`.
/// On `wasm32` this emits the `verify` export; on other targets it only type-checks.
#[macro_export]
macro_rules! export_verifier {
    ($ty:ident) => {
        impl $crate::bindings::verifier::Guest for $ty {
            #[inline]
            fn verify(
                request: $crate::types::VerifyRequest,
            ) -> ::core::result::Result<$crate::types::Verdict, ::std::string::String> {
                $crate::__report_panics_to_host();
                <$ty as $crate::Verifier>::verify(request)
            }
        }
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::verifier::__export_verifier_world!($ty with_types_in $crate::bindings::verifier);
    };
}

/// Export a [`Hook`] implementation as the component's `hook` world.
///
/// Use it once, at the top level of the plugin crate: `gaffer_sdk::export_hook!(MyType);`.
/// On `wasm32` this emits the `pre-tool`, `on-edit` and `on-diff` exports; on other targets it
/// only type-checks.
#[macro_export]
macro_rules! export_hook {
    ($ty:ident) => {
        impl $crate::bindings::hook::Guest for $ty {
            #[inline]
            fn pre_tool(
                task: $crate::types::Task,
                call: $crate::types::ToolCall,
            ) -> ::core::result::Result<$crate::types::HookDecision, ::std::string::String> {
                $crate::__report_panics_to_host();
                <$ty as $crate::Hook>::pre_tool(task, call)
            }
            #[inline]
            fn on_edit(
                task: $crate::types::Task,
                edit: $crate::types::FileEdit,
            ) -> ::core::result::Result<$crate::types::RuleDecision, ::std::string::String> {
                $crate::__report_panics_to_host();
                <$ty as $crate::Hook>::on_edit(task, edit)
            }
            #[inline]
            fn on_diff(
                task: $crate::types::Task,
                diff: $crate::types::Diff,
            ) -> ::core::result::Result<$crate::types::RuleDecision, ::std::string::String> {
                $crate::__report_panics_to_host();
                <$ty as $crate::Hook>::on_diff(task, diff)
            }
        }
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::hook::__export_hook_world!($ty with_types_in $crate::bindings::hook);
    };
}
