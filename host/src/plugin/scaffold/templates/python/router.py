"""A gaffer router: start with the cheapest model of the lowest tier, go one tier up for
every rejected attempt, and cap the attempt at the money that is left.

Config (the `config` table of `[plugins.router]` in gaffer.toml):

| field | default | meaning |
|---|---|---|
| `attempt_budget` | 5000000 | µ$ cap of one attempt ($5); the money left bounds it too |
"""

import json

import wit_world
from wit_world.imports import host, types
from componentize_py_types import Err

# Money cap of one attempt when the config gives none: $5 in micro-dollars.
DEFAULT_ATTEMPT_BUDGET = 5_000_000


class WitWorld(wit_world.WitWorld):
    def route(self, request: types.RouteRequest) -> types.RouteDecision:
        attempt_budget = attempt_budget_from_config(host.config())

        # The tiers on offer, lowest first; one step up per rejected attempt, up to the top.
        tiers = sorted({m.tier for m in request.models})
        if not tiers:
            raise Err("no models to choose from: the request's `models` list is empty")
        rejected = sum(
            1 for a in request.history if a.outcome == types.AttemptOutcome.REJECTED
        )
        tier = tiers[min(rejected, len(tiers) - 1)]

        # The cheapest model of that tier (by input + output price; ties by key).
        model = min(
            (m for m in request.models if m.tier == tier),
            key=lambda m: (m.prices.input + m.prices.output, m.id),
        )

        # Never plan to spend more than the smallest amount left. A `call` cap bounds one
        # model call, not a whole attempt, so it is left out.
        left = [
            m.left for m in request.budget.money if m.level != types.BudgetLevel.CALL
        ]
        budget = min([attempt_budget, *left])

        reason = (
            f"tier {tier} after {rejected} rejected attempt(s): `{model.id}` is the cheapest "
            f"model there; attempt budget {budget} µ$"
        )
        host.log(
            host.LogLevel.INFO,
            "routed",
            [("model", model.id), ("attempt_budget", str(budget))],
        )
        return types.RouteDecision(model=model.id, attempt_budget=budget, reason=reason)


def attempt_budget_from_config(text: str) -> int:
    """`attempt_budget` from the config JSON (an object, `{}` when gaffer.toml gives none)."""
    try:
        config = json.loads(text)
    except ValueError as e:
        raise Err(f"invalid config: {e}")
    if not isinstance(config, dict):
        raise Err("invalid config: not a JSON object")
    value = config.get("attempt_budget", DEFAULT_ATTEMPT_BUDGET)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Err(
            f"invalid config: `attempt_budget` must be a whole number of µ$, not {value!r}"
        )
    return value
