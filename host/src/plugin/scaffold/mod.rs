//! A new plugin project, as `gaffer plugin new router|verifier|hook --lang rust|python|js DIR`
//! writes it: one that builds and passes its own test out of the box.
//!
//! The project holds the WIT of this host (`wit/`), a small example policy for its world, a
//! `build.sh` that builds `plugin.wasm`, a `cases.toml` for `gaffer plugin test` (the format of
//! [`super::cases`]), and a README saying how to build, test and configure it. The templates
//! live in `templates/`, embedded in the binary; the cases of a world are the same in every
//! language, since the three implementations of a world follow the same policy.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::plugin::World;

/// The language a new plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// Rust, built with cargo and wit-bindgen.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with jco (QuickJS backend).
    Js,
}

impl Lang {
    /// The language's short name (the value of `gaffer plugin new --lang`).
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// The language's name in prose.
    pub fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }

    /// The file holding the plugin's policy, relative to the project.
    pub fn source(self) -> &'static str {
        match self {
            Lang::Rust => "src/lib.rs",
            Lang::Python => "app.py",
            Lang::Js => "app.js",
        }
    }
}

/// Why a project could not be written.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The target exists and is not a directory.
    #[error("{} exists and is not a directory; give a new or empty directory", .0.display())]
    NotADirectory(PathBuf),
    /// The target directory has entries; nothing was written.
    #[error(
        "{} is not empty (it holds `{entry}`); `gaffer plugin new` writes only into a new or \
         empty directory, so nothing was written",
        dir.display()
    )]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
        /// One of its entries.
        entry: String,
    },
    /// Reading or writing the file system failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done ("create", "write", ...).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// One file of a new project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaffoldFile {
    /// Path relative to the project directory, with `/` separators.
    pub path: &'static str,
    /// The file's contents.
    pub contents: String,
    /// Whether the file is a script to run (mode 755).
    pub executable: bool,
}

const WIT_TYPES: &str = include_str!("../../../../wit/0.1.0/types.wit");
const WIT_WORLDS: &str = include_str!("../../../../wit/0.1.0/worlds.wit");

const README_SKELETON: &str = include_str!("templates/readme/skeleton.md");

/// The templates of one world, the same in every language.
struct WorldTemplates {
    cases: &'static str,
    policy: &'static str,
    usage: &'static str,
}

fn world_templates(world: World) -> WorldTemplates {
    match world {
        World::Router => WorldTemplates {
            cases: include_str!("templates/cases/router.toml"),
            policy: include_str!("templates/readme/policy-router.md"),
            usage: include_str!("templates/readme/usage-router.md"),
        },
        World::Verifier => WorldTemplates {
            cases: include_str!("templates/cases/verifier.toml"),
            policy: include_str!("templates/readme/policy-verifier.md"),
            usage: include_str!("templates/readme/usage-verifier.md"),
        },
        World::Hook => WorldTemplates {
            cases: include_str!("templates/cases/hook.toml"),
            policy: include_str!("templates/readme/policy-hook.md"),
            usage: include_str!("templates/readme/usage-hook.md"),
        },
    }
}

/// The templates of one language.
struct LangTemplates {
    build_sh: &'static str,
    gitignore: &'static str,
    readme_files: &'static str,
    readme_build: &'static str,
}

fn lang_templates(lang: Lang) -> LangTemplates {
    match lang {
        Lang::Rust => LangTemplates {
            build_sh: include_str!("templates/rust/build.sh"),
            gitignore: include_str!("templates/rust/gitignore"),
            readme_files: include_str!("templates/rust/files.md"),
            readme_build: include_str!("templates/rust/build.md"),
        },
        Lang::Python => LangTemplates {
            build_sh: include_str!("templates/python/build.sh"),
            gitignore: include_str!("templates/python/gitignore"),
            readme_files: include_str!("templates/python/files.md"),
            readme_build: include_str!("templates/python/build.md"),
        },
        Lang::Js => LangTemplates {
            build_sh: include_str!("templates/js/build.sh"),
            gitignore: include_str!("templates/js/gitignore"),
            readme_files: include_str!("templates/js/files.md"),
            readme_build: include_str!("templates/js/build.md"),
        },
    }
}

