// A gaffer router: start with the cheapest model of the lowest tier, go one tier up for
// every rejected attempt, and cap the attempt at the money that is left.
//
// Config (the `config` table of `[plugins.router]` in gaffer.toml):
//
// | field | default | meaning |
// |---|---|---|
// | `attempt_budget` | 5000000 | µ$ cap of one attempt ($5); the money left bounds it too |
//
// Values as jco's QuickJS backend gives them: record fields in camelCase, u64 as plain
// numbers (not BigInt), enums as strings ('rejected', 'call'); an error is a thrown Error.

import { config, log } from 'gaffer:plugin/host@0.1.0';

// Money cap of one attempt when the config gives none: $5 in micro-dollars.
const DEFAULT_ATTEMPT_BUDGET = 5_000_000;

export function route(request) {
  const attemptBudget = attemptBudgetFromConfig(config());

  // The tiers on offer, lowest first; one step up per rejected attempt, up to the top.
  const tiers = [...new Set(request.models.map((m) => m.tier))].sort((a, b) => a - b);
  if (tiers.length === 0) {
    throw new Error("no models to choose from: the request's `models` list is empty");
  }
  const rejected = request.history.filter((a) => a.outcome === 'rejected').length;
  const tier = tiers[Math.min(rejected, tiers.length - 1)];

  // The cheapest model of that tier (by input + output price; ties by key).
  const price = (m) => m.prices.input + m.prices.output;
  const model = request.models
    .filter((m) => m.tier === tier)
    .reduce((best, m) =>
      price(m) < price(best) || (price(m) === price(best) && m.id < best.id) ? m : best,
    );

  // Never plan to spend more than the smallest amount left. A `call` cap bounds one
  // model call, not a whole attempt, so it is left out.
  const left = request.budget.money.filter((m) => m.level !== 'call').map((m) => m.left);
  const budget = Math.min(attemptBudget, ...left);

  const reason =
    `tier ${tier} after ${rejected} rejected attempt(s): \`${model.id}\` is the cheapest ` +
    `model there; attempt budget ${budget} µ$`;
  log('info', 'routed', [
    ['model', model.id],
    ['attempt_budget', String(budget)],
  ]);
  return { model: model.id, attemptBudget: budget, reason };
}

// `attempt_budget` from the config JSON (an object, `{}` when gaffer.toml gives none).
function attemptBudgetFromConfig(text) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`invalid config: ${e.message}`);
  }
  const value = parsed?.attempt_budget ?? DEFAULT_ATTEMPT_BUDGET;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(
      'invalid config: `attempt_budget` must be a whole number of µ$, ' +
        `not ${JSON.stringify(value)}`,
    );
  }
  return value;
}
