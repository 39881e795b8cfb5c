//! Parsing `git diff -M` output into the plugin contract's [`Diff`].
//!
//! The parser expects what [`Worktree::diff_text`](super::Worktree::diff_text) asks git for:
//! `a/` and `b/` prefixes, three lines of context, no colour, and C-style quoting only for names
//! with control characters, quotes or backslashes (`core.quotepath=false`).

use super::GitError;
use crate::plugin::types::{Diff, DiffLine, DiffStats, FileDiff, FileStatus, Hunk, LineKind};

/// Parses a whole unified diff as printed by `git diff`.
pub(crate) fn parse(text: &str) -> Result<Diff, GitError> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("diff --git ") {
            let (file, next) = parse_file(&lines, i)?;
            files.push(file);
            i = next;
        } else if line.is_empty() || line.starts_with('\\') {
            i += 1;
        } else {
            return Err(parse_error(i, line, "expected `diff --git`"));
        }
    }
    let stats = DiffStats {
        files_changed: u32::try_from(files.len()).unwrap_or(u32::MAX),
        lines_added: files
            .iter()
            .fold(0u32, |sum, f| sum.saturating_add(f.added)),
        lines_removed: files
            .iter()
            .fold(0u32, |sum, f| sum.saturating_add(f.removed)),
    };
    Ok(Diff { files, stats })
}

/// Parses one file's entry starting at its `diff --git` line; returns it and the index of the
/// first line after it.
fn parse_file(lines: &[&str], start: usize) -> Result<(FileDiff, usize), GitError> {
    let header = lines[start].strip_prefix("diff --git ").unwrap_or_default();
    let from_header = split_git_header(header);
    let mut minus: Option<Option<String>> = None;
    let mut plus: Option<Option<String>> = None;
    let mut rename_from = None;
    let mut rename_to = None;
    let (mut added_file, mut deleted_file, mut binary) = (false, false, false);

    let mut i = start + 1;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("diff --git ") || line.starts_with("@@ ") {
            break;
        }
        if line.starts_with("new file mode ") {
            added_file = true;
        } else if line.starts_with("deleted file mode ") {
            deleted_file = true;
        } else if let Some(name) = line.strip_prefix("rename from ") {
            rename_from = Some(unquote(name));
        } else if let Some(name) = line.strip_prefix("rename to ") {
            rename_to = Some(unquote(name));
        } else if let Some(name) = line.strip_prefix("--- ") {
            minus = Some(side_name(name, "a/"));
        } else if let Some(name) = line.strip_prefix("+++ ") {
            plus = Some(side_name(name, "b/"));
        } else if line.starts_with("Binary files ") || line == "GIT binary patch" {
            binary = true;
        }
        // index, similarity, dissimilarity, old mode, new mode: nothing we report.
        i += 1;
    }

    let mut hunks = Vec::new();
    while i < lines.len() && lines[i].starts_with("@@ ") {
        let (hunk, next) = parse_hunk(lines, i)?;
        hunks.push(hunk);
        i = next;
    }

    let (git_old, git_new) = match from_header {
        Some((old, new)) => (Some(old), Some(new)),
        None => (None, None),
    };
    let old = rename_from.or(minus.flatten()).or(git_old);
    let new = rename_to.or(plus.flatten()).or(git_new);
    let status = if added_file {
        FileStatus::Added
    } else if deleted_file {
        FileStatus::Deleted
    } else if old.is_some() && new.is_some() && old != new {
        FileStatus::Renamed
    } else {
        FileStatus::Modified
    };
    let path = match status {
        FileStatus::Deleted => old.clone().or(new),
        _ => new.or(old.clone()),
    };
    let Some(path) = path else {
        return Err(parse_error(start, lines[start], "no file name"));
    };
    let old_path = if status == FileStatus::Renamed {
        old
    } else {
        None
    };
    let count = |kind: LineKind| {
        let n = hunks
            .iter()
            .flat_map(|h| &h.lines)
            .filter(|l| l.kind == kind)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    let (added, removed) = (count(LineKind::Added), count(LineKind::Removed));
    // Diffs are taken with `--text` (so that no attribute hides content): a file is binary
    // when its lines hold a NUL byte, as git's own heuristic says.
    let binary = binary
        || hunks
            .iter()
            .flat_map(|h| &h.lines)
            .any(|l| l.text.contains('\0'));
    let file = FileDiff {
        path,
        old_path,
        status,
        binary,
        hunks,
        added,
        removed,
    };
    Ok((file, i))
}

