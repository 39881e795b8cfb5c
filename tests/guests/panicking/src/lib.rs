//! A router that panics on every call, built for `wasm32-unknown-unknown` (no WASI, so no
//! stderr): the SDK's export glue must carry the panic's message to gaffer through the log.

use gaffer_sdk::types::{RouteDecision, RouteRequest};

pub struct Panicking;

impl gaffer_sdk::Router for Panicking {
    fn route(request: RouteRequest) -> Result<RouteDecision, String> {
        panic!("panicking-router gave up on task {}", request.task.id);
    }
}

gaffer_sdk::export_router!(Panicking);
