"""cost-tier, in Python: the same router as plugins/cost-tier (Rust), decision for decision.

It starts cheap and escalates on rejection, within the money left. The tier of the next
attempt is ``max(start_tier, highest label_tiers[label]) (+1 for a large task) + rejected
attempts``, clamped to the highest tier configured. At that tier (or the nearest higher one
that has models, else the highest below) it picks the model with the lowest estimated cost
of an attempt. The attempt budget is ``min(attempt_budget, the smallest amount left among
the money caps)`` (a ``call`` cap bounds one call, not an attempt). If the chosen model's
estimate exceeds it, the router steps down to the most capable model that fits; if none
fits it picks the cheapest model and says so (the host then refuses the attempt cleanly).

Config (every field optional), as in the Rust plugin: ``start_tier`` (1), ``label_tiers``
({"architecture": 3, "security": 3, "refactor": 2}), ``large_body_chars`` (4000),
``large_paths`` (5), ``attempt_budget`` (5000000 µ$), ``expected_input_tokens`` (200000),
``expected_output_tokens`` (20000).

Build: componentize-py -d wit/0.1.0 -w router componentize cost_tier -p plugins/python -o cost_tier.wasm
"""

import wit_world
from componentize_py_types import Err
from plugin_config import given_fields
from wit_world.imports import host, types

U8_MAX = 255
U64_MAX = 2**64 - 1

DEFAULTS = {
    "start_tier": 1,
    "label_tiers": {"architecture": 3, "security": 3, "refactor": 2},
    "large_body_chars": 4000,
    "large_paths": 5,
    "attempt_budget": 5_000_000,
    "expected_input_tokens": 200_000,
    "expected_output_tokens": 20_000,
}

LIMITS = {
    "start_tier": U8_MAX,
    "large_body_chars": U64_MAX,
    "large_paths": U64_MAX,
    "attempt_budget": U64_MAX,
    "expected_input_tokens": U64_MAX,
    "expected_output_tokens": U64_MAX,
}


class WitWorld(wit_world.WitWorld):
    def route(self, request: types.RouteRequest) -> types.RouteDecision:
        config = parse_config(host.config())
        return route_with(config, request)