/// The plugin's source, copied as it is (no placeholders).
fn source(world: World, lang: Lang) -> &'static str {
    match (lang, world) {
        (Lang::Rust, World::Router) => include_str!("templates/rust/router.rs"),
        (Lang::Rust, World::Verifier) => include_str!("templates/rust/verifier.rs"),
        (Lang::Rust, World::Hook) => include_str!("templates/rust/hook.rs"),
        (Lang::Python, World::Router) => include_str!("templates/python/router.py"),
        (Lang::Python, World::Verifier) => include_str!("templates/python/verifier.py"),
        (Lang::Python, World::Hook) => include_str!("templates/python/hook.py"),
        (Lang::Js, World::Router) => include_str!("templates/js/router.js"),
        (Lang::Js, World::Verifier) => include_str!("templates/js/verifier.js"),
        (Lang::Js, World::Hook) => include_str!("templates/js/hook.js"),
    }
}

/// Replace every `{{key}}` of `template` with its value.
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

/// A project name from a directory name: lowercase ASCII letters, digits and `-`, usable as
/// a Cargo package, an npm package and a plugin `name` in gaffer.toml.
pub fn project_name(dir_name: &str) -> String {
    let mut name = String::with_capacity(dir_name.len());
    for c in dir_name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        return "plugin".to_string();
    }
    // Names a crate cannot take: Rust's own crates, or a leading digit.
    let reserved = ["core", "std", "alloc", "test", "proc-macro"];
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("plugin-{name}")
    } else if reserved.contains(&name) {
        format!("{name}-plugin")
    } else {
        name.to_string()
    }
}

/// Every file of a new project named `name`.
pub fn scaffold_files(world: World, lang: Lang, name: &str) -> Vec<ScaffoldFile> {
    let lib = name.replace('-', "_");
    let vars: [(&str, &str); 7] = [
        ("name", name),
        ("crate", name),
        ("lib", &lib),
        ("world", world.name()),
        ("lang", lang.name()),
        ("language", lang.title()),
        ("source", lang.source()),
    ];
    let w = world_templates(world);
    let l = lang_templates(lang);
    // The fragments first (they hold placeholders of their own), then the placeholders.
    let readme = render(
        README_SKELETON,
        &[
            ("policy", w.policy.trim_end()),
            ("usage", w.usage.trim_end()),
            ("files", l.readme_files.trim_end()),
            ("build", l.readme_build.trim_end()),
        ],
    );
    let file = |path: &'static str, contents: String| ScaffoldFile {
        path,
        contents,
        executable: false,
    };
    let mut files = match lang {
        Lang::Rust => vec![
            file("src/lib.rs", source(world, lang).to_string()),
            file(
                "Cargo.toml",
                render(include_str!("templates/rust/Cargo.toml.tmpl"), &vars),
            ),
        ],
        Lang::Python => vec![file("app.py", source(world, lang).to_string())],
        Lang::Js => vec![
            file("app.js", source(world, lang).to_string()),
            file(
                "package.json",
                render(include_str!("templates/js/package.json.tmpl"), &vars),
            ),
        ],
    };
    files.extend([
        ScaffoldFile {
            path: "build.sh",
            contents: render(l.build_sh, &vars),
            executable: true,
        },
        file("cases.toml", w.cases.to_string()),
        file("README.md", render(&readme, &vars)),
        file(".gitignore", l.gitignore.to_string()),
        file("wit/types.wit", WIT_TYPES.to_string()),
        file("wit/worlds.wit", WIT_WORLDS.to_string()),
    ]);
    files
}

/// Make sure `dir` is a new or empty directory; true when it was created here.
fn prepare_dir(dir: &Path) -> Result<bool, NewError> {
    let io_error = |action, source| NewError::Io {
        action,
        path: dir.to_path_buf(),
        source,
    };
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(NewError::NotADirectory(dir.to_path_buf())),
        Ok(_) => {
            let mut entries = fs::read_dir(dir).map_err(|e| io_error("read", e))?;
            match entries.next() {
                None => Ok(false),
                Some(entry) => {
                    let entry = entry.map_err(|e| io_error("read", e))?;
                    Err(NewError::NotEmpty {
                        dir: dir.to_path_buf(),
                        entry: entry.file_name().to_string_lossy().into_owned(),
                    })
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| io_error("create", e))?;
            Ok(true)
        }
        Err(e) => Err(io_error("read", e)),
    }
}

