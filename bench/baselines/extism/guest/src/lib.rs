//! The Extism plug-in: `route` takes a [`cost_tier::RouteRequest`] as JSON, reads its config
//! (the `config` key of the manifest's config, JSON text, as cost-tier reads `host::config()`
//! on every call) and returns the [`cost_tier::RouteDecision`] as JSON.

mod cost_tier;

use extism_pdk::{FnResult, Json, WithReturnCode, plugin_fn};

#[plugin_fn]
pub fn route(
    Json(request): Json<cost_tier::RouteRequest>,
) -> FnResult<Json<cost_tier::RouteDecision>> {
    let config = extism_pdk::config::get("config")?;
    let config = cost_tier::Config::parse(config.as_deref())
        .map_err(|e| WithReturnCode::new(extism_pdk::Error::msg(e), 1))?;
    let decision = cost_tier::route_with(&config, &request)
        .map_err(|e| WithReturnCode::new(extism_pdk::Error::msg(e), 1))?;
    Ok(Json(decision))
}
