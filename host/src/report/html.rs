//! The report as one self-contained HTML file: tables and inline SVG charts (spend over time
//! against the caps, the distribution of cost per task, the model mix, cost against outcome).
//! No script, no external resource: it opens anywhere, offline.

use super::ledger_report::{
    CertaintySplit, Report, column_dollars, describe_human, describe_projection, exact_dollars,
};
use crate::ledger::{MicroUsd, format_dollars};
use crate::store::TaskState;

/// Caps drawn on the spend chart, µ$.
#[derive(Debug, Clone, Copy, Default)]
pub struct CapLines {
    pub per_day: Option<MicroUsd>,
    pub per_month: Option<MicroUsd>,
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 640.0;
const H: f64 = 240.0;
const PAD: f64 = 44.0;

fn frame(title: &str, body: &str) -> String {
    format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\">\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333\"/>\
         <line x1=\"{PAD}\" y1=\"10\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#333\"/>{body}</svg></figure>\n",
        esc(title),
        b = H - PAD,
        r = W - 10.0,
    )
}

/// Vertical bars with labels under them; `line` is a horizontal reference (a cap).
fn bars(
    title: &str,
    values: &[(String, f64)],
    line: Option<(f64, &str)>,
    unit: &dyn Fn(f64) -> String,
) -> String {
    let max = values
        .iter()
        .map(|(_, v)| *v)
        .chain(line.map(|(v, _)| v))
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let n = values.len().max(1) as f64;
    let slot = (W - PAD - 20.0) / n;
    let y = |v: f64| H - PAD - v / max * (H - PAD - 20.0);
    let mut body = String::new();
    for (i, (label, v)) in values.iter().enumerate() {
        let x = PAD + 5.0 + i as f64 * slot;
        body.push_str(&format!(
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#3a7ca5\" data-value=\"{v}\"><title>{}: {}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
            y(*v),
            (slot - 6.0).max(1.0),
            H - PAD - y(*v),
            esc(label),
            esc(&unit(*v)),
            x + slot / 2.0 - 3.0,
            H - PAD + 12.0,
            esc(label),
        ));
    }
    body.push_str(&format!(
        "<text x=\"4\" y=\"18\" font-size=\"9\">{}</text>",
        esc(&unit(max))
    ));
    if let Some((v, name)) = line {
        body.push_str(&format!(
            "<line x1=\"{PAD}\" y1=\"{yy:.1}\" x2=\"{r}\" y2=\"{yy:.1}\" stroke=\"#c0392b\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{r}\" y=\"{ty:.1}\" font-size=\"9\" text-anchor=\"end\" fill=\"#c0392b\">{name}</text>",
            yy = y(v),
            r = W - 10.0,
            ty = y(v) - 3.0,
            name = esc(name)
        ));
    }
    frame(title, &body)
}

fn dollars_f(v: f64) -> String {
    format_dollars(MicroUsd::from_f64(v))
}

