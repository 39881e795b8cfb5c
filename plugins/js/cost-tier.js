// cost-tier, in JavaScript: the same router as plugins/cost-tier (Rust), decision for decision.
//
// It starts cheap and escalates on rejection, within the money left. The tier of the next
// attempt is `max(start_tier, highest label_tiers[label]) (+1 for a large task) + rejected
// attempts`, clamped to the highest tier configured. At that tier (or the nearest higher one
// that has models, else the highest below) it picks the model with the lowest estimated cost
// of an attempt. The attempt budget is `min(attempt_budget, the smallest amount left among the
// money caps)` (a `call` cap bounds one call, not an attempt). If the chosen model's estimate
// exceeds it, the router steps down to the most capable model that fits; if none fits it picks
// the cheapest model and says so (the host then refuses the attempt cleanly).
//
// Config (every field optional), as in the Rust plugin: start_tier (1), label_tiers
// ({architecture: 3, security: 3, refactor: 2}), large_body_chars (4000), large_paths (5),
// attempt_budget (5000000 µ$), expected_input_tokens (200000), expected_output_tokens (20000).
//
// Build (jco, QuickJS backend; u64 values are plain numbers there):
//   jco componentize cost-tier.js -w ../../wit/0.1.0 -n router --backend quickjs \
//       --backend-qjs-disable-async -o cost-tier.wasm

import { config as hostConfig } from 'gaffer:plugin/host@0.1.0';
import { givenFields } from './plugin-config.js';

const U8_MAX = 255;

const DEFAULTS = {
  start_tier: 1,
  label_tiers: { architecture: 3, security: 3, refactor: 2 },
  large_body_chars: 4000,
  large_paths: 5,
  attempt_budget: 5_000_000,
  expected_input_tokens: 200_000,
  expected_output_tokens: 20_000,
};

const LIMITS = {
  start_tier: U8_MAX,
  large_body_chars: Number.MAX_SAFE_INTEGER,
  large_paths: Number.MAX_SAFE_INTEGER,
  attempt_budget: Number.MAX_SAFE_INTEGER,
  expected_input_tokens: Number.MAX_SAFE_INTEGER,
  expected_output_tokens: Number.MAX_SAFE_INTEGER,
};

export function route(request) {
  return routeWith(parseConfig(hostConfig()), request);
}

/** The config with defaults filled in; an unknown key or a bad value is an error. */
function parseConfig(text) {
  const config = { ...DEFAULTS };
  for (const [key, value] of Object.entries(givenFields(text))) {
    if (key === 'label_tiers') {
      const ok = value !== null && typeof value === 'object' && !Array.isArray(value)
        && Object.values(value).every((t) => Number.isInteger(t) && t >= 0 && t <= U8_MAX);
      if (!ok) throw new Error('invalid config: `label_tiers`: expected a map of label to tier (0-255)');
    } else if (key in LIMITS) {
      if (!Number.isInteger(value) || value < 0 || value > LIMITS[key]) {
        throw new Error(`invalid config: \`${key}\`: expected an integer from 0 to ${LIMITS[key]}`);
      }
    } else {
      const known = Object.keys(DEFAULTS).map((k) => `\`${k}\``).join(', ');
      throw new Error(`invalid config: unknown field \`${key}\`, expected one of ${known}`);
    }
    config[key] = value;
  }
  if (config.start_tier === 0) {
    throw new Error('invalid config: `start_tier` must be at least 1 (tiers start at 1)');
  }
  if (config.attempt_budget === 0) {
    throw new Error('invalid config: `attempt_budget` must be more than 0 µ$');
  }
  return config;
}

/** Estimated cost of one attempt: ceil(Σ tokens × price / 10⁶), in µ$ (exact, in BigInt). */
function estimate(config, prices) {
  const total = BigInt(config.expected_input_tokens) * BigInt(prices.input)
    + BigInt(config.expected_output_tokens) * BigInt(prices.output);
  return Number((total + 999_999n) / 1_000_000n);
}

/** Length in Unicode scalar values, as Rust's `chars().count()` (not UTF-16 units). */
const chars = (text) => [...text].length;

