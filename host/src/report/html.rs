//! The report as one self-contained HTML file: the text report's sections as tables and
//! paragraphs, the report's JSON embedded once (`<script type="application/json"
//! id="report-data">`, the same document `gaffer report --format json` prints), and charts
//! drawn by Apache ECharts (inlined, see [`super::assets`]): spend over time against the day and
//! month caps, the distribution of cost per task, the model mix, cost by phase and cost against
//! outcome. It opens anywhere, offline.
//!
//! The charts are split so that a live page can re-draw them: [`chart_data`] is their data as
//! JSON, [`CHARTS_JS`] defines `gafferCharts(container, data)` which draws (or updates) every
//! chart inside `container`, and [`charts`] is the containers, the data and the call. None of
//! them includes the ECharts library itself: a page includes
//! [`super::assets::echarts_script`] once, in its `<head>`.
//!
//! The replay frontier ([`frontier_page`]) is a page of its own: every policy replayed as a
//! point of cost against tasks solved, the Pareto frontier drawn, the chosen policy marked.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::assets::echarts_script;
use super::ledger_report::{
    CertaintySplit, GroupLine, Report, column_dollars, describe_agent_figure, describe_human,
    describe_projection, exact_dollars, phase_order,
};
use crate::ledger::{MicroUsd, format_dollars};

/// Caps drawn on the spend chart, µ$; `None` is a cap that is not configured (not drawn).
#[derive(Debug, Clone, Copy, Default)]
pub struct CapLines {
    /// The day cap.
    pub per_day: Option<MicroUsd>,
    /// The month cap.
    pub per_month: Option<MicroUsd>,
}

/// Text for HTML, escaped (element content and quoted attribute values alike).
pub(crate) fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A value as JSON that is safe inside a `<script>` element: `<`, `>` and `&` are written as
/// `\u003c`, `\u003e`, `\u0026` (they only ever occur inside JSON strings, where those escapes
/// mean the same), so no title or label can close the element or open a comment.
pub fn script_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "null".to_string())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Dollars as a float, for chart coordinates only (sums are made in µ$).
fn usd(amount: MicroUsd) -> f64 {
    amount.get() as f64 / 1e6
}

