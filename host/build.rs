//! Builds the Rust reference plugins (WebAssembly components) and embeds them in the binary, so
//! that `gaffer init` and `gaffer demo` work for someone who has only the binary. The plugins
//! are built from this workspace's sources by a nested cargo (into `target/guests`, the
//! directory `scripts/build-plugins.sh` uses, so the two share their work); nothing built is
//! committed. Without the `wasm32-unknown-unknown` target the build still succeeds, embeds
//! nothing and says so: the binary then asks for plugin files instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the reference plugins are built for: they use no WASI, and a component without
/// WASI imports is faster to link and instantiate on every call (scripts/build-plugins.sh, which
/// builds them the same way, says by how much). The toolchain's `wasm-component-ld` links the
/// component, as it does for `wasm32-wasip2`.
const GUEST_TARGET: &str = "wasm32-unknown-unknown";

/// The embedded plugins: package, component file, world.
const PLUGINS: &[(&str, &str, &str)] = &[
    ("cost-tier", "cost_tier.wasm", "router"),
    ("cascade", "cascade.wasm", "router"),
    ("tests-and-limits", "tests_and_limits.wasm", "verifier"),
    ("model-review", "model_review.wasm", "verifier"),
    ("protected-paths", "protected_paths.wasm", "hook"),
    ("layer-rules", "layer_rules.wasm", "hook"),
    ("file-size", "file_size.wasm", "hook"),
];

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().unwrap_or(&manifest).to_path_buf();
    for dir in ["plugins", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-env-changed=GAFFER_SKIP_EMBEDDED_PLUGINS");
    let out = PathBuf::from(env("OUT_DIR")).join("embedded_plugins.rs");
    let built = if std::env::var_os("GAFFER_SKIP_EMBEDDED_PLUGINS").is_some() {
        Err("GAFFER_SKIP_EMBEDDED_PLUGINS is set".to_string())
    } else {
        build(&workspace)
    };
    let source = match built {
        Ok(dir) => embed(&dir),
        Err(reason) => {
            println!(
                "cargo:warning=the reference plugins are not embedded in this build ({reason}); \
                 `gaffer init` and `gaffer demo` will need plugin files"
            );
            "pub const EMBEDDED: &[(&str, &str, &[u8])] = &[];\n".to_string()
        }
    };
    if let Err(e) = std::fs::write(&out, source) {
        panic!("cannot write {}: {e}", out.display());
    }
    pack_hook_relocations();
}

/// `gaffer-hook` is one process per tool call, so the dynamic loader's start-up is part of
/// every event. As a position-independent executable it carries about 30,000 relative
/// relocations (730 KB of `.rela.dyn`); packed (`DT_RELR`, glibc 2.36 and binutils 2.38 on)
/// they take 11 KB, and the loader reads and applies them faster (about 0.2 ms of 4.4 ms per
/// event, measured). Address-space layout randomisation stays. Only when the linker takes the
/// flag and the program it links runs here: an older toolchain links the usual way.
fn pack_hook_relocations() {
    let flag = "-Wl,-z,pack-relative-relocs";
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let native = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    if !linux_gnu || !native {
        return;
    }
    let dir = PathBuf::from(env("OUT_DIR")).join("relr-probe");
    let probe = (|| -> Option<()> {
        std::fs::create_dir_all(&dir).ok()?;
        let source = dir.join("probe.c");
        let program = dir.join("probe");
        std::fs::write(&source, "int main(void) { return 0; }\n").ok()?;
        let linked = Command::new("cc")
            .arg(flag)
            .arg("-fPIE")
            .arg("-pie")
            .arg("-o")
            .arg(&program)
            .arg(&source)
            .output()
            .ok()?;
        // An older ld warns about an unknown `-z` option and links anyway: that is a no.
        let warned = String::from_utf8_lossy(&linked.stderr).contains("pack-relative-relocs");
        if !linked.status.success() || warned {
            return None;
        }
        Command::new(&program)
            .status()
            .ok()?
            .success()
            .then_some(())
    })();
    if probe.is_some() {
        println!("cargo:rustc-link-arg-bin=gaffer-hook={flag}");
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// Build the plugins; the directory of their components.
fn build(workspace: &Path) -> Result<PathBuf, String> {
    let target_dir = workspace.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--target",
            GUEST_TARGET,
            "--profile",
            "plugin",
        ])
        .env("CARGO_TARGET_DIR", &target_dir);
    for (package, _, _) in PLUGINS {
        cmd.args(["-p", package]);
    }
    // The outer build's settings are for the host, not for WebAssembly guests.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key == "RUSTFLAGS"
            || key == "RUSTC_WRAPPER"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || (key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR")
        {
            cmd.env_remove(key.as_ref());
        }
    }
    // After the clean-up above, which removes any `CARGO_TARGET_*` the outer build has.
    cmd.env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER",
        "wasm-component-ld",
    );
    let output = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("building them failed: {first}"));
    }
    Ok(target_dir.join(GUEST_TARGET).join("plugin"))
}

/// Rust source naming every component, its world and its bytes.
fn embed(dir: &Path) -> String {
    let mut source = String::from("pub const EMBEDDED: &[(&str, &str, &[u8])] = &[\n");
    for (_, file, world) in PLUGINS {
        let path = dir.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        source.push_str(&format!(
            "    ({file:?}, {world:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    source.push_str("];\n");
    source
}