/// Parses one hunk starting at its `@@` line, reading exactly as many lines as its header
/// announces (so a removed line that reads `-- x` is never mistaken for a `---` header).
fn parse_hunk(lines: &[&str], start: usize) -> Result<(Hunk, usize), GitError> {
    let header = lines[start];
    let bad = || parse_error(start, header, "malformed hunk header");
    let ranges = header.strip_prefix("@@ -").ok_or_else(bad)?;
    let (old, rest) = ranges.split_once(" +").ok_or_else(bad)?;
    let (new, _) = rest.split_once(" @@").ok_or_else(bad)?;
    let (old_start, old_lines) = parse_range(old).ok_or_else(bad)?;
    let (new_start, new_lines) = parse_range(new).ok_or_else(bad)?;

    let (mut old_left, mut new_left) = (old_lines, new_lines);
    let (mut old_no, mut new_no) = (old_start, new_start);
    let mut out = Vec::new();
    let mut i = start + 1;
    while old_left > 0 || new_left > 0 {
        let Some(line) = lines.get(i) else {
            return Err(parse_error(
                start,
                header,
                "hunk ends before its announced length",
            ));
        };
        let (kind, text) = match line.chars().next() {
            Some(' ') => (LineKind::Context, &line[1..]),
            Some('+') => (LineKind::Added, &line[1..]),
            Some('-') => (LineKind::Removed, &line[1..]),
            Some('\\') => {
                i += 1;
                continue;
            }
            Some(_) => return Err(parse_error(i, line, "unexpected line inside a hunk")),
            None => {
                return Err(parse_error(
                    start,
                    header,
                    "hunk ends before its announced length",
                ));
            }
        };
        let number = match kind {
            LineKind::Context if old_left > 0 && new_left > 0 => {
                old_left -= 1;
                new_left -= 1;
                old_no += 1;
                new_no += 1;
                new_no - 1
            }
            LineKind::Added if new_left > 0 => {
                new_left -= 1;
                new_no += 1;
                new_no - 1
            }
            LineKind::Removed if old_left > 0 => {
                old_left -= 1;
                old_no += 1;
                old_no - 1
            }
            _ => {
                return Err(parse_error(
                    i,
                    line,
                    "more lines than the hunk header announces",
                ));
            }
        };
        out.push(DiffLine {
            kind,
            line: number,
            text: text.to_string(),
        });
        i += 1;
    }
    // `\ No newline at end of file` after the hunk's last line.
    while lines.get(i).is_some_and(|l| l.starts_with('\\')) {
        i += 1;
    }
    Ok((
        Hunk {
            old_start,
            old_lines,
            new_start,
            new_lines,
            lines: out,
        },
        i,
    ))
}

/// `start[,count]`; a missing count means 1.
fn parse_range(range: &str) -> Option<(u32, u32)> {
    match range.split_once(',') {
        Some((start, count)) => Some((start.parse().ok()?, count.parse().ok()?)),
        None => Some((range.parse().ok()?, 1)),
    }
}

/// The name on a `---`/`+++` line: None for `/dev/null`, else without its `a/`/`b/` prefix.
fn side_name(raw: &str, prefix: &str) -> Option<String> {
    // Git ends the line with a tab when an unquoted name contains a space.
    let raw = if raw.starts_with('"') {
        raw
    } else {
        raw.strip_suffix('\t').unwrap_or(raw)
    };
    if raw == "/dev/null" {
        return None;
    }
    let name = unquote(raw);
    Some(
        name.strip_prefix(prefix)
            .map(str::to_string)
            .unwrap_or(name),
    )
}

/// The two names of a `diff --git a/X b/Y` line. Unquoted names with spaces are ambiguous; the
/// line is only relied on where both names are the same (binary files, mode changes, empty new
/// files), which can always be split.
fn split_git_header(header: &str) -> Option<(String, String)> {
    if header.starts_with('"') {
        let (old, rest) = take_quoted(header)?;
        let rest = rest.strip_prefix(' ')?;
        let new = if rest.starts_with('"') {
            take_quoted(rest)?.0
        } else {
            rest.to_string()
        };
        return Some((
            old.strip_prefix("a/")?.to_string(),
            new.strip_prefix("b/")?.to_string(),
        ));
    }
    let len = header.len();
    if len >= 5 && (len - 5).is_multiple_of(2) {
        let half = (len - 5) / 2;
        let old = header.get(2..2 + half)?;
        let new = header.get(half + 5..)?;
        if header.starts_with("a/") && header.get(2 + half..half + 5) == Some(" b/") && old == new {
            return Some((old.to_string(), new.to_string()));
        }
    }
    if let Some((old, new)) = header.split_once(" \"b/") {
        let new = unquote(&format!("\"{new}"));
        return Some((old.strip_prefix("a/")?.to_string(), new));
    }
    let (old, new) = header.split_once(" b/")?;
    Some((old.strip_prefix("a/")?.to_string(), new.to_string()))
}

