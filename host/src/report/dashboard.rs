//! `gaffer serve`: a local dashboard over the project's store — the live backlog, what is
//! running, spend against every cap, and the report's charts. One page, no external resource;
//! a small script polls `/api/status` and updates the live figures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::html::{CapLines, charts};
use super::ledger_report::column_dollars;
use super::ledger_report::{History, Options};
use crate::ledger::{Caps, MicroUsd, format_dollars};
use crate::store::{BacklogStore, CapLevel, LedgerStore, RowScope, Stage, StoreError, TaskState};

/// What the dashboard reads.
pub trait DashboardStore: BacklogStore + LedgerStore {}
impl<T: BacklogStore + LedgerStore> DashboardStore for T {}

/// The dashboard's state: the store and the caps to show spend against.
pub struct Dashboard {
    pub store: Arc<dyn DashboardStore>,
    pub caps: Caps,
    pub title: String,
}

/// Spend in one period (the day, the month, all time), settled and reserved apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CapSpend {
    /// Charged: settled calls.
    pub settled_micros: MicroUsd,
    /// Held now by open reservations (reserved, or on the wire), not charged yet.
    pub reserved_micros: MicroUsd,
    /// `settled_micros + reserved_micros`: what the cap counts against its limit.
    pub spent_micros: MicroUsd,
    pub cap_micros: Option<MicroUsd>,
    /// The cap less `spent_micros`.
    pub left_micros: Option<MicroUsd>,
}

impl CapSpend {
    fn new(settled: MicroUsd, reserved: MicroUsd, cap: Option<MicroUsd>) -> CapSpend {
        let spent = settled.saturating_add(reserved);
        CapSpend {
            settled_micros: settled,
            reserved_micros: reserved,
            spent_micros: spent,
            cap_micros: cap,
            left_micros: cap.map(|c| c.saturating_sub(spent)),
        }
    }
}

/// A running task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunningTask {
    pub id: String,
    pub title: String,
    pub stage: Option<Stage>,
    pub attempt: u32,
    pub worker: Option<String>,
    /// Charged to the task so far, every attempt.
    pub settled_micros: MicroUsd,
    /// Held now by the task's open reservations.
    pub reserved_micros: MicroUsd,
}

/// The live figures `gaffer status` prints and the dashboard shows: tasks by state, spend
/// (settled and reserved apart) for the day, the month and all time against the caps, what is
/// running.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Every state, in the order tasks move through them, with its count.
    pub tasks: BTreeMap<&'static str, usize>,
    /// `day`, `month` (the store's current UTC day and month) and `all` (all time, no cap).
    pub spend: BTreeMap<&'static str, CapSpend>,
    /// Settled in all time (charged; open reservations are in `spend.all.reserved_micros`).
    pub spent_all_time_micros: MicroUsd,
    pub per_task_cap_micros: Option<MicroUsd>,
    pub running: Vec<RunningTask>,
}

/// The periods of [`Status::spend`], in the order they are shown.
pub const PERIODS: [&str; 3] = ["day", "month", "all"];

/// The states in the order tasks move through them.
pub const STATES: [TaskState; 7] = [
    TaskState::Queued,
    TaskState::Running,
    TaskState::RejectedRequeued,
    TaskState::Merged,
    TaskState::NeedsHuman,
    TaskState::BudgetExhausted,
    TaskState::Failed,
];

/// Today's UTC day (`YYYY-MM-DD`) and month (`YYYY-MM`) by this machine's clock: the day and
/// month the store keys its cap totals by.
fn utc_day_and_month() -> (String, String) {
    let day = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let month = day.get(..7).unwrap_or(&day).to_string();
    (day, month)
}