/// The charts of a report, as SVG figures.
pub fn charts(r: &Report, caps: CapLines) -> String {
    let mut out = String::new();
    // Spend over time, day by day, against the day cap.
    let days: Vec<(String, f64)> = r
        .days
        .iter()
        .map(|(d, v)| (d.get(5..).unwrap_or(d).to_string(), v.as_f64()))
        .collect();
    let day_cap = caps.per_day.map(|c| (c.as_f64(), "day cap"));
    out.push_str(&bars(
        "Spend per day against the day cap",
        &days,
        day_cap,
        &dollars_f,
    ));
    // Distribution of cost per task: ten buckets up to the dearest task.
    let costs: Vec<u64> = r.tasks.iter().map(|t| t.cost_micros.get()).collect();
    let top = costs.iter().copied().max().unwrap_or(0).max(1);
    let mut buckets = [0u32; 10];
    for c in &costs {
        let i = ((*c as f64 / top as f64) * 10.0).floor().min(9.0) as usize;
        buckets[i] += 1;
    }
    let hist: Vec<(String, f64)> = buckets
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                format!("≤{}", dollars_f(top as f64 * (i + 1) as f64 / 10.0)),
                f64::from(*n),
            )
        })
        .collect();
    out.push_str(&bars(
        "Cost per task: how many tasks in each band",
        &hist,
        None,
        &|v| format!("{v:.0} tasks"),
    ));
    // Model mix by dollars.
    let mix: Vec<(String, f64)> = r
        .models
        .iter()
        .map(|m| (m.name.clone(), m.cost_micros.as_f64()))
        .collect();
    out.push_str(&bars(
        "Model mix: dollars per model",
        &mix,
        None,
        &dollars_f,
    ));
    // Cost against outcome.
    let mut by_state: std::collections::BTreeMap<String, f64> = Default::default();
    for t in &r.tasks {
        *by_state.entry(t.state.to_string()).or_default() += t.cost_micros.as_f64();
    }
    let states: Vec<(String, f64)> = by_state.into_iter().collect();
    out.push_str(&bars(
        "Cost against outcome: dollars by the state tasks ended in",
        &states,
        None,
        &dollars_f,
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

/// The whole page.
pub fn render(r: &Report, caps: CapLines, title: &str) -> String {
    let mut rows = String::new();
    for t in &r.tasks {
        rows.push_str(&format!(
            "<tr data-task=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td>{}</td>{}{}<td class=\"num\">{}</td>{}<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            esc(&t.title),
            esc(&t.labels.join(", ")),
            t.state,
            money_cell(t.cost_micros),
            certainty_cells(&t.certainty),
            t.attempts.len(),
            money_cell(t.verifier_micros),
            t.rejections.tests,
            t.rejections.hooks,
            t.rejections.verifier,
            t.rejections.other,
            id = esc(&t.id),
        ));
    }
    let mut models = String::new();
    for m in &r.models {
        models.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.0}%</td>{}{}<td class=\"num\">{}</td></tr>\n",
            esc(&m.name),
            m.attempts,
            m.acceptance_rate * 100.0,
            money_cell(m.cost_micros),
            certainty_cells(&m.certainty),
            m.cost_per_merged_micros.map(column_dollars).unwrap_or_else(|| "-".into()),
        ));
    }
    let mut runs = String::new();
    for run in &r.runs {
        runs.push_str(&format!(
            "<tr data-run=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>{}{}</tr>\n",
            esc(&run.first_day),
            esc(&run.last_day),
            run.tasks,
            money_cell(run.cost_micros),
            certainty_cells(&run.certainty),
            id = esc(&run.run),
        ));
    }
    let c = &r.certainty;
    let certainty = format!(
        "<p id=\"certainty\">How sure: measured <b data-micros=\"{}\">{}</b> + estimated <b data-micros=\"{}\">{}</b> \
         + overrun <b data-micros=\"{}\">{}</b> = {} (the ledger, to the µ$) · {} calls in {} tries; \
         estimated tries: {} without usage, {} recovered after a crash; overrun tries: {}; \
         free tries (not billed): {}{}</p>\n\
         <p id=\"verifier\">The verifier's own model calls: <b data-micros=\"{}\">{}</b> of the total. \
         Rejected attempts: {} by tests, {} by hooks, {} by the verifier, {} other.</p>",
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
                "; held now in open reservations, not charged: {}",
                exact_dollars(r.open_reserved_micros)
            )
        },
        r.verifier_micros.get(),
        column_dollars(r.verifier_micros),
        r.rejections.tests,
        r.rejections.hooks,
        r.rejections.verifier,
        r.rejections.other,
    );
    let projection = r
        .projection
        .as_ref()
        .map(|p| {
            format!(
                "<p id=\"projection\" data-thin=\"{}\">{}.</p>",
                p.thin,
                esc(&describe_projection(p))
            )
        })
        .unwrap_or_default();
    let human = r
        .human
        .as_ref()
        .map(|h| {
            let lines: Vec<String> = describe_human(h).iter().map(|l| esc(l)).collect();
            format!("<p id=\"human\">{}.</p>", lines.join(".<br>"))
        })
        .unwrap_or_default();
    let merged = r
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Merged)
        .count();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\
         body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;margin:1rem 0}}\
         td,th{{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left}}.num{{text-align:right;font-variant-numeric:tabular-nums}}\
         figure{{display:inline-block;margin:1rem}}figcaption{{font-weight:600}}.big{{font-size:1.4rem}}</style></head>\n\
         <body><h1>{title}</h1>\n\
         <p class=\"big\">Spent <b id=\"total\" data-micros=\"{total}\">{total_usd}</b> · <b id=\"merged\">{merged}</b> merged · \
         <b id=\"unmerged\" data-micros=\"{unmerged}\">{unmerged_usd}</b> ({share:.1}%) on attempts that did not merge</p>\n\
         {certainty}\n{projection}\n{human}\n{charts}\n\
         <h2>Tasks</h2><table id=\"tasks\"><tr><th>task</th><th>title</th><th>labels</th><th>state</th><th>cost</th>{heads}<th>attempts</th><th>verifier</th><th>rejected: tests</th><th>hooks</th><th>verifier</th><th>other</th></tr>\n{rows}</table>\n\
         <h2>Models</h2><table id=\"models\"><tr><th>model</th><th>attempts</th><th>accepted</th><th>cost</th>{heads}<th>per merged task</th></tr>\n{models}</table>\n\
         <h2>Runs</h2><table id=\"runs\"><tr><th>run</th><th>first day</th><th>last day</th><th>tasks</th><th>cost</th>{heads}</tr>\n{runs}</table>\n\
         </body></html>\n",
        title = esc(title),
        total = r.total_micros.get(),
        total_usd = format_dollars(r.total_micros),
        unmerged = r.unmerged_micros.get(),
        unmerged_usd = column_dollars(r.unmerged_micros),
        share = r.unmerged_share * 100.0,
        heads = CERTAINTY_HEADS,
        charts = charts(r, caps),
    )
}
