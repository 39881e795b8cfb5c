//! `gaffer serve` in headless Chromium: the dashboard over a ledger the real pipeline wrote
//! (the offline demo), its live figures — filled in by its script from `/api/status` — checked
//! against the store, and a screenshot saved to target/test-artifacts/dashboard.png.

mod support;

use support::browser::headless;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use gaffer::store::{BacklogStore, LedgerStore, SqliteStore, TaskState};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_dashboard_shows_the_ledgers_figures_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let plugins = support::guest("cost-tier").parent().unwrap().to_path_buf();
    support::guest("tests-and-limits");
    support::guest("protected-paths");
    let demo = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .arg("demo")
        .arg(&dir)
        .arg("--plugins")
        .arg(&plugins)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();

    // What the store says.
    let store = SqliteStore::open(dir.join(".gaffer/gaffer.db")).unwrap();
    let merged = store
        .tasks()
        .unwrap()
        .iter()
        .filter(|t| t.state == TaskState::Merged)
        .count();
    let total: u64 = store.rows().unwrap().iter().map(|r| r.charged.get()).sum();
    assert!(merged == 4 && total > 0);

    let profile = tmp.path().join("chromium-profile");
    let dom = headless(&profile)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    // The script ran and filled in the live figures from /api/status.
    assert!(
        dom.contains("data-live=\"yes\""),
        "the page's script did not run:\n{dom}"
    );
    assert!(
        dom.contains(&format!("data-state=\"merged\">{merged}<")),
        "merged count:\n{dom}"
    );
    assert!(
        dom.contains(&format!("id=\"total\" data-micros=\"{total}\"")),
        "{dom}"
    );
    let dollars = format!("{}.{:06}", total / 1_000_000, total % 1_000_000);
    assert!(
        dom.contains(&format!("${}", dollars.trim_end_matches('0'))),
        "{dom}"
    );
    assert_eq!(dom.matches("<figure>").count(), 4, "the report's charts");

    let shots = support::workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let taken = headless(&profile)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,1400")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "{} bytes",
        png.len()
    );
}