impl Status {
    /// Read the figures from the store: the caps' totals (which count open reservations) less
    /// the open reservations of the period are what was settled in it.
    pub fn read(store: &dyn DashboardStore, caps: &Caps) -> Result<Status, StoreError> {
        let tasks = store.tasks()?;
        let open = store.open_rows()?;
        let (today, this_month) = utc_day_and_month();
        // Day and month totals do not depend on the run.
        let scope = RowScope::of_run("");
        let mut spend = BTreeMap::new();
        for (name, level, cap) in [
            ("day", CapLevel::Day, caps.per_day),
            ("month", CapLevel::Month, caps.per_month),
        ] {
            let counted = store.spent(level, &scope)?;
            let reserved: MicroUsd = open
                .iter()
                .filter(|r| match level {
                    CapLevel::Day => r.day == today,
                    _ => r.month == this_month,
                })
                .map(|r| r.open_reservation())
                .sum();
            spend.insert(
                name,
                CapSpend::new(counted.saturating_sub(reserved), reserved, cap),
            );
        }
        let settled_all: MicroUsd = store.rows()?.iter().map(|r| r.charged).sum();
        let reserved_all: MicroUsd = open.iter().map(|r| r.open_reservation()).sum();
        spend.insert("all", CapSpend::new(settled_all, reserved_all, None));
        let mut running = Vec::new();
        for t in tasks.iter().filter(|t| t.state == TaskState::Running) {
            running.push(RunningTask {
                id: t.id.clone(),
                title: t.title.clone(),
                stage: t.stage,
                attempt: t.attempts,
                worker: t.lease_owner.clone(),
                settled_micros: store.task_rows(&t.id)?.iter().map(|r| r.charged).sum(),
                reserved_micros: open
                    .iter()
                    .filter(|r| r.scope.task_id.as_deref() == Some(t.id.as_str()))
                    .map(|r| r.open_reservation())
                    .sum(),
            });
        }
        Ok(Status {
            tasks: STATES
                .iter()
                .map(|s| (s.name(), tasks.iter().filter(|t| t.state == *s).count()))
                .collect(),
            spend,
            spent_all_time_micros: settled_all,
            per_task_cap_micros: caps.per_task,
            running,
        })
    }
}

impl Dashboard {
    /// The live figures.
    pub fn status(&self) -> Result<Status, String> {
        Status::read(self.store.as_ref(), &self.caps).map_err(|e| e.to_string())
    }

    fn report(&self) -> Result<super::ledger_report::Report, String> {
        let history = History::read(self.store.as_ref()).map_err(|e| e.to_string())?;
        Ok(history.report(&Options::default()))
    }

