//! The demo's sample repository: a small Python package with a real backlog. Each task comes
//! with a pending test (in `tests/pending/`, not run until the task moves it into `tests/`)
//! that fails before the change. The scripted models' solutions are in `solutions.json`: the
//! cheap model gets the easy tasks right and the harder ones wrong, so routing, rejection,
//! escalation and the team's rules all show.

use std::path::Path;

use serde_json::json;

use super::scripted_provider::{Script, ScriptedCall, TaskScript, Turn};
use crate::store::NewTask;

/// The cheap model's provider id in the demo.
pub const SMALL: &str = "demo-small";
/// The strong model's provider id in the demo.
pub const LARGE: &str = "demo-large";

/// The project's test command.
pub const TEST_COMMAND: &str = "python3 -m unittest discover -s tests";

const STRINGS_PY: &str = r#""""Small string helpers."""


def word_count(text):
    """Number of words in `text`."""
    return len(text.split(" "))


def slugify(text):
    """Lower-case words of `text` joined by hyphens; only a-z, 0-9 and '-' remain."""
    raise NotImplementedError
"#;

const DURATIONS_PY: &str = r#""""Durations written by people."""


def parse_duration(text):
    """Seconds in a duration such as '1h30m', '45s' or '2h'."""
    raise NotImplementedError
"#;

const CONFIG_PY: &str = r#""""Settings."""


def api_token():
    """The API token."""
    return "changeme"
"#;

const TEST_BASICS: &str = r#"import unittest

from textkit.strings import word_count


class BasicsTest(unittest.TestCase):
    def test_plain_words(self):
        self.assertEqual(word_count("one two"), 2)


if __name__ == "__main__":
    unittest.main()
"#;

const TEST_SLUGIFY: &str = r#"import unittest

from textkit.strings import slugify


class SlugifyTest(unittest.TestCase):
    def test_punctuation_and_case(self):
        self.assertEqual(slugify("Hello, World!"), "hello-world")

    def test_spaces(self):
        self.assertEqual(slugify("  Many   spaces "), "many-spaces")
"#;

const TEST_WORD_COUNT: &str = r#"import unittest

from textkit.strings import word_count


class WordCountTest(unittest.TestCase):
    def test_punctuation(self):
        self.assertEqual(word_count("hello, world!"), 2)
        self.assertEqual(word_count("one two  three"), 3)

    def test_empty(self):
        self.assertEqual(word_count(""), 0)

    def test_dashes(self):
        self.assertEqual(word_count("well-known fact"), 2)
        self.assertEqual(word_count("a - b"), 2)
"#;

const TEST_DURATIONS: &str = r#"import unittest

from textkit.durations import parse_duration


class DurationTest(unittest.TestCase):
    def test_units(self):
        self.assertEqual(parse_duration("45s"), 45)
        self.assertEqual(parse_duration("2h"), 7200)
        self.assertEqual(parse_duration("1h30m"), 5400)

    def test_garbage(self):
        with self.assertRaises(ValueError):
            parse_duration("soon")
"#;

const TEST_CONFIG: &str = r#"import os
import unittest

from textkit.config import api_token


class ConfigTest(unittest.TestCase):
    def test_token_from_environment(self):
        os.environ["TEXTKIT_TOKEN"] = "abc"
        self.assertEqual(api_token(), "abc")

    def test_no_token(self):
        os.environ.pop("TEXTKIT_TOKEN", None)
        with self.assertRaises(RuntimeError):
            api_token()
"#;

/// The files of the sample repository, before any task.
pub fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        (".gitignore", "__pycache__/\n/.gaffer/\n"),
        (
            "README.md",
            "# textkit\n\nA small Python package, the backlog of gaffer's demo. `python3 -m unittest discover -s tests` runs its tests.\n",
        ),
        ("textkit/__init__.py", ""),
        ("textkit/strings.py", STRINGS_PY),
        ("textkit/durations.py", DURATIONS_PY),
        ("textkit/config.py", CONFIG_PY),
        ("tests/test_basics.py", TEST_BASICS),
        ("tests/pending/test_slugify.py", TEST_SLUGIFY),
        ("tests/pending/test_word_count.py", TEST_WORD_COUNT),
        ("tests/pending/test_durations.py", TEST_DURATIONS),
        ("tests/pending/test_config.py", TEST_CONFIG),
    ]
}