function routeWith(config, request) {
  const { models, task } = request;
  if (models.length === 0) {
    throw new Error("no models to choose from: the request's `models` list is empty");
  }
  const maxTier = Math.max(...models.map((m) => m.tier));

  // The tier the task asks for, and how it was derived.
  let wanted = config.start_tier;
  let why;
  const label = strongestLabel(config, task.labels);
  if (label && label[1] > wanted) {
    wanted = label[1];
    why = `${label[1]} for label \`${label[0]}\``;
  } else {
    why = `start ${config.start_tier}`;
  }
  const bodyChars = chars(task.body);
  const longBody = bodyChars > config.large_body_chars;
  const manyPaths = task.paths.length > config.large_paths;
  if (longBody || manyPaths) {
    wanted += 1;
    const sizes = [];
    if (longBody) sizes.push(`body ${bodyChars} chars > ${config.large_body_chars}`);
    if (manyPaths) sizes.push(`${task.paths.length} paths > ${config.large_paths}`);
    why += ` + 1 for size (${sizes.join(', ')})`;
  }
  const rejections = request.history.filter((a) => a.outcome === 'rejected').length;
  if (rejections > 0) {
    wanted += rejections;
    why += ` + ${rejections} rejection${rejections === 1 ? '' : 's'}`;
  }
  let reason = `tier ${wanted} = ${why}`;

  const target = Math.min(wanted, maxTier);
  if (target < wanted) reason += `, clamped to ${target} (the highest configured)`;
  const tiers = models.map((m) => m.tier);
  let tier = target;
  if (!tiers.includes(target)) {
    const higher = tiers.filter((t) => t > target);
    const lower = tiers.filter((t) => t < target);
    tier = higher.length ? Math.min(...higher) : lower.length ? Math.max(...lower) : maxTier;
    reason += `; no model at tier ${target}, using tier ${tier}`;
  }

  // The money the attempt may use (a per-call cap does not bound an attempt).
  const tightest = firstMin(request.budget.money.filter((m) => m.level !== 'call'), (m) => m.left);
  const budget = tightest ? Math.min(config.attempt_budget, tightest.left) : config.attempt_budget;

  // The cheapest model at the tier, stepping down if it does not fit.
  const priced = models.map((m) => [m, estimate(config, m.prices)]);
  const [first, firstEst] = firstMin(priced.filter(([m]) => m.tier === tier), (p) => p[1]);
  let model;
  if (firstEst <= budget) {
    model = first;
    reason += `; chose ${describe(first, firstEst)}`;
  } else {
    let fitting = null;
    for (const [m, est] of priced) {
      if (m.tier < first.tier && est <= budget) {
        if (!fitting || m.tier > fitting[0].tier || (m.tier === fitting[0].tier && est < fitting[1])) {
          fitting = [m, est];
        }
      }
    }
    if (fitting) {
      model = fitting[0];
      reason += `; chose ${describe(...fitting)} instead of \`${first.id}\` `
        + `(est. ${usd(firstEst, 3)}), which does not fit the attempt budget`;
    } else {
      const [cheapest, est] = firstMin(priced, (p) => p[1]);
      model = cheapest;
      reason += `; chose ${describe(cheapest, est)}, the cheapest model, `
        + 'but the attempt budget is below its estimate';
    }
  }

  reason += `; attempt budget ${usd(budget, 3)}`;
  if (!tightest) {
    reason += ' (no money caps)';
  } else if (tightest.left < config.attempt_budget) {
    reason += ` (all the ${tightest.level} has left)`;
  } else {
    reason += ` (${tightest.level} has ${usd(tightest.left, 3)} left)`;
  }

  return { model: model.id, attemptBudget: budget, reason };
}

/** The first item with the smallest key (undefined for none). */
function firstMin(items, key) {
  let best;
  for (const item of items) {
    if (best === undefined || key(item) < key(best)) best = item;
  }
  return best;
}

const asciiLower = (text) => text.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** The label with the highest configured tier (first one on a tie), case-insensitively. */
function strongestLabel(config, labels) {
  // Rust iterates a BTreeMap: names in byte order (code point order for these strings).
  const names = Object.entries(config.label_tiers).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  let best = null;
  for (const label of labels) {
    for (const [name, tier] of names) {
      if (asciiLower(name) === asciiLower(label) && (!best || tier > best[1])) best = [name, tier];
    }
  }
  return best;
}

function describe(model, est) {
  return `\`${model.id}\` (est. ${usd(est, 3)} at `
    + `${usd(model.prices.input, 2)}/${usd(model.prices.output, 2)} per Mtok)`;
}

/** Dollars from µ$: at least `minDecimals` decimals, more when the amount needs them. */
function usd(micro, minDecimals) {
  const whole = Math.floor(micro / 1_000_000);
  const frac = String(micro % 1_000_000).padStart(6, '0');
  const keep = Math.max(frac.replace(/0+$/, '').length, Math.min(minDecimals, 6));
  return keep === 0 ? `$${whole}` : `$${whole}.${frac.slice(0, keep)}`;
}