/// Reads one C-quoted name at the start of `s`; returns it and the rest after the closing quote.
fn take_quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some((unquote(&s[..i + 2]), &body[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Undoes git's C-style quoting (`"a\tb\303\251"`); an unquoted name is returned as it is.
fn unquote(s: &str) -> String {
    let Some(body) = s.strip_prefix('"').and_then(|b| b.strip_suffix('"')) else {
        return s.to_string();
    };
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let c = bytes[i + 1];
        i += 2;
        let plain = match c {
            b'a' => 0x07,
            b'b' => 0x08,
            b't' => b'\t',
            b'n' => b'\n',
            b'v' => 0x0b,
            b'f' => 0x0c,
            b'r' => b'\r',
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                let mut digits = 1;
                while digits < 3 && i < bytes.len() && (b'0'..=b'7').contains(&bytes[i]) {
                    value = value * 8 + u32::from(bytes[i] - b'0');
                    i += 1;
                    digits += 1;
                }
                u8::try_from(value).unwrap_or(b'?')
            }
            other => other,
        };
        out.push(plain);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_error(index: usize, line: &str, what: &str) -> GitError {
    GitError::Parse {
        reason: format!("line {}: {what}: {line:?}", index + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_omitted_quoted_names_and_binary_names_with_spaces() {
        let text = "\
diff --git a/one line.txt b/one line.txt
index 1111111..2222222 100644
--- a/one line.txt\t
+++ b/one line.txt\t
@@ -1 +1 @@
-old
\\ No newline at end of file
+new
diff --git \"a/tab\\there\" \"b/tab\\there\"
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ \"b/tab\\there\"
@@ -0,0 +1,2 @@
+-- not a header
+++ not a header either
diff --git a/pic of me.png b/pic of me.png
deleted file mode 100644
index 4444444..0000000
Binary files a/pic of me.png and /dev/null differ
diff --git a/empty b/empty
new file mode 100644
index 0000000..e69de29
diff --git a/x.sh b/x.sh
old mode 100644
new mode 100755
diff --git a/caf\u{e9}.txt \"b/caf\\303\\251 2.txt\"
similarity index 100%
rename from caf\u{e9}.txt
rename to \"caf\\303\\251 2.txt\"
";
        let diff = parse(text).unwrap();
        let summary: Vec<_> = diff
            .files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.old_path.as_deref(),
                    f.status,
                    f.binary,
                    f.added,
                    f.removed,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("one line.txt", None, FileStatus::Modified, false, 1, 1),
                ("tab\there", None, FileStatus::Added, false, 2, 0),
                ("pic of me.png", None, FileStatus::Deleted, true, 0, 0),
                ("empty", None, FileStatus::Added, false, 0, 0),
                ("x.sh", None, FileStatus::Modified, false, 0, 0),
                (
                    "caf\u{e9} 2.txt",
                    Some("caf\u{e9}.txt"),
                    FileStatus::Renamed,
                    false,
                    0,
                    0
                ),
            ]
        );
        let first = &diff.files[0].hunks[0];
        assert_eq!(
            (
                first.old_start,
                first.old_lines,
                first.new_start,
                first.new_lines
            ),
            (1, 1, 1, 1)
        );
        let lines: Vec<_> = first
            .lines
            .iter()
            .map(|l| (l.kind, l.line, l.text.as_str()))
            .collect();
        assert_eq!(
            lines,
            [(LineKind::Removed, 1, "old"), (LineKind::Added, 1, "new")]
        );
        let second: Vec<_> = diff.files[1].hunks[0]
            .lines
            .iter()
            .map(|l| (l.kind, l.line, l.text.as_str()))
            .collect();
        assert_eq!(
            second,
            [
                (LineKind::Added, 1, "-- not a header"),
                (LineKind::Added, 2, "++ not a header either")
            ]
        );
        assert_eq!(
            (
                diff.stats.files_changed,
                diff.stats.lines_added,
                diff.stats.lines_removed
            ),
            (6, 3, 1)
        );
    }

    #[test]
    fn rejects_a_hunk_shorter_than_its_header() {
        let text = "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n";
        assert!(matches!(parse(text), Err(GitError::Parse { .. })));
        assert!(parse("").unwrap().files.is_empty());
    }
}
