//! Headless Chromium for the tests that look at pages as a person would (the dashboard, the
//! HTML report): Debian's chromium, installed by scripts/setup.sh, with the flags this closed
//! network needs.

use std::path::Path;
use std::process::Command;

/// Chromium as Debian packages it (installed by scripts/setup.sh); GAFFER_CHROMIUM overrides.
pub fn chromium() -> String {
    let bin = std::env::var("GAFFER_CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    let found = Command::new(&bin).arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "`{bin}` does not run: scripts/setup.sh installs Debian's chromium package"
    );
    bin
}

/// Headless Chromium with the flags this closed network needs (no background connections).
pub fn headless(profile: &Path) -> Command {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// Where the tests leave what a person would look at: target/test-artifacts/.
pub fn artifacts() -> std::path::PathBuf {
    let shots = super::workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    shots
}

/// A PNG of `url` at `size` (`width,height`), saved as target/test-artifacts/`name`, with a
/// profile under `profile`; returns its size in bytes.
pub fn screenshot(profile: &Path, url: &str, name: &str, size: &str) -> usize {
    let shot = artifacts().join(name);
    let _ = std::fs::remove_file(&shot);
    let taken = headless(profile)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("--window-size={size}"))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{} is no PNG", shot.display());
    png.len()
}