fn pending(name: &str) -> String {
    format!(
        "Its test is tests/pending/{name}: it fails today. Make it pass, and move it into tests/ \
         (`mv tests/pending/{name} tests/{name}`) so that the suite runs it from now on."
    )
}

/// The backlog: four tasks of different difficulty.
pub fn tasks() -> Vec<NewTask> {
    let task = |title: &str, body: String, label: &str, path: &str| NewTask {
        title: title.to_string(),
        body,
        labels: vec![label.to_string()],
        paths: vec![path.to_string()],
        source: Some("gaffer demo".to_string()),
    };
    vec![
        task(
            "Add slugify",
            format!(
                "Implement `slugify` in textkit/strings.py. {}",
                pending("test_slugify.py")
            ),
            "boilerplate",
            "textkit/strings.py",
        ),
        task(
            "Count words, not spaces",
            format!(
                "`word_count` counts spaces: punctuation, repeated spaces and lone dashes give \
                 wrong counts. {}",
                pending("test_word_count.py")
            ),
            "bug",
            "textkit/strings.py",
        ),
        task(
            "Parse durations",
            format!(
                "Implement `parse_duration` in textkit/durations.py for hours, minutes and \
                 seconds ('1h30m'); anything else is a ValueError. {}",
                pending("test_durations.py")
            ),
            "feature",
            "textkit/durations.py",
        ),
        task(
            "Read the API token from the environment",
            format!(
                "`api_token` returns a hard-coded value. Read it from TEXTKIT_TOKEN and raise \
                 RuntimeError when it is not set. {}",
                pending("test_config.py")
            ),
            "config",
            "textkit/config.py",
        ),
    ]
}

/// A scripted turn that makes one tool call.
pub fn call(name: &str, arguments: serde_json::Value) -> Turn {
    Turn {
        calls: vec![ScriptedCall {
            name: name.to_string(),
            arguments,
        }],
        ..Turn::default()
    }
}

fn say(text: &str, name: &str, arguments: serde_json::Value) -> Turn {
    Turn {
        text: Some(text.to_string()),
        ..call(name, arguments)
    }
}

fn activate(name: &str) -> Turn {
    call(
        "run_command",
        json!({"command": format!("mv tests/pending/{name} tests/{name} && {TEST_COMMAND}")}),
    )
}

fn finish(summary: &str) -> Turn {
    call("finish", json!({"summary": summary}))
}