/// Days since 1970-01-01 of `YYYY-MM-DD` (proleptic Gregorian), if it is one.
fn day_number(day: &str) -> Option<i64> {
    let mut parts = day.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `YYYY-MM-DD` of a day number.
fn day_text(z: i64) -> String {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Longest span of days the spend chart fills in with the days without spend.
const MAX_FILLED_DAYS: i64 = 731;

/// The report's days from the first to the last, the days without spend at zero (when the
/// days are dates and the span is not absurd; otherwise the days with spend only).
fn every_day(days: &[(String, MicroUsd)]) -> Vec<(String, MicroUsd)> {
    let numbered: Option<Vec<(i64, MicroUsd)>> = days
        .iter()
        .map(|(d, v)| day_number(d).map(|n| (n, *v)))
        .collect();
    let Some(numbered) = numbered else {
        return days.to_vec();
    };
    let (Some(first), Some(last)) = (
        numbered.iter().map(|(n, _)| *n).min(),
        numbered.iter().map(|(n, _)| *n).max(),
    ) else {
        return Vec::new();
    };
    if last - first > MAX_FILLED_DAYS {
        return days.to_vec();
    }
    let mut by_day: BTreeMap<i64, MicroUsd> = BTreeMap::new();
    for (n, v) in numbered {
        let slot = by_day.entry(n).or_default();
        *slot = slot.saturating_add(v);
    }
    (first..=last)
        .map(|n| (day_text(n), by_day.get(&n).copied().unwrap_or_default()))
        .collect()
}

/// The spend chart: per day and month to date, against the caps.
fn spend_data(r: &Report, caps: CapLines) -> Value {
    let days = every_day(&r.days);
    let mut month = String::new();
    let mut running = MicroUsd::ZERO;
    let mut to_date = Vec::new();
    for (day, v) in &days {
        let this = day.get(..7).unwrap_or(day);
        if this != month {
            month = this.to_string();
            running = MicroUsd::ZERO;
        }
        running = running.saturating_add(*v);
        to_date.push(usd(running));
    }
    let cap_note = |cap: Option<MicroUsd>, name: &str, how: &str| match cap {
        Some(c) => format!(
            "the {name} cap ({}) is the {how} dashed line",
            format_dollars(c)
        ),
        None => format!("no {name} cap is configured, so none is drawn"),
    };
    let note = format!(
        "Bars: spend per day (left axis); line: spend so far in the month (right axis); {}; {}.",
        cap_note(caps.per_day, "day", "red"),
        cap_note(caps.per_month, "month", "purple")
    );
    json!({
        "title": "Spend over time, against the day and month caps",
        "days": days.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        "per_day": days.iter().map(|(_, v)| usd(*v)).collect::<Vec<_>>(),
        "month_to_date": to_date,
        "day_cap": caps.per_day.map(usd),
        "month_cap": caps.per_month.map(usd),
        "note": note,
    })
}

/// Most bins of the cost-per-task histogram.
const MAX_BINS: u64 = 10;

/// A bin width of 1, 2, 2.5 or 5 × 10ⁿ µ$ giving at most [`MAX_BINS`] bins up to `max`.
fn bin_width(max: u64) -> u64 {
    let mut magnitude: u64 = 1;
    loop {
        for mantissa in [2, 4, 5, 10] {
            // 2/2, 4/2, 5/2, 10/2: 1, 2, 2.5, 5 × magnitude, in halves to stay integral.
            let width = magnitude.saturating_mul(mantissa) / 2;
            if width > 0 && max / width < MAX_BINS {
                return width;
            }
        }
        magnitude = magnitude.saturating_mul(10);
        if magnitude == u64::MAX {
            return u64::MAX;
        }
    }
}

/// Decimals that show a multiple of `width` µ$ exactly (two at least).
fn decimals_for(width: u64) -> u32 {
    (2..=6)
        .find(|d| width.is_multiple_of(10u64.pow(6 - d)))
        .unwrap_or(6)
}

/// The cost-per-task histogram: bins of one nice width from $0, each with its tasks.
fn per_task_data(r: &Report) -> Value {
    let spent: Vec<(&str, u64)> = r
        .tasks
        .iter()
        .filter(|t| !t.attempts.is_empty() || !t.cost_micros.is_zero())
        .map(|t| (t.id.as_str(), t.cost_micros.get()))
        .collect();
    let max = spent.iter().map(|(_, c)| *c).max().unwrap_or(0);
    let width = bin_width(max);
    let count = (max / width + 1).min(MAX_BINS);
    let decimals = decimals_for(width);
    let fmt = |m: u64| {
        let text = crate::ledger::format_dollars_fixed(MicroUsd(m), decimals);
        text.trim_start_matches('$').to_string()
    };
    let bins: Vec<Value> = (0..count)
        .map(|i| {
            let from = i * width;
            let to = from.saturating_add(width);
            let tasks: Vec<&str> = spent
                .iter()
                .filter(|(_, c)| *c >= from && (*c < to || i + 1 == count))
                .map(|(id, _)| *id)
                .collect();
            json!({
                "label": format!("${}–{}", fmt(from), fmt(to)),
                "from": usd(MicroUsd(from)),
                "to": usd(MicroUsd(to)),
                "count": tasks.len(),
                "tasks": tasks,
            })
        })
        .collect();
    json!({
        "title": "Cost per task: how many tasks in each band",
        "bins": bins,
        "note": format!(
            "{} task{} with spend, in bands of {} from $0 (queued tasks without an attempt left out).",
            spent.len(),
            if spent.len() == 1 { "" } else { "s" },
            format_dollars(MicroUsd(width))
        ),
    })
}

/// The model mix: dollars per model, dearest first.
fn models_data(r: &Report) -> Value {
    let mut models: Vec<&GroupLine> = r.models.iter().collect();
    models.sort_by(|a, b| b.cost_micros.cmp(&a.cost_micros).then(a.name.cmp(&b.name)));
    let total = r.models.iter().map(|m| m.cost_micros).sum::<MicroUsd>();
    let rows: Vec<Value> = models
        .iter()
        .map(|m| {
            json!({
                "name": if m.name.is_empty() { "(no model)" } else { m.name.as_str() },
                "dollars": usd(m.cost_micros),
                "share": if total.is_zero() { 0.0 } else { m.cost_micros.as_f64() / total.as_f64() },
                "attempts": m.attempts,
                "accepted": m.acceptance_rate,
            })
        })
        .collect();
    json!({
        "title": "Model mix: dollars per model",
        "rows": rows,
        "note": "Every dollar of the attempts routed to each model (the verifier's calls included), with its share of the total.",
    })
}

/// Dollars of a category split by model: categories in order, one series per model.
fn stacked(
    categories: &[String],
    cells: &BTreeMap<(String, String), MicroUsd>,
    attempts: &BTreeMap<String, u32>,
) -> (Vec<Value>, Vec<Value>) {
    let models: Vec<&String> = cells
        .keys()
        .map(|(_, m)| m)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let series = models
        .iter()
        .map(|m| {
            json!({
                "name": if m.is_empty() { "(no model)" } else { m.as_str() },
                "data": categories.iter().map(|c| {
                    usd(cells.get(&(c.clone(), (*m).clone())).copied().unwrap_or_default())
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let totals = categories
        .iter()
        .map(|c| {
            let total: MicroUsd = cells
                .iter()
                .filter(|((cat, _), _)| cat == c)
                .map(|(_, v)| *v)
                .sum();
            json!({
                "name": c,
                "dollars": usd(total),
                "attempts": attempts.get(c).copied().unwrap_or(0),
            })
        })
        .collect();
    (totals, series)
}

/// Cost by phase (the agent's phases, then the plugins' own calls by stage), by model.
fn phases_data(r: &Report) -> Value {
    let mut cells: BTreeMap<(String, String), MicroUsd> = BTreeMap::new();
    let mut calls: BTreeMap<String, u32> = BTreeMap::new();
    for a in r.tasks.iter().flat_map(|t| &t.attempts) {
        for (phase, spend) in &a.phases {
            let cell = cells.entry((phase.clone(), a.model.clone())).or_default();
            *cell = cell.saturating_add(spend.cost_micros);
            *calls.entry(phase.clone()).or_default() +=
                u32::try_from(spend.calls).unwrap_or(u32::MAX);
        }
    }
    let mut categories: Vec<String> = calls.keys().cloned().collect();
    categories.sort_by_key(|p| (phase_order(p), p.clone()));
    let (rows, series) = stacked(&categories, &cells, &calls);
    json!({
        "title": "Cost by phase: where the tokens went",
        "rows": rows,
        "series": series,
        "count_name": "tries",
        "count_one": "try",
        "note": "The agent's phases (read-task, explore, implement, iterate), then the plugins' own model calls by stage (check, verify, route); split by the model each attempt was routed to.",
    })
}

/// The order of attempt outcomes on the outcome chart (others after, by name).
const OUTCOME_ORDER: [&str; 10] = [
    "approved",
    "rejected: tests",
    "rejected: hooks",
    "rejected: verifier",
    "rejected: other",
    "conflict",
    "needs-human",
    "budget-exhausted",
    "failed",
    "interrupted",
];

/// Cost against outcome: the attempts' dollars by how each attempt ended (a rejection by its
/// cause), by model.
fn outcomes_data(r: &Report) -> Value {
    let mut cells: BTreeMap<(String, String), MicroUsd> = BTreeMap::new();
    let mut attempts: BTreeMap<String, u32> = BTreeMap::new();
    for a in r.tasks.iter().flat_map(|t| &t.attempts) {
        let key = match (a.outcome.as_str(), a.rejected_by) {
            ("rejected", Some(cause)) => format!("rejected: {}", cause.name()),
            (outcome, _) => outcome.to_string(),
        };
        let cell = cells.entry((key.clone(), a.model.clone())).or_default();
        *cell = cell.saturating_add(a.cost_micros);
        *attempts.entry(key).or_default() += 1;
    }
    let mut categories: Vec<String> = attempts.keys().cloned().collect();
    categories.sort_by_key(|c| {
        (
            OUTCOME_ORDER
                .iter()
                .position(|o| o == c)
                .unwrap_or(usize::MAX),
            c.clone(),
        )
    });
    let (rows, series) = stacked(&categories, &cells, &attempts);
    json!({
        "title": "Cost against outcome: dollars by how each attempt ended",
        "rows": rows,
        "series": series,
        "count_name": "attempts",
        "count_one": "attempt",
        "note": "Every attempt's dollars by its outcome (a rejection by what rejected it), split by model: all but `approved` is spend that did not merge.",
    })
}

/// The charts' data, for [`CHARTS_JS`]'s `gafferCharts(container, data)`: one entry per chart
/// (`spend`, `per_task`, `models`, `phases`, `outcomes`), each with its title, note and
/// figures in dollars.
pub fn chart_data(r: &Report, caps: CapLines) -> Value {
    json!({
        "spend": spend_data(r, caps),
        "per_task": per_task_data(r),
        "models": models_data(r),
        "phases": phases_data(r),
        "outcomes": outcomes_data(r),
    })
}

/// The charts' script: defines `gafferCharts(container, data)`, which draws every chart of
/// [`chart_data`]'s `data` into its `<figure data-chart="…">` inside `container` (creating the
/// figures it does not find) and re-draws them in place when called again with fresh data.
/// Needs ECharts loaded first ([`super::assets::echarts_script`]); without it, it says so in
/// each figure instead.
pub const CHARTS_JS: &str = r##"function gafferCharts(container, data) {
  if (!container || !data) { return; }
  var KEYS = ['spend', 'per_task', 'models', 'phases', 'outcomes'];
  var RED = '#c0392b', PURPLE = '#8e44ad';
  var PALETTE = ['#3a7ca5', '#e76f51', '#2a9d8f', '#e9c46a', '#6d597a', '#8ab17d', '#b56576', '#264653'];
  // One colour per model across every chart: the models' names in order, each its palette slot.
  var MODEL_NAMES = [];
  ['models', 'phases', 'outcomes'].forEach(function (key) {
    var spec = data[key];
    if (!spec) { return; }
    (spec.rows || []).concat(spec.series || []).forEach(function (r) {
      if (key === 'models' || (spec.series || []).indexOf(r) >= 0) {
        if (MODEL_NAMES.indexOf(r.name) < 0) { MODEL_NAMES.push(r.name); }
      }
    });
  });
  MODEL_NAMES.sort();
  function modelColor(name) {
    var i = MODEL_NAMES.indexOf(name);
    return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
  }
  // Dollars with the decimals a step of `step` needs (two at least, six at most).
  function places(step) {
    var d = 2;
    while (d < 6 && Math.abs(Math.round(step * Math.pow(10, d)) - step * Math.pow(10, d)) > 1e-6) { d++; }
    return d;
  }
  function money(v, d) { return '$' + Number(v).toFixed(d === undefined ? 4 : d); }
  // A value axis from 0 to a round maximum at or above `top`, in 3 to 5 round steps, so
  // that no tick label sits next to an odd maximum.
  function axis(top) {
    if (!(top > 0)) { top = 1e-6; }
    var mag = Math.pow(10, Math.floor(Math.log10(top)));
    var choices = [[1, 5], [1.5, 3], [2, 4], [2.5, 5], [3, 3], [4, 4], [5, 5], [6, 3], [8, 4], [10, 5]];
    for (var i = 0; i < choices.length; i++) {
      var max = choices[i][0] * mag;
      if (max >= top * 0.9999999) {
        return { min: 0, max: max, interval: max / choices[i][1] };
      }
    }
    return { min: 0, max: 10 * mag, interval: 2 * mag };
  }
  function moneyAxis(top, extra) {
    var a = axis(top);
    var d = places(a.interval);
    var out = {
      type: 'value', min: a.min, max: a.max, interval: a.interval,
      axisLabel: { formatter: function (v) { return money(v, d); } },
      splitLine: { lineStyle: { color: '#eee' } }
    };
    for (var k in (extra || {})) { out[k] = extra[k]; }
    return out;
  }
  function maxOf(list) { return list.reduce(function (m, v) { return Math.max(m, v); }, 0); }
  function capLine(value, name, position, color) {
    return {
      symbol: 'none', silent: false,
      lineStyle: { color: color, type: 'dashed', width: 2 },
      label: { formatter: name + ' ' + money(value, places(value)), position: position, color: color, fontWeight: 'bold' },
      data: [{ yAxis: value, name: name }]
    };
  }
  var build = {
    spend: function (s) {
      var dayTop = Math.max(maxOf(s.per_day), s.day_cap || 0);
      var monthTop = Math.max(maxOf(s.month_to_date), s.month_cap || 0);
      var bars = { name: 'spend per day', type: 'bar', data: s.per_day, itemStyle: { color: '#3a7ca5' }, barMaxWidth: 48 };
      var line = { name: 'month to date', type: 'line', yAxisIndex: 1, data: s.month_to_date, step: false, symbolSize: 6, itemStyle: { color: PURPLE } };
      if (s.day_cap != null) { bars.markLine = capLine(s.day_cap, 'day cap', 'insideStartTop', RED); }
      if (s.month_cap != null) { line.markLine = capLine(s.month_cap, 'month cap', 'insideEndTop', PURPLE); }
      return {
        legend: { top: 0, data: ['spend per day', 'month to date'] },
        tooltip: { trigger: 'axis', valueFormatter: function (v) { return money(v, 6); } },
        grid: { left: 80, right: 80, top: 56, bottom: 40 },
        xAxis: { type: 'category', data: s.days, axisLabel: { hideOverlap: true }, axisTick: { alignWithLabel: true } },
        yAxis: [
          moneyAxis(dayTop, { name: 'per day', nameTextStyle: { align: 'right' } }),
          moneyAxis(monthTop, { name: 'month to date', nameTextStyle: { align: 'left' }, splitLine: { show: false } })
        ],
        series: [bars, line]
      };
    },
    per_task: function (s) {
      var counts = s.bins.map(function (b) { return b.count; });
      var a = axis(Math.max(1, maxOf(counts)));
      var step = Math.max(1, Math.ceil(a.interval));
      return {
        tooltip: {
          trigger: 'item',
          formatter: function (p) {
            var b = s.bins[p.dataIndex];
            return b.label + ': ' + b.count + ' task' + (b.count === 1 ? '' : 's') +
              (b.tasks.length ? ' (' + b.tasks.slice(0, 12).join(', ') + (b.tasks.length > 12 ? ', …' : '') + ')' : '');
          }
        },
        grid: { left: 60, right: 30, top: 30, bottom: 50 },
        xAxis: { type: 'category', data: s.bins.map(function (b) { return b.label; }), name: 'cost of the task', nameLocation: 'middle', nameGap: 30, axisLabel: { hideOverlap: true } },
        yAxis: { type: 'value', name: 'tasks', min: 0, max: Math.ceil(a.max / step) * step, interval: step, minInterval: 1 },
        series: [{ name: 'tasks', type: 'bar', data: counts, barCategoryGap: '10%', itemStyle: { color: '#3a7ca5' }, label: { show: true, position: 'top', formatter: function (p) { return p.value ? p.value : ''; } } }]
      };
    },
    models: function (s) {
      var rows = s.rows.slice().reverse();
      var top = maxOf(rows.map(function (r) { return r.dollars; }));
      return {
        tooltip: {
          trigger: 'item',
          formatter: function (p) {
            var r = rows[p.dataIndex];
            return r.name + ': ' + money(r.dollars, 6) + ' (' + (r.share * 100).toFixed(1) + '%) · ' + r.attempts + ' attempts, ' + (r.accepted * 100).toFixed(0) + '% accepted';
          }
        },
        grid: { left: 20, right: 150, top: 20, bottom: 30, containLabel: true },
        xAxis: moneyAxis(top),
        yAxis: { type: 'category', data: rows.map(function (r) { return r.name; }), axisLabel: { hideOverlap: true } },
        series: [{
          name: 'dollars', type: 'bar', barMaxWidth: 36,
          data: rows.map(function (r) { return { value: r.dollars, itemStyle: { color: modelColor(r.name) } }; }),
          label: { show: true, position: 'right', formatter: function (p) { var r = rows[p.dataIndex]; return money(r.dollars) + ' · ' + (r.share * 100).toFixed(0) + '%'; } }
        }]
      };
    },
    stacked: function (s) {
      var rows = s.rows.slice().reverse();
      var names = rows.map(function (r) { return r.name; });
      var top = maxOf(rows.map(function (r) { return r.dollars; }));
      return {
        legend: { type: 'scroll', top: 0, data: s.series.map(function (x) { return x.name; }) },
        tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, valueFormatter: function (v) { return money(v, 6); } },
        grid: { left: 20, right: 110, top: 40, bottom: 30, containLabel: true },
        xAxis: moneyAxis(top),
        yAxis: { type: 'category', data: names, axisLabel: { hideOverlap: true } },
        series: s.series.map(function (x, i) {
          var last = i === s.series.length - 1;
          return {
            name: x.name, type: 'bar', stack: 'all', barMaxWidth: 32,
            itemStyle: { color: modelColor(x.name) },
            data: x.data.slice().reverse(),
            label: last ? {
              show: true, position: 'right', color: '#222',
              formatter: function (p) { var r = rows[p.dataIndex]; return money(r.dollars) + ' · ' + r.attempts + ' ' + (r.attempts === 1 ? s.count_one : s.count_name); }
            } : { show: false }
          };
        })
      };
    }
  };
  build.phases = build.stacked;
  build.outcomes = build.stacked;
  KEYS.forEach(function (key) {
    var spec = data[key];
    if (!spec) { return; }
    var fig = container.querySelector('figure[data-chart="' + key + '"]');
    if (!fig) {
      fig = document.createElement('figure');
      fig.setAttribute('data-chart', key);
      fig.innerHTML = '<figcaption></figcaption><div class="chart" style="width:600px;height:340px"></div><p class="chart-note"></p>';
      container.appendChild(fig);
    }
    fig.querySelector('figcaption').textContent = spec.title;
    var note = fig.querySelector('.chart-note');
    note.textContent = spec.note || '';
    if (typeof echarts === 'undefined') {
      note.textContent = 'This chart needs Apache ECharts, which the page did not load. ' + (spec.note || '');
      return;
    }
    var el = fig.querySelector('.chart');
    var chart = echarts.getInstanceByDom(el) || echarts.init(el, null, { renderer: 'svg' });
    var option = build[key](spec);
    option.animation = false;
    option.textStyle = { fontFamily: 'system-ui, sans-serif' };
    chart.setOption(option, true);
    fig.setAttribute('data-drawn', 'yes');
  });
}
"##;

/// The keys of [`chart_data`], in the order the charts are shown.
const CHART_KEYS: [&str; 5] = ["spend", "per_task", "models", "phases", "outcomes"];

/// The charts of a report: their figures (captions and notes already in place), their data
/// as JSON and the call to `gafferCharts` — without the ECharts library, which the page
/// includes once (see [`super::assets::echarts_script`]).
pub fn charts(r: &Report, caps: CapLines) -> String {
    let data = chart_data(r, caps);
    let mut out = String::from("<div class=\"gaffer-charts\">\n");
    for key in CHART_KEYS {
        let spec = &data[key];
        out.push_str(&format!(
            "<figure data-chart=\"{key}\"><figcaption>{}</figcaption>\
             <div class=\"chart\" style=\"width:600px;height:340px\"></div>\
             <p class=\"chart-note\">{}</p></figure>\n",
            esc(spec["title"].as_str().unwrap_or_default()),
            esc(spec["note"].as_str().unwrap_or_default()),
        ));
    }
    out.push_str("</div>\n");
    out.push_str(&format!(
        "<script type=\"application/json\" class=\"gaffer-chart-data\">{}</script>\n\
         <script>{CHARTS_JS}\n(function () {{\n  var data = document.currentScript.previousElementSibling;\n  \
         gafferCharts(data.previousElementSibling, JSON.parse(data.textContent));\n}})();</script>\n",
        script_json(&data)
    ));
    out
}

/// A dollar cell of a table: the amount to four decimals, its µ$ in `data-micros`.
fn money_cell(amount: MicroUsd) -> String {
    format!(
        "<td class=\"num\" data-micros=\"{}\">{}</td>",
        amount.get(),
        column_dollars(amount)
    )
}

/// The cells of a certainty split: measured, estimated, overrun, calls, tries.
fn certainty_cells(c: &CertaintySplit) -> String {
    format!(
        "{}{}{}<td class=\"num\">{}</td><td class=\"num\">{}</td>",
        money_cell(c.measured_micros),
        money_cell(c.estimated_micros),
        money_cell(c.overrun_micros),
        c.calls,
        c.tries
    )
}

const CERTAINTY_HEADS: &str =
    "<th>measured</th><th>estimated</th><th>overrun</th><th>calls</th><th>tries</th>";

/// The tasks table, each task followed by its attempts (model, outcome and what rejected it,
/// cost, fuel, time, phases).
fn tasks_table(r: &Report) -> String {
    let mut rows = String::new();
    for t in &r.tasks {
        rows.push_str(&format!(
            "<tr class=\"task\" data-task=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td>{}</td>{}{}<td class=\"num\">{}</td>{}<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            esc(&t.title),
            esc(&t.labels.join(", ")),
            t.state,
            money_cell(t.cost_micros),
            certainty_cells(&t.certainty),
            t.attempts.len(),
            money_cell(t.verifier_micros),
            t.turns,
            t.rejections.tests,
            t.rejections.hooks,
            t.rejections.verifier,
            t.rejections.other,
            id = esc(&t.id),
        ));
        for a in &t.attempts {
            let mut phases: Vec<_> = a.phases.iter().collect();
            phases.sort_by_key(|(p, _)| phase_order(p));
            let phases: Vec<String> = phases
                .iter()
                .map(|(p, sp)| format!("{} {}", esc(p), column_dollars(sp.cost_micros)))
                .collect();
            let outcome = match a.rejected_by {
                Some(cause) => format!("{} ({})", a.outcome, cause.name()),
                None => a.outcome.clone(),
            };
            let agent = a
                .implementer
                .as_ref()
                .map(|name| format!(" · {}", esc(&describe_agent_figure(name, a))))
                .unwrap_or_default();
            rows.push_str(&format!(
                "<tr class=\"attempt\" data-task=\"{}\" data-attempt=\"{}\"><td></td><td colspan=\"3\">attempt {} · {} · <span class=\"outcome\">{}</span> · run {}</td>{}\
                 <td colspan=\"13\">fuel {} · {} ms · {} turns · {}{agent}</td></tr>\n",
                esc(&t.id),
                a.number,
                a.number,
                esc(&a.model),
                esc(&outcome),
                esc(&a.run),
                money_cell(a.cost_micros),
                a.fuel,
                a.wall_ms,
                a.turns,
                phases.join(", "),
            ));
        }
    }
    format!(
        "<h2>Tasks and their attempts</h2>\n<table id=\"tasks\"><tr><th>task</th><th>title</th><th>labels</th><th>state</th><th>cost</th>{CERTAINTY_HEADS}<th>attempts</th><th>verifier</th><th>turns</th><th>rejected: tests</th><th>hooks</th><th>verifier</th><th>other</th></tr>\n{rows}</table>\n"
    )
}

/// A models or labels table.
fn groups_table(id: &str, heading: &str, first: &str, groups: &[GroupLine]) -> String {
    let mut rows = String::new();
    for g in groups {
        rows.push_str(&format!(
            "<tr data-name=\"{name}\"><td>{name}</td><td class=\"num\">{}</td><td class=\"num\">{:.0}%</td>{}<td class=\"num\">{}</td><td class=\"num\">{}</td>{}</tr>\n",
            g.attempts,
            g.acceptance_rate * 100.0,
            money_cell(g.cost_micros),
            g.merged_tasks,
            g.cost_per_merged_micros.map(column_dollars).unwrap_or_else(|| "-".into()),
            certainty_cells(&g.certainty),
            name = esc(&g.name),
        ));
    }
    format!(
        "<h2>{heading}</h2>\n<table id=\"{id}\"><tr><th>{first}</th><th>attempts</th><th>accepted</th><th>cost</th><th>merged</th><th>per merged task</th>{CERTAINTY_HEADS}</tr>\n{rows}</table>\n"
    )
}

/// The runs table.
fn runs_table(r: &Report) -> String {
    let mut rows = String::new();
    for run in &r.runs {
        rows.push_str(&format!(
            "<tr data-run=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>{}{}</tr>\n",
            esc(&run.first_day),
            esc(&run.last_day),
            run.tasks,
            money_cell(run.cost_micros),
            certainty_cells(&run.certainty),
            id = esc(&run.run),
        ));
    }
    format!(
        "<h2>Runs</h2>\n<table id=\"runs\"><tr><th>run</th><th>first day</th><th>last day</th><th>tasks</th><th>cost</th>{CERTAINTY_HEADS}</tr>\n{rows}</table>\n"
    )
}

/// External agents: the ledger's figure for their calls beside their own (nothing when no
/// external agent implemented an attempt).
fn agents_table(r: &Report) -> String {
    if r.agents.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    for g in &r.agents {
        rows.push_str(&format!(
            "<tr data-agent=\"{name}\"><td>{name}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>{}{}{}</tr>\n",
            g.attempts,
            g.with_figure,
            money_cell(g.ledger_micros),
            money_cell(g.figure_micros),
            money_cell(g.ledger_all_micros),
            name = esc(&g.implementer),
        ));
    }
    format!(
        "<h2>External agents</h2>\n<p>The ledger's figure for each agent's own model calls beside the figure the agent gave (Claude Code's <code>total_cost_usd</code>), over the attempts where it gave one.</p>\n\
         <table id=\"agents\"><tr><th>agent</th><th>attempts</th><th>with a figure</th><th>ledger</th><th>own figure</th><th>ledger, all attempts</th></tr>\n{rows}</table>\n"
    )
}

/// Cost by phase across every attempt, as a table (the chart's figures to the µ$).
fn phases_table(r: &Report) -> String {
    let mut phases: BTreeMap<String, (u64, u64, u64, MicroUsd)> = BTreeMap::new();
    for a in r.tasks.iter().flat_map(|t| &t.attempts) {
        for (p, sp) in &a.phases {
            let e = phases.entry(p.clone()).or_default();
            e.0 += sp.calls;
            e.1 += sp.input + sp.cache_read + sp.cache_write;
            e.2 += sp.output;
            e.3 = e.3.saturating_add(sp.cost_micros);
        }
    }
    let mut order: Vec<_> = phases.into_iter().collect();
    order.sort_by_key(|(p, _)| (phase_order(p), p.clone()));
    let rows: String = order
        .iter()
        .map(|(p, (calls, input, output, cost))| {
            format!(
                "<tr data-phase=\"{p}\"><td>{p}</td><td class=\"num\">{calls}</td><td class=\"num\">{input}</td><td class=\"num\">{output}</td>{}</tr>\n",
                money_cell(*cost),
                p = esc(p)
            )
        })
        .collect();
    format!(
        "<h2>Cost by phase</h2>\n<table id=\"phases\"><tr><th>phase</th><th>tries</th><th>input tokens</th><th>output tokens</th><th>cost</th></tr>\n{rows}</table>\n"
    )
}

/// How sure each dollar is, the verifier's cost and the rejections by cause.
fn certainty_section(r: &Report) -> String {
    let c = &r.certainty;
    format!(
        "<h2>How sure each dollar is</h2>\n\
         <p id=\"certainty\">How sure: measured <b data-micros=\"{}\">{}</b> + estimated <b data-micros=\"{}\">{}</b> \
         + overrun <b data-micros=\"{}\">{}</b> = {} (the ledger, to the µ$) · {} calls in {} tries; \
         estimated tries: {} without usage, {} recovered after a crash; overrun tries: {}; \
         free tries (not billed): {}{}</p>\n\
         <h2>The verifier and rejections</h2>\n\
         <p id=\"verifier\">The verifier's own model calls: <b data-micros=\"{}\">{}</b> of the total.</p>\n\
         <table id=\"rejections\"><tr><th>rejected by</th><th>attempts</th></tr>\
         <tr data-cause=\"tests\"><td>tests</td><td class=\"num\">{}</td></tr>\
         <tr data-cause=\"hooks\"><td>hooks</td><td class=\"num\">{}</td></tr>\
         <tr data-cause=\"verifier\"><td>the verifier</td><td class=\"num\">{}</td></tr>\
         <tr data-cause=\"other\"><td>other</td><td class=\"num\">{}</td></tr></table>\n",
        c.measured_micros.get(),
        exact_dollars(c.measured_micros),
        c.estimated_micros.get(),
        exact_dollars(c.estimated_micros),
        c.overrun_micros.get(),
        exact_dollars(c.overrun_micros),
        exact_dollars(r.total_micros),
        c.calls,
        c.tries,
        c.usage_missing_tries,
        c.recovered_tries,
        c.overrun_tries,
        c.unbilled_tries,
        if r.open_reserved_micros.is_zero() {
            String::new()
        } else {
            format!(
                "; held now in open reservations, not charged: <b id=\"open-reserved\" data-micros=\"{}\">{}</b>",
                r.open_reserved_micros.get(),
                exact_dollars(r.open_reserved_micros)
            )
        },
        r.verifier_micros.get(),
        column_dollars(r.verifier_micros),
        r.rejections.tests,
        r.rejections.hooks,
        r.rejections.verifier,
        r.rejections.other,
    )
}

/// Where agents fail, the projection (or why none) and the comparison with a person.
fn outlook_section(r: &Report) -> String {
    let hardest = if r.hardest.is_empty() {
        "<p id=\"hardest\">Where agents fail: no task has cost anything yet.</p>".to_string()
    } else {
        format!(
            "<p id=\"hardest\">Where agents fail (most dollars, most attempts): {}{}.</p>",
            esc(&r.hardest.join(", ")),
            if r.hardest_labels.is_empty() {
                String::new()
            } else {
                format!(" — shared labels: {}", esc(&r.hardest_labels.join(", ")))
            }
        )
    };
    let projection = match &r.projection {
        Some(p) => format!(
            "<p id=\"projection\" data-thin=\"{}\">{}.</p>",
            p.thin,
            esc(&describe_projection(p))
        ),
        None => {
            "<p id=\"projection\" data-thin=\"true\">No projection: no task has finished yet.</p>"
                .to_string()
        }
    };
    let human = match &r.human {
        Some(h) => {
            let lines: Vec<String> = describe_human(h).iter().map(|l| esc(l)).collect();
            format!("<p id=\"human\">{}.</p>", lines.join(".<br>"))
        }
        None => "<p id=\"human\">No comparison with a person: no hourly rate is configured \
                 ([economics] hourly_rate, or --hourly-rate).</p>"
            .to_string(),
    };
    format!(
        "<h2>Where agents fail</h2>\n{hardest}\n<h2>The month ahead</h2>\n{projection}\n\
         <h2>Against a person</h2>\n{human}\n"
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1400px}\
table{border-collapse:collapse;margin:1rem 0}td,th{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left}\
.num{text-align:right;font-variant-numeric:tabular-nums}tr.attempt td{color:#555;font-size:.9em;border-bottom:1px dotted #eee}\
.gaffer-charts{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0;padding:.5rem;border:1px solid #eee;border-radius:6px}\
figcaption{font-weight:600;margin-bottom:.25rem}.chart-note{font-size:.85em;color:#555;max-width:600px;margin:.25rem 0}\
.big{font-size:1.4rem}";

/// The whole page: the headline, the charts, then every section of the text report, with the
/// report's JSON embedded (`#report-data`) as `gaffer report --format json` prints it.
pub fn render(r: &Report, caps: CapLines, title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>{STYLE}</style>\n{echarts}\n</head>\n\
         <body><h1>{title}</h1>\n\
         <p class=\"big\">Spent <b id=\"total\" data-micros=\"{total}\">{total_usd}</b> · <b id=\"merged\">{merged}</b> merged · \
         <b id=\"unmerged\" data-micros=\"{unmerged}\">{unmerged_usd}</b> ({share:.1}%) on attempts that did not merge</p>\n\
         {charts}\n{certainty}\n{phases}\n{outlook}\n{tasks}\n{agents}{models}\n{labels}\n{runs}\n\
         <script type=\"application/json\" id=\"report-data\">{data}</script>\n\
         </body></html>\n",
        title = esc(title),
        echarts = echarts_script(),
        total = r.total_micros.get(),
        total_usd = format_dollars(r.total_micros),
        merged = r.merged,
        unmerged = r.unmerged_micros.get(),
        unmerged_usd = column_dollars(r.unmerged_micros),
        share = r.unmerged_share * 100.0,
        charts = charts(r, caps),
        certainty = certainty_section(r),
        phases = phases_table(r),
        outlook = outlook_section(r),
        tasks = tasks_table(r),
        agents = agents_table(r),
        models = groups_table("models", "Models", "model", &r.models),
        labels = groups_table("labels", "Labels", "label", &r.labels),
        runs = runs_table(r),
        data = script_json(r),
    )
}

/// One policy of a replay, as a point of the frontier page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FrontierPoint {
    /// The policy's name (a cascade's models, a single model, `oracle`, ...).
    pub name: String,
    /// Everything it spent, µ$.
    pub cost_micros: MicroUsd,
    /// Tasks it solved.
    pub solved: u32,
    /// Tasks replayed.
    pub tasks: u32,
    /// On the Pareto frontier of cost against tasks solved.
    pub frontier: bool,
    /// The policy chosen (marked on the plot).
    pub chosen: bool,
}

/// Mark the points no other point beats: none solves at least as many for less, or more for
/// no more.
pub fn mark_frontier(points: &mut [FrontierPoint]) {
    let beaten: Vec<bool> = points
        .iter()
        .map(|p| {
            points.iter().any(|q| {
                (q.solved >= p.solved && q.cost_micros < p.cost_micros)
                    || (q.solved > p.solved && q.cost_micros <= p.cost_micros)
            })
        })
        .collect();
    for (p, beaten) in points.iter_mut().zip(beaten) {
        p.frontier = !beaten;
    }
}

/// The frontier's script: draws `#frontier` from `#frontier-data`.
const FRONTIER_JS: &str = r##"(function () {
  var points = JSON.parse(document.getElementById('frontier-data').textContent);
  var el = document.getElementById('frontier');
  if (typeof echarts === 'undefined' || !el) { return; }
  function money(v) { return '$' + Number(v).toFixed(4); }
  function point(p) { return { value: [p.cost_micros / 1e6, p.solved], name: p.name, p: p }; }
  var others = points.filter(function (p) { return !p.frontier && !p.chosen; }).map(point);
  var front = points.filter(function (p) { return p.frontier; })
    .sort(function (a, b) { return a.cost_micros - b.cost_micros || b.solved - a.solved; }).map(point);
  var chosen = points.filter(function (p) { return p.chosen; }).map(point);
  var chart = echarts.init(el, null, { renderer: 'svg' });
  chart.setOption({
    animation: false,
    textStyle: { fontFamily: 'system-ui, sans-serif' },
    legend: { top: 0, data: ['other policies', 'Pareto frontier', 'chosen'] },
    tooltip: {
      trigger: 'item',
      formatter: function (d) {
        var p = d.data.p;
        return p.name + '<br>cost ' + money(p.cost_micros / 1e6) + '<br>solved ' + p.solved + ' of ' + p.tasks +
          (p.frontier ? '<br>on the frontier' : '') + (p.chosen ? '<br><b>chosen</b>' : '');
      }
    },
    grid: { left: 80, right: 40, top: 50, bottom: 60 },
    xAxis: { type: 'value', name: 'cost (dollars, everything spent)', nameLocation: 'middle', nameGap: 34, scale: true,
      axisLabel: { formatter: function (v) { return '$' + v; }, hideOverlap: true } },
    yAxis: { type: 'value', name: 'tasks solved', nameLocation: 'middle', nameGap: 50, scale: true, minInterval: 1 },
    series: [
      { name: 'other policies', type: 'scatter', data: others, symbolSize: 8, itemStyle: { color: '#9aa5b1', opacity: 0.7 } },
      { name: 'Pareto frontier', type: 'line', data: front, symbolSize: 8, itemStyle: { color: '#e76f51' }, lineStyle: { width: 2 } },
      { name: 'chosen', type: 'scatter', data: chosen, symbol: 'pin', symbolSize: 34, itemStyle: { color: '#2a9d8f' },
        label: { show: true, position: 'top', formatter: function (d) { return d.data.p.name; }, color: '#2a9d8f', fontWeight: 'bold' } }
    ]
  });
  el.setAttribute('data-drawn', 'yes');
})();
"##;

/// The replay as one self-contained HTML page: every policy a point of cost against tasks
/// solved (its tooltip names it, its cost and what it solved), the Pareto frontier as a line,
/// the chosen policy marked, and the points as a table below.
pub fn frontier_page(points: &[FrontierPoint], title: &str, basis: &str) -> String {
    let mut sorted: Vec<&FrontierPoint> = points.iter().filter(|p| p.frontier).collect();
    sorted.sort_by_key(|p| (p.cost_micros, std::cmp::Reverse(p.solved)));
    let rows: String = sorted
        .iter()
        .map(|p| {
            format!(
                "<tr{}><td>{}</td><td class=\"num\">{}</td><td class=\"num\" data-micros=\"{}\">{}</td></tr>\n",
                if p.chosen { " class=\"chosen\"" } else { "" },
                esc(&p.name),
                p.solved,
                p.cost_micros.get(),
                column_dollars(p.cost_micros)
            )
        })
        .collect();
    let chosen = points
        .iter()
        .find(|p| p.chosen)
        .map(|p| {
            format!(
                "<p id=\"chosen\">Chosen: <b>{}</b> — {} solved for {}.</p>",
                esc(&p.name),
                p.solved,
                column_dollars(p.cost_micros)
            )
        })
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>{STYLE}</style>\n{echarts}\n</head>\n<body><h1>{title}</h1>\n<p class=\"chart-note\">{basis}</p>\n\
         <figure data-chart=\"frontier\"><figcaption>Cost against tasks solved: {n} policies, {f} on the Pareto frontier</figcaption>\
         <div id=\"frontier\" class=\"chart\" style=\"width:1000px;height:600px\"></div>\
         <p class=\"chart-note\">Each point is a policy (hover for its name, cost and tasks solved); the line joins the Pareto frontier \
         (no policy solves more for less); the pin marks the chosen policy.</p></figure>\n{chosen}\n\
         <h2>The frontier</h2>\n<table id=\"frontier-table\"><tr><th>policy</th><th>solved</th><th>cost</th></tr>\n{rows}</table>\n\
         <script type=\"application/json\" id=\"frontier-data\">{data}</script>\n<script>{FRONTIER_JS}</script>\n</body></html>\n",
        title = esc(title),
        basis = esc(basis),
        echarts = echarts_script(),
        n = points.len(),
        f = sorted.len(),
        data = script_json(points),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_json_in_a_script_cannot_close_it() {
        let text = script_json(&json!({"title": "</script><script>alert(1)</script> & <!--"}));
        assert!(!text.contains('<') && !text.contains('>') && !text.contains('&'));
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["title"], "</script><script>alert(1)</script> & <!--");
    }

    #[test]
    fn html_days_without_spend_are_filled_in_across_months() {
        let days = vec![
            ("2025-01-30".to_string(), MicroUsd(1)),
            ("2025-02-02".to_string(), MicroUsd(2)),
        ];
        let all = every_day(&days);
        let names: Vec<&str> = all.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(
            names,
            ["2025-01-30", "2025-01-31", "2025-02-01", "2025-02-02"]
        );
        assert_eq!(all[3].1, MicroUsd(2));
        assert_eq!(day_text(day_number("2024-02-29").unwrap()), "2024-02-29");
    }

    #[test]
    fn html_bins_are_nice_and_few() {
        // $0.0213 at most: bands of $0.0025 (9 of them).
        assert_eq!(bin_width(21_300), 2_500);
        assert_eq!(decimals_for(2_500), 4);
        assert_eq!(bin_width(0), 1);
        assert_eq!(bin_width(90_000), 10_000);
        assert_eq!(bin_width(100_000), 20_000);
        for max in [1, 7, 99, 12_345, 999_999, 123_456_789] {
            assert!(max / bin_width(max) < MAX_BINS, "{max}");
        }
    }

    #[test]
    fn html_frontier_marks_the_unbeaten() {
        let p = |name: &str, cost: u64, solved: u32| FrontierPoint {
            name: name.into(),
            cost_micros: MicroUsd(cost),
            solved,
            tasks: 10,
            frontier: false,
            chosen: false,
        };
        let mut points = vec![p("a", 1, 1), p("b", 2, 1), p("c", 3, 5), p("d", 3, 4)];
        mark_frontier(&mut points);
        let on: Vec<&str> = points
            .iter()
            .filter(|p| p.frontier)
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(on, ["a", "c"]);
    }
}