    /// The page: live figures (filled by the script, and already in the HTML), then the charts.
    pub fn page(&self) -> Result<String, String> {
        let status = self.status()?;
        let report = self.report()?;
        let caps = CapLines {
            per_day: self.caps.per_day,
            per_month: self.caps.per_month,
        };
        let mut states = String::new();
        for state in STATES {
            let name = state.name();
            states.push_str(&format!(
                "<tr><td>{name}</td><td class=\"num\" data-state=\"{name}\">{}</td></tr>",
                status.tasks.get(name).copied().unwrap_or(0)
            ));
        }
        let mut spend = String::new();
        for level in PERIODS {
            let Some(cap) = status.spend.get(level) else {
                continue;
            };
            let limit = cap
                .cap_micros
                .map(column_dollars)
                .unwrap_or_else(|| "no cap".into());
            spend.push_str(&format!(
                "<tr><td>{level}</td><td class=\"num\" data-settled=\"{level}\">{}</td><td class=\"num\" data-reserved=\"{level}\">{}</td><td class=\"num\" data-spent=\"{level}\">{}</td><td class=\"num\">{limit}</td></tr>",
                column_dollars(cap.settled_micros),
                column_dollars(cap.reserved_micros),
                column_dollars(cap.spent_micros),
            ));
        }
        let total = status.spent_all_time_micros;
        Ok(format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;margin:.5rem 2rem .5rem 0;display:inline-table;vertical-align:top}}
td,th{{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left}}.num{{text-align:right}}figure{{display:inline-block;margin:1rem}}figcaption{{font-weight:600}}</style></head>
<body><h1>{title}</h1>
<p>Spent in all: <b id="total" data-micros="{total}">{total_usd}</b> · updated <span id="updated">at load</span></p>
<table id="backlog"><tr><th>backlog</th><th>tasks</th></tr>{states}</table>
<table id="spend"><tr><th>spend</th><th>settled</th><th>reserved now</th><th>counted by the cap</th><th>cap</th></tr>{spend}</table>
<table id="running"><tr><th>running</th><th>stage</th><th>attempt</th><th>settled</th><th>reserved now</th></tr></table>
<h2>Charts</h2>
{charts}
<script>
function usd(m){{var w=Math.floor(m/1e6),f=String(m%1e6).padStart(6,'0').replace(/0+$/,'');while(f.length<2)f+='0';return '$'+w+'.'+f;}}
function col(m){{var t=Math.floor(m/100)+(m%100>=50?1:0);return '$'+Math.floor(t/1e4)+'.'+String(t%1e4).padStart(4,'0');}}
async function refresh(){{
  try{{
    const s=await (await fetch('/api/status')).json();
    for(const [state,n] of Object.entries(s.tasks)){{const c=document.querySelector('[data-state="'+state+'"]');if(c)c.textContent=n;}}
    for(const [level,cap] of Object.entries(s.spend)){{for(const [k,v] of [['settled',cap.settled_micros],['reserved',cap.reserved_micros],['spent',cap.spent_micros]]){{const c=document.querySelector('[data-'+k+'="'+level+'"]');if(c)c.textContent=col(v);}}}}
    const t=document.getElementById('total');t.textContent=usd(s.spent_all_time_micros);t.dataset.micros=s.spent_all_time_micros;
    const r=document.getElementById('running');while(r.rows.length>1)r.deleteRow(1);
    for(const task of s.running){{const row=r.insertRow();row.dataset.task=task.id;row.insertCell().textContent=task.id+' '+task.title;row.insertCell().textContent=task.stage||'';row.insertCell().textContent=task.attempt;row.insertCell().textContent=col(task.settled_micros);row.insertCell().textContent=col(task.reserved_micros);}}
    document.getElementById('updated').textContent=new Date().toISOString();
    document.body.dataset.live='yes';
  }}catch(e){{document.getElementById('updated').textContent='(the server is not answering)';}}
}}
refresh();setInterval(refresh,2000);
</script>
</body></html>
"#,
            title = self.title,
            total_usd = format_dollars(total),
            total = total.get(),
            charts = charts(&report, caps),
        ))
    }
}

fn failure(message: String) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
}

async fn page(State(d): State<Arc<Dashboard>>) -> Response {
    match d.page() {
        Ok(html) => Html(html).into_response(),
        Err(e) => failure(e),
    }
}

async fn status(State(d): State<Arc<Dashboard>>) -> Response {
    match d.status() {
        Ok(v) => Json(v).into_response(),
        Err(e) => failure(e),
    }
}

async fn report(State(d): State<Arc<Dashboard>>) -> Response {
    match d.report() {
        Ok(r) => Json(r).into_response(),
        Err(e) => failure(e),
    }
}

async fn report_csv(State(d): State<Arc<Dashboard>>) -> Response {
    match d.report() {
        Ok(r) => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            super::ledger_report::render_csv(&r),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}

/// Serve the dashboard on `listener` until the process ends.
pub async fn serve(dashboard: Dashboard, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/", axum::routing::get(page))
        .route("/api/status", axum::routing::get(status))
        .route("/api/report", axum::routing::get(report))
        .route("/api/report.csv", axum::routing::get(report_csv))
        .with_state(Arc::new(dashboard));
    axum::serve(listener, app).await
}

/// Bind `address`; say so when it is not loopback (the dashboard has no authentication).
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "the dashboard has no authentication and listens beyond this machine");
    }
    tokio::net::TcpListener::bind(address).await
}