fn write_file(dir: &Path, file: &ScaffoldFile) -> Result<(), NewError> {
    let path = dir.join(file.path);
    let io_error = |action, source| NewError::Io {
        action,
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| io_error("create", e))?;
    }
    fs::write(&path, &file.contents).map_err(|e| io_error("write", e))?;
    #[cfg(unix)]
    if file.executable {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error("make executable", e))?;
    }
    Ok(())
}

/// Remove what a failed scaffold wrote: the directory if it was created here, else its
/// entries (it was empty before). Best effort: the original error is what gets reported.
fn clean_up(dir: &Path, created: bool) {
    if created {
        let _ = fs::remove_dir_all(dir);
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

/// Write a new project into `dir` (created if missing; refused if it exists and is not an
/// empty directory). Returns the files written, relative to `dir`.
pub fn create(world: World, lang: Lang, dir: &Path) -> Result<Vec<&'static str>, NewError> {
    let created = prepare_dir(dir)?;
    // The name comes from the directory as the user sees it (`.` is the current directory's).
    let dir_name = fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let files = scaffold_files(world, lang, &project_name(&dir_name));
    for file in &files {
        if let Err(e) = write_file(dir, file) {
            clean_up(dir, created);
            return Err(e);
        }
    }
    Ok(files.iter().map(|f| f.path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORLDS: [World; 3] = [World::Router, World::Verifier, World::Hook];
    const LANGS: [Lang; 3] = [Lang::Rust, Lang::Python, Lang::Js];

    fn contents<'a>(files: &'a [ScaffoldFile], path: &str) -> &'a str {
        &files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no {path}"))
            .contents
    }

    #[test]
    fn every_placeholder_is_filled() {
        for world in WORLDS {
            for lang in LANGS {
                for file in scaffold_files(world, lang, "my-plugin") {
                    assert!(
                        !file.contents.contains("{{"),
                        "{world:?}/{lang:?} {}: {}",
                        file.path,
                        file.contents
                    );
                }
            }
        }
    }

    #[test]
    fn the_wit_is_this_hosts() {
        let files = scaffold_files(World::Hook, Lang::Python, "p");
        assert_eq!(
            contents(&files, "wit/types.wit"),
            include_str!("../../../../wit/0.1.0/types.wit")
        );
        assert_eq!(
            contents(&files, "wit/worlds.wit"),
            include_str!("../../../../wit/0.1.0/worlds.wit")
        );
    }

    #[test]
    fn build_scripts_name_the_world_and_the_tools_variables() {
        for world in WORLDS {
            let rust = scaffold_files(world, Lang::Rust, "my-plugin");
            let build = contents(&rust, "build.sh");
            assert!(build.contains("lib=\"my_plugin\""), "{build}");
            assert!(build.contains("${CARGO_TARGET_DIR:-target}"), "{build}");
            let python = scaffold_files(world, Lang::Python, "my-plugin");
            let build = contents(&python, "build.sh");
            assert!(
                build.contains("${COMPONENTIZE_PY:-componentize-py}"),
                "{build}"
            );
            assert!(build.contains(&format!("-w {} ", world.name())), "{build}");
            let js = scaffold_files(world, Lang::Js, "my-plugin");
            let build = contents(&js, "build.sh");
            assert!(build.contains("${JCO:-npx --no-install jco}"), "{build}");
            assert!(build.contains(&format!("-n {} ", world.name())), "{build}");
            for files in [&rust, &python, &js] {
                let script = files.iter().find(|f| f.path == "build.sh").unwrap();
                assert!(script.executable);
                assert!(script.contents.starts_with("#!/bin/sh\n"));
            }
        }
    }

    #[test]
    fn manifests_are_valid_and_standalone() {
        let files = scaffold_files(World::Router, Lang::Rust, "my-plugin");
        let cargo: toml::Table = toml::from_str(contents(&files, "Cargo.toml")).unwrap();
        assert_eq!(cargo["package"]["name"].as_str(), Some("my-plugin"));
        assert!(cargo["workspace"].as_table().unwrap().is_empty());
        assert_eq!(
            cargo["lib"]["crate-type"].as_array().unwrap()[0].as_str(),
            Some("cdylib")
        );
        assert_eq!(cargo["dependencies"]["wit-bindgen"].as_str(), Some("0.63"));
        assert!(contents(&files, "src/lib.rs").contains("world: \"router\""));

        let files = scaffold_files(World::Hook, Lang::Js, "my-plugin");
        let package: serde_json::Value =
            serde_json::from_str(contents(&files, "package.json")).unwrap();
        assert_eq!(
            package["devDependencies"]["@bytecodealliance/jco"],
            "1.35.0"
        );
        assert_eq!(package["name"], "my-plugin");
    }

    /// Each world's cases parse, and cover every decision of the world (every export, for a
    /// hook); the plugins themselves are run on them by tests/plugin_new.rs.
    #[test]
    fn cases_cover_every_decision_of_their_world() {
        let expected: [(World, &[&str], &[&str]); 3] = [
            (World::Router, &["cheap", "mid", "strong"], &["route"]),
            (
                World::Verifier,
                &["approve", "reject", "needs-human"],
                &["verify"],
            ),
            (
                World::Hook,
                &["allow", "deny", "rewrite"],
                &["pre_tool", "on_edit", "on_diff"],
            ),
        ];
        for (world, decisions, inputs) in expected {
            let files = scaffold_files(world, Lang::Rust, "p");
            let cases: toml::Table = toml::from_str(contents(&files, "cases.toml")).unwrap();
            let cases = cases["case"].as_array().unwrap();
            for decision in decisions {
                assert!(
                    cases.iter().any(|c| c["expect"].as_str() == Some(decision)),
                    "{world:?}: no case expects {decision}"
                );
            }
            for input in inputs {
                let given: Vec<_> = cases.iter().filter(|c| c.get(*input).is_some()).collect();
                assert!(!given.is_empty(), "{world:?}: no {input} case");
                // A hook's rules both allow and deny on every export.
                if world == World::Hook {
                    for decision in ["allow", "deny"] {
                        assert!(
                            given.iter().any(|c| c["expect"].as_str() == Some(decision)),
                            "hook: no {input} case expects {decision}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn readme_says_how_to_build_test_and_configure() {
        for world in WORLDS {
            for lang in LANGS {
                let files = scaffold_files(world, lang, "my-plugin");
                let readme = contents(&files, "README.md");
                let section = match world {
                    World::Router => "[plugins.router]",
                    World::Verifier => "[plugins.verifier]",
                    World::Hook => "[[plugins.hooks]]",
                };
                for needle in [
                    "./build.sh",
                    "gaffer plugin test plugin.wasm --cases cases.toml",
                    section,
                    "path = \"my-plugin/plugin.wasm\"",
                    "name = \"my-plugin\"",
                    "wit/worlds.wit",
                    lang.source(),
                ] {
                    assert!(readme.contains(needle), "{world:?}/{lang:?}: {needle}");
                }
            }
        }
    }

    #[test]
    fn project_names_suit_cargo_npm_and_gaffer() {
        assert_eq!(project_name("my-router"), "my-router");
        assert_eq!(project_name("My Router_v2"), "my-router-v2");
        assert_eq!(project_name("--x--"), "x");
        assert_eq!(project_name("2fast"), "plugin-2fast");
        assert_eq!(project_name("test"), "test-plugin");
        assert_eq!(project_name("ünï"), "n");
        assert_eq!(project_name("..."), "plugin");
        assert_eq!(project_name(""), "plugin");
    }

    #[test]
    fn creates_a_missing_directory_with_an_executable_build_script() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/My Hook");
        let written = create(World::Hook, Lang::Rust, &dir).unwrap();
        assert!(written.contains(&"src/lib.rs"));
        for path in &written {
            assert!(dir.join(path).is_file(), "{path}");
        }
        let cargo = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"my-hook\""), "{cargo}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("build.sh"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755);
        }
    }

    #[test]
    fn an_empty_directory_is_used() {
        let tmp = tempfile::tempdir().unwrap();
        create(World::Verifier, Lang::Js, tmp.path()).unwrap();
        assert!(tmp.path().join("app.js").is_file());
    }

    #[test]
    fn a_non_empty_directory_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
        let err = create(World::Router, Lang::Python, tmp.path()).unwrap_err();
        assert!(matches!(err, NewError::NotEmpty { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("is not empty") && text.contains("notes.txt"),
            "{text}"
        );
        let entries: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn a_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plugin");
        fs::write(&file, "x").unwrap();
        let err = create(World::Router, Lang::Rust, &file).unwrap_err();
        assert!(matches!(err, NewError::NotADirectory(_)), "{err:?}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "x");
    }
}
