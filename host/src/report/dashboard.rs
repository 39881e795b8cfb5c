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

/// Spent now against one cap.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CapSpend {
    pub spent_micros: MicroUsd,
    pub cap_micros: Option<MicroUsd>,
}

/// A running task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunningTask {
    pub id: String,
    pub title: String,
    pub stage: Option<Stage>,
    pub attempt: u32,
    pub worker: Option<String>,
}

/// The live figures `gaffer status` prints and the dashboard shows: tasks by state, spend
/// against the day and month caps, what is running.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Every state, in the order tasks move through them, with its count.
    pub tasks: BTreeMap<&'static str, usize>,
    /// `day` and `month`.
    pub spend: BTreeMap<&'static str, CapSpend>,
    pub spent_all_time_micros: MicroUsd,
    pub per_task_cap_micros: Option<MicroUsd>,
    pub running: Vec<RunningTask>,
}

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

impl Status {
    /// Read the figures from the store.
    pub fn read(store: &dyn DashboardStore, caps: &Caps) -> Result<Status, StoreError> {
        let tasks = store.tasks()?;
        // Day and month totals do not depend on the run.
        let scope = RowScope::of_run("");
        let mut spend = BTreeMap::new();
        for (name, level, cap) in [
            ("day", CapLevel::Day, caps.per_day),
            ("month", CapLevel::Month, caps.per_month),
        ] {
            spend.insert(
                name,
                CapSpend {
                    spent_micros: store.spent(level, &scope)?,
                    cap_micros: cap,
                },
            );
        }
        Ok(Status {
            tasks: STATES
                .iter()
                .map(|s| (s.name(), tasks.iter().filter(|t| t.state == *s).count()))
                .collect(),
            spend,
            spent_all_time_micros: store.rows()?.iter().map(|r| r.charged).sum(),
            per_task_cap_micros: caps.per_task,
            running: tasks
                .iter()
                .filter(|t| t.state == TaskState::Running)
                .map(|t| RunningTask {
                    id: t.id.clone(),
                    title: t.title.clone(),
                    stage: t.stage,
                    attempt: t.attempts,
                    worker: t.lease_owner.clone(),
                })
                .collect(),
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
        for (level, cap) in &status.spend {
            let limit = cap
                .cap_micros
                .map(format_dollars)
                .unwrap_or_else(|| "no cap".into());
            spend.push_str(&format!(
                "<tr><td>{level}</td><td class=\"num\" data-spent=\"{level}\">{}</td><td class=\"num\">{limit}</td></tr>",
                format_dollars(cap.spent_micros)
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
<table id="spend"><tr><th>spend</th><th>spent</th><th>cap</th></tr>{spend}</table>
<table id="running"><tr><th>running</th><th>stage</th><th>attempt</th></tr></table>
<h2>Charts</h2>
{charts}
<script>
function usd(m){{var w=Math.floor(m/1e6),f=String(m%1e6).padStart(6,'0').replace(/0+$/,'');while(f.length<2)f+='0';return '$'+w+'.'+f;}}
async function refresh(){{
  try{{
    const s=await (await fetch('/api/status')).json();
    for(const [state,n] of Object.entries(s.tasks)){{const c=document.querySelector('[data-state="'+state+'"]');if(c)c.textContent=n;}}
    for(const [level,cap] of Object.entries(s.spend)){{const c=document.querySelector('[data-spent="'+level+'"]');if(c)c.textContent=usd(cap.spent_micros);}}
    const t=document.getElementById('total');t.textContent=usd(s.spent_all_time_micros);t.dataset.micros=s.spent_all_time_micros;
    const r=document.getElementById('running');while(r.rows.length>1)r.deleteRow(1);
    for(const task of s.running){{const row=r.insertRow();row.dataset.task=task.id;row.insertCell().textContent=task.id+' '+task.title;row.insertCell().textContent=task.stage||'';row.insertCell().textContent=task.attempt;}}
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