/// What the scripted models do on each task.
pub fn script() -> Script {
    let slugify_old = "    raise NotImplementedError\n";
    let slugify_new = "    import re\n\n    words = re.findall(r\"[a-z0-9]+\", text.lower())\n    return \"-\".join(words)\n";
    let count_old = "    return len(text.split(\" \"))\n";
    let duration_old = "    raise NotImplementedError\n";
    let duration_good = "    import re\n\n    match = re.fullmatch(r\"(?:(\\d+)h)?(?:(\\d+)m)?(?:(\\d+)s)?\", text.strip())\n    if not text.strip() or match is None:\n        raise ValueError(f\"not a duration: {text!r}\")\n    hours, minutes, seconds = (int(g or 0) for g in match.groups())\n    return hours * 3600 + minutes * 60 + seconds\n";
    let duration_todo = "    import re\n\n    # TODO: days and weeks\n    match = re.fullmatch(r\"(?:(\\d+)h)?(?:(\\d+)m)?(?:(\\d+)s)?\", text.strip())\n    if not text.strip() or match is None:\n        raise ValueError(f\"not a duration: {text!r}\")\n    hours, minutes, seconds = (int(g or 0) for g in match.groups())\n    return hours * 3600 + minutes * 60 + seconds\n";
    let token_old = "    return \"changeme\"\n";
    let token_new = "    import os\n\n    token = os.environ.get(\"TEXTKIT_TOKEN\")\n    if not token:\n        raise RuntimeError(\"set TEXTKIT_TOKEN\")\n    return token\n";
    let mut tasks = Vec::new();
    let entry = |matches: &str, models: Vec<(&str, Vec<Turn>)>| TaskScript {
        matches: matches.to_string(),
        models: models
            .into_iter()
            .map(|(m, t)| (m.to_string(), t))
            .collect(),
    };
    tasks.push(entry(
        "Add slugify",
        vec![(
            SMALL,
            vec![
                call(
                    "read_file",
                    json!({"path": "tests/pending/test_slugify.py"}),
                ),
                call(
                    "edit",
                    json!({"path": "textkit/strings.py", "old": slugify_old, "new": slugify_new}),
                ),
                activate("test_slugify.py"),
                finish("slugify keeps a-z and 0-9 runs, joined by hyphens."),
            ],
        )],
    ));
    tasks.push(entry(
        "Count words, not spaces",
        vec![
            (
                SMALL,
                vec![
                    call("read_file", json!({"path": "textkit/strings.py"})),
                    call(
                        "edit",
                        json!({"path": "textkit/strings.py", "old": count_old, "new": "    return len(text.split())\n"}),
                    ),
                    activate("test_word_count.py"),
                    finish("word_count splits on any whitespace."),
                ],
            ),
            (
                LARGE,
                vec![
                    call("read_file", json!({"path": "tests/pending/test_word_count.py"})),
                    call(
                        "search",
                        json!({"pattern": "def word_count", "path": "textkit"}),
                    ),
                    call(
                        "edit",
                        json!({"path": "textkit/strings.py", "old": count_old, "new": "    import re\n\n    return len(re.findall(r\"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*\", text))\n"}),
                    ),
                    activate("test_word_count.py"),
                    finish("word_count counts words (letters and digits, inner ' and - allowed)."),
                ],
            ),
        ],
    ));
    tasks.push(entry(
        "Parse durations",
        vec![
            (
                SMALL,
                vec![
                    call(
                        "edit",
                        json!({"path": "textkit/durations.py", "old": duration_old, "new": duration_todo}),
                    ),
                    // A write through the shell: no pre-tool hook sees a path, on-diff does.
                    call(
                        "run_command",
                        json!({"command": format!("printf 'DEBUG=1\\n' > .env && mv tests/pending/test_durations.py tests/test_durations.py && {TEST_COMMAND}")}),
                    ),
                    finish("parse_duration handles h, m and s."),
                ],
            ),
            (
                LARGE,
                vec![
                    call("read_file", json!({"path": "tests/pending/test_durations.py"})),
                    call(
                        "edit",
                        json!({"path": "textkit/durations.py", "old": duration_old, "new": duration_good}),
                    ),
                    activate("test_durations.py"),
                    finish("parse_duration handles h, m and s; anything else is a ValueError."),
                ],
            ),
        ],
    ));
    tasks.push(entry(
        "Read the API token from the environment",
        vec![(
            SMALL,
            vec![
                say(
                    "I'll put the token in a .env file.",
                    "write_file",
                    json!({"path": ".env", "content": "TEXTKIT_TOKEN=abc\n"}),
                ),
                say(
                    "Denied: .env is protected. I'll read the environment instead.",
                    "edit",
                    json!({"path": "textkit/config.py", "old": token_old, "new": token_new}),
                ),
                activate("test_config.py"),
                finish("api_token reads TEXTKIT_TOKEN."),
            ],
        )],
    ));
    Script { tasks }
}

/// Write the sample repository into `dir` (which must be empty or missing) and commit it; with
/// `solutions`, the scripted models' `solutions.json` too (a real model must not see it).
pub fn create(dir: &Path, solutions: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // gaffer's own state directory (the demo may have put plugins there) is ignored in git.
    if std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .any(|e| e.file_name() != ".gaffer")
    {
        return Err(std::io::Error::other(format!(
            "{} is not empty; give the demo an empty or new directory",
            dir.display()
        )));
    }
    for (path, text) in files() {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(file, text)?;
    }
    if solutions {
        let script = serde_json::to_string_pretty(&script()).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("solutions.json"), script + "\n")?;
    }
    let git = |args: &[&str]| -> std::io::Result<()> {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=gaffer demo",
                "-c",
                "user.email=demo@gaffer.invalid",
            ])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(dir)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    git(&["init", "-q", "-b", "main"])?;
    git(&["add", "-A"])?;
    git(&[
        "commit",
        "-q",
        "-m",
        "textkit: the demo's sample repository",
    ])?;
    Ok(())
}
