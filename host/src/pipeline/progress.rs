//! What a run shows while it works: in a terminal, a live line per worker (task, stage, model)
//! and the spend against every cap; elsewhere, one structured log line per event.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::ledger::{Ledger, format_dollars};
use crate::store::{CapLevel, MicroUsd, RowScope, Stage, TaskState};

/// Something that happened in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A worker moved a task to a stage.
    Stage {
        worker: usize,
        task: String,
        attempt: u32,
        stage: Stage,
        model: Option<String>,
    },
    /// A worker finished an attempt; the task is now in `state`.
    Done {
        worker: usize,
        task: String,
        attempt: u32,
        state: TaskState,
        reason: String,
        cost: MicroUsd,
    },
    /// A worker found nothing to do.
    Idle { worker: usize },
    /// A run-level message (recovery, stopping, a cap).
    Note(String),
}

/// Receives a run's events.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
    /// The run is over; clear live lines.
    fn finish(&self) {}
}

/// Collects events (tests).
#[derive(Debug, Default)]
pub struct Recorded(pub Mutex<Vec<Event>>);

impl Progress for Recorded {
    fn event(&self, event: Event) {
        if let Ok(mut events) = self.0.lock() {
            events.push(event);
        }
    }
}

/// One `key=value` line per event on stderr.
#[derive(Debug, Default)]
pub struct LogLines;

fn quote(text: &str) -> String {
    if text.contains([' ', '"', '=']) || text.is_empty() {
        format!("{text:?}")
    } else {
        text.to_string()
    }
}

/// An event as a `key=value` line.
pub fn log_line(event: &Event) -> String {
    match event {
        Event::Stage {
            worker,
            task,
            attempt,
            stage,
            model,
        } => format!(
            "event=stage worker={worker} task={task} attempt={attempt} stage={stage}{}",
            model
                .as_ref()
                .map(|m| format!(" model={}", quote(m)))
                .unwrap_or_default()
        ),
        Event::Done {
            worker,
            task,
            attempt,
            state,
            reason,
            cost,
        } => format!(
            "event=done worker={worker} task={task} attempt={attempt} state={state} cost_usd={} reason={}",
            format_dollars(*cost),
            quote(reason)
        ),
        Event::Idle { worker } => format!("event=idle worker={worker}"),
        Event::Note(text) => format!("event=note message={}", quote(text)),
    }
}

impl Progress for LogLines {
    fn event(&self, event: Event) {
        if matches!(event, Event::Idle { .. }) {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", log_line(&event));
    }
}

/// Live lines in a terminal: one per worker, one for the caps.
pub struct Live {
    bars: MultiProgress,
    workers: Vec<ProgressBar>,
    caps: ProgressBar,
    ledger: Arc<Ledger>,
    run_id: String,
}

impl Live {
    pub fn new(workers: usize, ledger: Arc<Ledger>, run_id: &str) -> Live {
        let bars = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let workers = (0..workers)
            .map(|i| {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_message(format!("worker {}: waiting", i + 1));
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            })
            .collect();
        let caps = bars.add(ProgressBar::new_spinner());
        caps.set_style(
            ProgressStyle::with_template("  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let live = Live {
            bars,
            workers,
            caps,
            ledger,
            run_id: run_id.to_string(),
        };
        live.refresh_caps();
        live
    }

    fn refresh_caps(&self) {
        self.caps
            .set_message(spend_line(&self.ledger, &self.run_id));
    }
}

/// Spend against every configured run-wide cap, as one line.
pub fn spend_line(ledger: &Ledger, run_id: &str) -> String {
    let scope = RowScope::of_run(run_id);
    let caps = ledger.caps();
    let mut parts = Vec::new();
    for (name, level, cap) in [
        ("run", CapLevel::Run, caps.per_run),
        ("day", CapLevel::Day, caps.per_day),
        ("month", CapLevel::Month, caps.per_month),
    ] {
        let spent = ledger.spent_now(level, &scope).unwrap_or_default();
        match cap {
            Some(cap) => parts.push(format!(
                "{name} {} / {}",
                format_dollars(spent),
                format_dollars(cap)
            )),
            None => parts.push(format!("{name} {} (no cap)", format_dollars(spent))),
        }
    }
    format!("spend: {}", parts.join(" · "))
}

impl Progress for Live {
    fn event(&self, event: Event) {
        match &event {
            Event::Stage {
                worker,
                task,
                attempt,
                stage,
                model,
            } => {
                if let Some(bar) = self.workers.get(*worker) {
                    bar.set_message(format!(
                        "worker {}: {task} attempt {attempt} · {stage}{}",
                        worker + 1,
                        model
                            .as_ref()
                            .map(|m| format!(" · {m}"))
                            .unwrap_or_default()
                    ));
                }
            }
            Event::Done {
                worker,
                task,
                state,
                reason,
                cost,
                ..
            } => {
                let _ = self.bars.println(format!(
                    "{task}: {state} ({}) {reason}",
                    format_dollars(*cost)
                ));
                if let Some(bar) = self.workers.get(*worker) {
                    bar.set_message(format!("worker {}: waiting", worker + 1));
                }
            }
            Event::Idle { worker } => {
                if let Some(bar) = self.workers.get(*worker) {
                    bar.set_message(format!("worker {}: idle", worker + 1));
                }
            }
            Event::Note(text) => {
                let _ = self.bars.println(text);
            }
        }
        self.refresh_caps();
    }

    fn finish(&self) {
        for bar in &self.workers {
            bar.finish_and_clear();
        }
        self.refresh_caps();
        self.caps.finish();
    }
}

/// Live lines when stderr is a terminal, log lines otherwise.
pub fn for_terminal(workers: usize, ledger: Arc<Ledger>, run_id: &str) -> Arc<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Arc::new(Live::new(workers, ledger, run_id))
    } else {
        Arc::new(LogLines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_quote_what_needs_quoting() {
        let line = log_line(&Event::Done {
            worker: 0,
            task: "T-1".into(),
            attempt: 2,
            state: TaskState::Merged,
            reason: "merged into main".into(),
            cost: MicroUsd(1_234_567),
        });
        assert_eq!(
            line,
            "event=done worker=0 task=T-1 attempt=2 state=merged cost_usd=$1.234567 reason=\"merged into main\""
        );
    }
}