def parse_config(text: str) -> dict:
    """The config with defaults filled in; an unknown key or a bad value is an error."""
    config = dict(DEFAULTS)
    for key, value in given_fields(text).items():
        if key == "label_tiers":
            if not isinstance(value, dict) or not all(
                is_int(t) and 0 <= t <= U8_MAX for t in value.values()
            ):
                raise Err("invalid config: `label_tiers`: expected a map of label to tier (0-255)")
        elif key in LIMITS:
            if not is_int(value) or not 0 <= value <= LIMITS[key]:
                raise Err(f"invalid config: `{key}`: expected an integer from 0 to {LIMITS[key]}")
        else:
            known = ", ".join(f"`{k}`" for k in DEFAULTS)
            raise Err(f"invalid config: unknown field `{key}`, expected one of {known}")
        config[key] = value
    if config["start_tier"] == 0:
        raise Err("invalid config: `start_tier` must be at least 1 (tiers start at 1)")
    if config["attempt_budget"] == 0:
        raise Err("invalid config: `attempt_budget` must be more than 0 µ$")
    return config


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def estimate(config: dict, prices: types.Prices) -> int:
    """Estimated cost of one attempt: ceil(Σ tokens × price / 10⁶), in µ$."""
    total = (
        config["expected_input_tokens"] * prices.input
        + config["expected_output_tokens"] * prices.output
    )
    return min(-(-total // 1_000_000), U64_MAX)


def route_with(config: dict, request: types.RouteRequest) -> types.RouteDecision:
    models = request.models
    if not models:
        raise Err("no models to choose from: the request's `models` list is empty")
    max_tier = max(m.tier for m in models)
    task = request.task

    # The tier the task asks for, and how it was derived.
    wanted = config["start_tier"]
    label = strongest_label(config, task.labels)
    if label is not None and label[1] > wanted:
        wanted = label[1]
        why = f"{label[1]} for label `{label[0]}`"
    else:
        why = f"start {config['start_tier']}"
    long_body = len(task.body) > config["large_body_chars"]
    many_paths = len(task.paths) > config["large_paths"]
    if long_body or many_paths:
        wanted += 1
        sizes = []
        if long_body:
            sizes.append(f"body {len(task.body)} chars > {config['large_body_chars']}")
        if many_paths:
            sizes.append(f"{len(task.paths)} paths > {config['large_paths']}")
        why += f" + 1 for size ({', '.join(sizes)})"
    rejections = sum(1 for a in request.history if a.outcome == types.AttemptOutcome.REJECTED)
    if rejections > 0:
        wanted += rejections
        why += f" + {rejections} rejection{'' if rejections == 1 else 's'}"
    reason = f"tier {wanted} = {why}"

    target = min(wanted, max_tier)
    if target < wanted:
        reason += f", clamped to {target} (the highest configured)"
    tiers = [m.tier for m in models]
    if target in tiers:
        tier = target
    else:
        higher = [t for t in tiers if t > target]
        lower = [t for t in tiers if t < target]
        tier = min(higher) if higher else max(lower) if lower else max_tier
        reason += f"; no model at tier {target}, using tier {tier}"

    # The money the attempt may use (a per-call cap does not bound an attempt).
    caps = [m for m in request.budget.money if m.level != types.BudgetLevel.CALL]
    tightest = min(caps, key=lambda m: m.left) if caps else None
    budget = min(config["attempt_budget"], tightest.left) if tightest else config["attempt_budget"]

    # The cheapest model at the tier, stepping down if it does not fit.
    priced = [(m, estimate(config, m.prices)) for m in models]
    first, first_est = min(((m, e) for m, e in priced if m.tier == tier), key=lambda p: p[1])
    if first_est <= budget:
        model = first
        reason += f"; chose {describe(first, first_est)}"
    else:
        fitting = None
        for m, est in priced:
            if m.tier < first.tier and est <= budget:
                if fitting is None or (m.tier, -est) > (fitting[0].tier, -fitting[1]):
                    fitting = (m, est)
        if fitting is not None:
            model = fitting[0]
            reason += (
                f"; chose {describe(*fitting)} instead of `{first.id}` "
                f"(est. {usd(first_est, 3)}), which does not fit the attempt budget"
            )
        else:
            model, est = min(priced, key=lambda p: p[1])
            reason += (
                f"; chose {describe(model, est)}, the cheapest model, "
                "but the attempt budget is below its estimate"
            )

    reason += f"; attempt budget {usd(budget, 3)}"
    if tightest is None:
        reason += " (no money caps)"
    elif tightest.left < config["attempt_budget"]:
        reason += f" (all the {level_name(tightest.level)} has left)"
    else:
        reason += f" ({level_name(tightest.level)} has {usd(tightest.left, 3)} left)"

    return types.RouteDecision(model=model.id, attempt_budget=budget, reason=reason)


def strongest_label(config: dict, labels: list):
    """The label with the highest configured tier (first one on a tie), case-insensitively."""
    best = None
    for label in labels:
        for name, tier in sorted(config["label_tiers"].items()):
            if ascii_lower(name) == ascii_lower(label) and (best is None or tier > best[1]):
                best = (name, tier)
    return best


def ascii_lower(text: str) -> str:
    """Lower case for ASCII letters only, as Rust's `eq_ignore_ascii_case` compares."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def describe(model: types.ModelInfo, est: int) -> str:
    return (
        f"`{model.id}` (est. {usd(est, 3)} at "
        f"{usd(model.prices.input, 2)}/{usd(model.prices.output, 2)} per Mtok)"
    )


def level_name(level: types.BudgetLevel) -> str:
    return level.name.lower()


def usd(micro: int, min_decimals: int) -> str:
    """Dollars from µ$: at least `min_decimals` decimals, more when the amount needs them."""
    whole, frac = divmod(micro, 1_000_000)
    frac = f"{frac:06d}"
    keep = max(len(frac.rstrip("0")), min(min_decimals, 6))
    return f"${whole}" if keep == 0 else f"${whole}.{frac[:keep]}"
