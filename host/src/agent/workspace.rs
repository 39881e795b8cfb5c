//! File tools confined to the worktree with cap-std.
//!
//! Every path the agent names is relative to the attempt's worktree. Paths are checked lexically
//! (no absolute paths, no `..`) and then resolved through a [`cap_std::fs::Dir`] capability, so a
//! symlink inside the worktree that points outside of it is refused by the kernel-backed resolver
//! rather than followed.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, File};

use crate::confined::{self, Access, OpenError};
use regex::Regex;

/// Largest file the tools read or search (1 MiB): bigger files are refused or skipped.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Longest line text (in characters) a search match carries.
const MAX_MATCH_CHARS: usize = 300;

/// Deepest directory nesting a search walks (a guard against pathological trees).
const MAX_SEARCH_DEPTH: usize = 64;

/// Why a file tool refused or failed. Every variant names the path (or pattern) so the message can
/// go back to the model as the tool result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The path is absolute, contains `..`, or resolves through a symlink to outside the worktree.
    #[error("`{path}` leads outside the worktree")]
    Escape {
        /// The path as given.
        path: String,
    },
    /// Nothing exists at the path.
    #[error("`{path}` does not exist")]
    NotFound {
        /// The path as given.
        path: String,
    },
    /// The file is not valid UTF-8 text.
    #[error("`{path}` is not UTF-8 text")]
    NotUtf8 {
        /// The path as given.
        path: String,
    },
    /// The file is larger than the tools read.
    #[error("`{path}` is {bytes} bytes, over the {cap}-byte limit")]
    TooLarge {
        /// The path as given.
        path: String,
        /// The file's size.
        bytes: u64,
        /// The limit.
        cap: u64,
    },
    /// The search pattern is not a valid regular expression.
    #[error("invalid pattern `{pattern}`: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// The regex parser's explanation.
        reason: String,
    },
    /// The text to replace does not occur in the file.
    #[error("the text to replace was not found in `{path}`")]
    EditNoMatch {
        /// The path as given.
        path: String,
    },
    /// The text to replace occurs more than once, so the edit would be a guess.
    #[error(
        "the text to replace occurs {count} times in `{path}`; include more context so it matches exactly once"
    )]
    EditAmbiguous {
        /// The path as given.
        path: String,
        /// How many (possibly overlapping) occurrences there are.
        count: usize,
    },
    /// The path names git's metadata (a `.git` component at any depth): the agent's tools do
    /// not touch it.
    #[error("`{path}` is inside git's metadata (`.git`), which the agent's tools do not touch")]
    GitMetadata {
        /// The path as given.
        path: String,
    },
    /// Something other than a regular file (a FIFO, a socket, a device) where a file is read or
    /// written: opening it could block forever or act on something else.
    #[error("`{path}` is not a regular file")]
    NotRegular {
        /// The path as given.
        path: String,
    },
    /// The tool did not finish within its time (the file system is stuck).
    #[error("the {tool} tool did not finish within {secs} s")]
    TimedOut {
        /// The tool's name.
        tool: String,
        /// The limit.
        secs: u64,
    },
    /// Any other filesystem error.
    #[error("`{path}`: {reason}")]
    Io {
        /// The path as given.
        path: String,
        /// The operating system's explanation.
        reason: String,
    },
}

/// One line matched by [`Workspace::search`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchMatch {
    /// Path relative to the worktree root, `/`-separated.
    pub path: String,
    /// Line number, 1-based.
    pub line: u32,
    /// The line's text, trailing whitespace removed, cut to 300 characters.
    pub text: String,
}

/// An attempt's worktree, opened as a capability: every file tool goes through it, so nothing the
/// agent asks for can reach outside the worktree.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    dir: Dir,
}

impl Workspace {
    /// Opens the worktree at `root` (which must be an existing directory).
    pub fn open(root: &Path) -> Result<Workspace, ToolError> {
        let shown = root.display().to_string();
        let dir =
            Dir::open_ambient_dir(root, ambient_authority()).map_err(|e| io_error(&shown, &e))?;
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        Ok(Workspace { root, dir })
    }

    /// A second handle on the same worktree (for a tool run on another thread).
    pub fn try_clone(&self) -> Result<Workspace, ToolError> {
        let dir = self
            .dir
            .try_clone()
            .map_err(|e| io_error(&self.root.display().to_string(), &e))?;
        Ok(Workspace {
            root: self.root.clone(),
            dir,
        })
    }

    /// The worktree's path on disk.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Refuses absolute paths, any `..` component, and (through cap-std) symlinks that lead out.
    /// Returns the normalised relative path (`"src/a.rs"`; `""` for the root itself).
    pub fn check_path(&self, path: &str) -> Result<String, ToolError> {
        let escape = || ToolError::Escape {
            path: path.to_string(),
        };
        if path.starts_with('/') || path.starts_with('\\') || path.contains('\0') {
            return Err(escape());
        }
        let mut parts = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(escape()),
                // Any case: a case-insensitive file system would take `.GIT` for `.git`.
                _ if part.eq_ignore_ascii_case(".git") => {
                    return Err(ToolError::GitMetadata {
                        path: path.to_string(),
                    });
                }
                _ => parts.push(part),
            }
        }
        // Resolve every existing prefix through the capability: a symlink that leads outside is
        // an escape even when the final component does not exist yet.
        let mut prefix = String::new();
        for part in &parts {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            match self.dir.symlink_metadata(&prefix) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    if let Err(e) = self.dir.canonicalize(&prefix) {
                        match io_error(path, &e) {
                            ToolError::NotFound { .. } => break, // dangling, inside
                            other => return Err(other),
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(io_error(path, &e)),
            }
        }
        Ok(parts.join("/"))
    }

    /// Reads a UTF-8 text file of at most 1 MiB.
    pub fn read_file(&self, path: &str) -> Result<String, ToolError> {
        self.existing(path)?.ok_or_else(|| ToolError::NotFound {
            path: path.to_string(),
        })
    }

    /// Current content, `None` when the file does not exist (for the on-edit hook's `before`).
    pub fn existing(&self, path: &str) -> Result<Option<String>, ToolError> {
        let rel = self.check_path(path)?;
        if rel.is_empty() {
            return Err(is_a_directory(path));
        }
        let file = match open_regular(&self.dir, &rel, path, Access::Read) {
            Ok(file) => file,
            Err(ToolError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata().map_err(|e| io_error(path, &e))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_large(path, meta.len()));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        // Read one byte past the cap in case the file grew since the metadata call.
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(path, &e))?;
        let len = bytes.len() as u64;
        if len > MAX_FILE_BYTES {
            return Err(too_large(path, len));
        }
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ToolError::NotUtf8 {
                path: path.to_string(),
            })
    }

    /// Entries under `dir` (`""` or `"."` = the root), recursive up to `depth` levels (1 = only
    /// the directory's own entries), sorted, directories with a trailing `/`, `.git` skipped,
    /// symlinks not followed. Paths are relative to the worktree root. At most `limit` entries;
    /// the flag says whether more were left out.
    pub fn list_files(
        &self,
        dir: &str,
        depth: usize,
        limit: usize,
    ) -> Result<(Vec<String>, bool), ToolError> {
        let rel = self.check_path(dir)?;
        let start = self.open_dir(dir, &rel)?;
        let mut out = Vec::new();
        let mut truncated = false;
        self.list_into(&start, &rel, depth.max(1), limit, &mut out, &mut truncated)?;
        Ok((out, truncated))
    }

    fn list_into(
        &self,
        dir: &Dir,
        rel: &str,
        depth: usize,
        limit: usize,
        out: &mut Vec<String>,
        truncated: &mut bool,
    ) -> Result<(), ToolError> {
        for (name, is_dir) in sorted_entries(dir, rel)? {
            if out.len() >= limit {
                *truncated = true;
                return Ok(());
            }
            let path = join(rel, &name);
            if is_dir {
                out.push(format!("{path}/"));
                if depth > 1 {
                    let sub = dir.open_dir(&name).map_err(|e| io_error(&path, &e))?;
                    self.list_into(&sub, &path, depth - 1, limit, out, truncated)?;
                    if *truncated {
                        return Ok(());
                    }
                }
            } else {
                out.push(path);
            }
        }
        Ok(())
    }

    /// Regex search over the text files under `dir` (a directory or a single file). Skips `.git`,
    /// files over 1 MiB and non-UTF-8 files, and does not follow symlinks. Returns at most `limit`
    /// matches in path order, and whether more were left out.
    pub fn search(
        &self,
        pattern: &str,
        dir: &str,
        limit: usize,
    ) -> Result<(Vec<SearchMatch>, bool), ToolError> {
        let regex = Regex::new(pattern).map_err(|e| ToolError::InvalidPattern {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })?;
        let rel = self.check_path(dir)?;
        let mut search = Search {
            regex,
            limit,
            matches: Vec::new(),
            truncated: false,
        };
        if !rel.is_empty() {
            let meta = self
                .dir
                .symlink_metadata(&rel)
                .map_err(|e| io_error(dir, &e))?;
            if meta.is_file() {
                search.file(&self.dir, &rel, &rel, meta.len());
                return Ok((search.matches, search.truncated));
            }
        }
        let start = self.open_dir(dir, &rel)?;
        search.dir(&start, &rel, 0)?;
        Ok((search.matches, search.truncated))
    }

    /// Writes `content` to `path`, creating parent directories; confined to the worktree.
    pub fn write_file(&self, path: &str, content: &str) -> Result<(), ToolError> {
        let rel = self.check_path(path)?;
        if rel.is_empty() {
            return Err(is_a_directory(path));
        }
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.dir
                .create_dir_all(parent)
                .map_err(|e| io_error(path, &e))?;
        }
        let mut file = open_regular(&self.dir, &rel, path, Access::Write)?;
        file.set_len(0).map_err(|e| io_error(path, &e))?;
        io::Write::write_all(&mut file, content.as_bytes()).map_err(|e| io_error(path, &e))
    }

    /// Exact-string replacement: `old` must occur exactly once (an empty `old` never matches).
    /// Returns the (before, after) contents without writing: the caller asks the on-edit hook,
    /// then calls [`Workspace::write_file`].
    pub fn plan_edit(
        &self,
        path: &str,
        old: &str,
        new: &str,
    ) -> Result<(String, String), ToolError> {
        let before = self.read_file(path)?;
        let count = count_overlapping(&before, old);
        match count {
            0 => Err(ToolError::EditNoMatch {
                path: path.to_string(),
            }),
            1 => {
                let after = before.replacen(old, new, 1);
                Ok((before, after))
            }
            count => Err(ToolError::EditAmbiguous {
                path: path.to_string(),
                count,
            }),
        }
    }

    /// Opens the directory `rel` (already checked); `shown` is the path as the caller gave it.
    fn open_dir(&self, shown: &str, rel: &str) -> Result<Dir, ToolError> {
        let target = if rel.is_empty() { "." } else { rel };
        self.dir.open_dir(target).map_err(|e| io_error(shown, &e))
    }
}

/// The state of one [`Workspace::search`] walk.
struct Search {
    regex: Regex,
    limit: usize,
    matches: Vec<SearchMatch>,
    truncated: bool,
}

impl Search {
    fn dir(&mut self, dir: &Dir, rel: &str, depth: usize) -> Result<(), ToolError> {
        if depth > MAX_SEARCH_DEPTH {
            return Ok(());
        }
        for (name, is_dir) in sorted_entries(dir, rel)? {
            if self.truncated {
                return Ok(());
            }
            let path = join(rel, &name);
            if is_dir {
                // A directory that vanished or cannot be opened is skipped, not fatal.
                if let Ok(sub) = dir.open_dir(&name) {
                    self.dir(&sub, &path, depth + 1)?;
                }
            } else if let Ok(meta) = dir.symlink_metadata(&name)
                && meta.is_file()
            {
                self.file(dir, &name, &path, meta.len());
            }
        }
        Ok(())
    }

    /// Searches one regular file `name` in `dir` (`path` is its worktree-relative form).
    fn file(&mut self, dir: &Dir, name: &str, path: &str, len: u64) {
        if len > MAX_FILE_BYTES {
            return;
        }
        let Ok(file) = open_regular(dir, name, path, Access::Read) else {
            return;
        };
        let mut bytes = Vec::new();
        if file.take(MAX_FILE_BYTES).read_to_end(&mut bytes).is_err() {
            return;
        }
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return;
        };
        for (index, line) in text.lines().enumerate() {
            if !self.regex.is_match(line) {
                continue;
            }
            if self.matches.len() >= self.limit {
                self.truncated = true;
                return;
            }
            let trimmed = line.trim_end();
            let text = match trimmed.char_indices().nth(MAX_MATCH_CHARS) {
                Some((cut, _)) => trimmed[..cut].to_string(),
                None => trimmed.to_string(),
            };
            self.matches.push(SearchMatch {
                path: path.to_string(),
                line: u32::try_from(index + 1).unwrap_or(u32::MAX),
                text,
            });
        }
    }
}

/// The entries of `dir`, sorted by name, `.git` left out, as (name, is a real directory).
/// Symlinks count as files (they are not followed).
fn sorted_entries(dir: &Dir, rel: &str) -> Result<Vec<(String, bool)>, ToolError> {
    let shown = if rel.is_empty() { "." } else { rel };
    let mut entries = Vec::new();
    for entry in dir.entries().map_err(|e| io_error(shown, &e))? {
        let entry = entry.map_err(|e| io_error(shown, &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.eq_ignore_ascii_case(".git") {
            continue;
        }
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        entries.push((name, is_dir));
    }
    entries.sort();
    Ok(entries)
}

/// `rel/name`, or `name` at the root.
fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// Occurrences of `needle` in `haystack`, overlapping ones included (`"aa"` occurs twice in
/// `"aaa"`: replacing "the" occurrence would be a guess). An empty needle never matches.
fn count_overlapping(haystack: &str, needle: &str) -> usize {
    let Some(first) = needle.chars().next() else {
        return 0;
    };
    let mut count = 0;
    let mut start = 0;
    while let Some(found) = haystack[start..].find(needle) {
        count += 1;
        start += found + first.len_utf8();
    }
    count
}

/// [`confined::open_regular`] with its refusals as tool errors naming `shown`.
fn open_regular(dir: &Dir, rel: &str, shown: &str, access: Access) -> Result<File, ToolError> {
    confined::open_regular(dir, rel, access).map_err(|e| match e {
        OpenError::Directory => is_a_directory(shown),
        OpenError::NotRegular => ToolError::NotRegular {
            path: shown.to_string(),
        },
        OpenError::Io(e) => io_error(shown, &e),
    })
}

/// Maps an I/O error to a tool error, recognising cap-std's sandbox escape.
fn io_error(path: &str, e: &io::Error) -> ToolError {
    let path = path.to_string();
    if e.kind() == io::ErrorKind::NotFound {
        return ToolError::NotFound { path };
    }
    // cap-std reports a resolution that leaves the directory as PermissionDenied with this text
    // (the kernel's EXDEV from openat2 RESOLVE_BENEATH is mapped to the same error).
    if e.kind() == io::ErrorKind::PermissionDenied
        && e.to_string().contains("outside of the filesystem")
    {
        return ToolError::Escape { path };
    }
    ToolError::Io {
        path,
        reason: e.to_string(),
    }
}

fn is_a_directory(path: &str) -> ToolError {
    ToolError::Io {
        path: path.to_string(),
        reason: "is a directory".to_string(),
    }
}

fn too_large(path: &str, bytes: u64) -> ToolError {
    ToolError::TooLarge {
        path: path.to_string(),
        bytes,
        cap: MAX_FILE_BYTES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, Workspace) {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::open(tmp.path()).unwrap();
        (tmp, ws)
    }

    fn is_escape(r: Result<impl std::fmt::Debug, ToolError>) -> bool {
        matches!(r, Err(ToolError::Escape { .. }))
    }

    #[test]
    fn lexical_escapes_are_refused() {
        let (_tmp, ws) = setup();
        for path in ["../x", "/etc/passwd", "a/../../x", "a/..", ".."] {
            assert!(is_escape(ws.check_path(path)), "{path}");
            assert!(is_escape(ws.read_file(path)), "{path}");
            assert!(is_escape(ws.write_file(path, "x")), "{path}");
        }
        let err = ws.check_path("../x").unwrap_err();
        assert_eq!(err.to_string(), "`../x` leads outside the worktree");
        assert_eq!(ws.check_path("./src//a.rs").unwrap(), "src/a.rs");
        assert_eq!(ws.check_path(".").unwrap(), "");
    }

    #[test]
    fn symlinks_leading_out_are_refused_and_nothing_is_written_outside() {
        let (tmp, ws) = setup();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.txt");
        std::fs::write(&secret, "original").unwrap();
        symlink(outside.path(), tmp.path().join("out_dir")).unwrap();
        symlink(&secret, tmp.path().join("out_file")).unwrap();
        // A relative symlink climbing out, too.
        symlink("../", tmp.path().join("up")).unwrap();

        for path in ["out_dir/secret.txt", "out_file", "up/x"] {
            assert!(is_escape(ws.check_path(path)), "check {path}");
            assert!(is_escape(ws.read_file(path)), "read {path}");
            assert!(is_escape(ws.existing(path)), "existing {path}");
            assert!(is_escape(ws.write_file(path, "pwned")), "write {path}");
        }
        assert!(is_escape(ws.write_file("out_dir/new/deep.txt", "pwned")));
        assert!(is_escape(ws.list_files("out_dir", 2, 10)));
        assert!(is_escape(ws.search("x", "out_dir", 10)));
        assert!(is_escape(ws.plan_edit("out_file", "original", "pwned")));

        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "original");
        let mut names: Vec<_> = std::fs::read_dir(outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["secret.txt"]);
    }

    #[test]
    fn symlink_inside_the_worktree_is_followed() {
        let (tmp, ws) = setup();
        ws.write_file("real/a.txt", "hello").unwrap();
        symlink("real", tmp.path().join("alias")).unwrap();
        assert_eq!(ws.check_path("alias/a.txt").unwrap(), "alias/a.txt");
        assert_eq!(ws.read_file("alias/a.txt").unwrap(), "hello");
    }

    #[test]
    fn write_then_read_round_trip_in_a_new_nested_dir() {
        let (tmp, ws) = setup();
        ws.write_file("src/deep/er/mod.rs", "fn main() {}\n")
            .unwrap();
        assert_eq!(
            ws.read_file("src/deep/er/mod.rs").unwrap(),
            "fn main() {}\n"
        );
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("src/deep/er/mod.rs")).unwrap(),
            "fn main() {}\n"
        );
        assert_eq!(ws.existing("src/nope.rs").unwrap(), None);
        assert_eq!(
            ws.read_file("src/nope.rs"),
            Err(ToolError::NotFound {
                path: "src/nope.rs".into()
            })
        );
        assert!(matches!(ws.read_file("src"), Err(ToolError::Io { .. })));
        assert_eq!(ws.root(), tmp.path().canonicalize().unwrap());
    }

    #[test]
    fn read_refuses_large_and_binary_files() {
        let (tmp, ws) = setup();
        std::fs::write(tmp.path().join("big"), vec![b'a'; 1024 * 1024 + 1]).unwrap();
        std::fs::write(tmp.path().join("bin"), [0xff, 0xfe, 0x00]).unwrap();
        assert_eq!(
            ws.read_file("big"),
            Err(ToolError::TooLarge {
                path: "big".into(),
                bytes: 1024 * 1024 + 1,
                cap: MAX_FILE_BYTES
            })
        );
        assert_eq!(
            ws.read_file("bin"),
            Err(ToolError::NotUtf8 { path: "bin".into() })
        );
    }

    #[test]
    fn list_files_depth_limit_slash_and_git() {
        let (tmp, ws) = setup();
        std::fs::create_dir_all(tmp.path().join(".git/objects")).unwrap();
        std::fs::write(tmp.path().join(".git/HEAD"), "ref").unwrap();
        ws.write_file("b.txt", "").unwrap();
        ws.write_file("a/x.rs", "").unwrap();
        ws.write_file("a/sub/y.rs", "").unwrap();
        std::fs::write(tmp.path().join("a/.git"), "gitdir: elsewhere").unwrap();
        // The tools themselves refuse any path through `.git`, in any case.
        for path in ["a/.git", ".git/HEAD", "x/.GIT/config"] {
            assert_eq!(
                ws.write_file(path, "x"),
                Err(ToolError::GitMetadata { path: path.into() })
            );
            assert!(matches!(
                ws.read_file(path),
                Err(ToolError::GitMetadata { .. })
            ));
        }
        assert!(matches!(
            ws.list_files(".git", 1, 10),
            Err(ToolError::GitMetadata { .. })
        ));

        let (one, more) = ws.list_files("", 1, 100).unwrap();
        assert_eq!(one, ["a/", "b.txt"]);
        assert!(!more);

        let (all, more) = ws.list_files(".", 5, 100).unwrap();
        assert_eq!(all, ["a/", "a/sub/", "a/sub/y.rs", "a/x.rs", "b.txt"]);
        assert!(!more);

        let (two, _) = ws.list_files("a", 1, 100).unwrap();
        assert_eq!(two, ["a/sub/", "a/x.rs"]);

        let (cut, more) = ws.list_files("", 5, 3).unwrap();
        assert_eq!(cut, ["a/", "a/sub/", "a/sub/y.rs"]);
        assert!(more);

        let (exact, more) = ws.list_files("", 5, 5).unwrap();
        assert_eq!(exact.len(), 5);
        assert!(!more);

        assert!(matches!(
            ws.list_files("missing", 1, 10),
            Err(ToolError::NotFound { .. })
        ));
    }

    #[test]
    fn search_finds_exact_lines_and_rejects_bad_patterns() {
        let (tmp, ws) = setup();
        ws.write_file("src/a.rs", "fn one() {}\n\nfn two() {}\n// two again\n")
            .unwrap();
        ws.write_file("src/b.rs", "let two = 2;\n").unwrap();
        std::fs::create_dir_all(tmp.path().join(".git")).unwrap();
        std::fs::write(tmp.path().join(".git/config"), "two\n").unwrap();
        std::fs::write(tmp.path().join("bin"), [b't', b'w', b'o', 0xff]).unwrap();
        ws.write_file("long.txt", &format!("two{}\n", "x".repeat(400)))
            .unwrap();

        let (found, more) = ws.search(r"\btwo\b", "src", 10).unwrap();
        assert!(!more);
        let got: Vec<_> = found
            .iter()
            .map(|m| (m.path.as_str(), m.line, m.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("src/a.rs", 3, "fn two() {}"),
                ("src/a.rs", 4, "// two again"),
                ("src/b.rs", 1, "let two = 2;"),
            ]
        );

        let (all, _) = ws.search("two", "", 10).unwrap();
        assert!(
            all.iter()
                .all(|m| !m.path.starts_with(".git") && m.path != "bin")
        );
        let long = all.iter().find(|m| m.path == "long.txt").unwrap();
        assert_eq!(long.text.chars().count(), 300);

        let (one, more) = ws.search("two", "src/a.rs", 1).unwrap();
        assert_eq!(one.len(), 1);
        assert!(more);

        assert!(matches!(
            ws.search("(unclosed", "", 10),
            Err(ToolError::InvalidPattern { pattern, .. }) if pattern == "(unclosed"
        ));
    }

    #[test]
    fn plan_edit_no_match_ambiguous_and_success() {
        let (_tmp, ws) = setup();
        ws.write_file("f.txt", "alpha beta beta aaa\n").unwrap();
        assert_eq!(
            ws.plan_edit("f.txt", "gamma", "x"),
            Err(ToolError::EditNoMatch {
                path: "f.txt".into()
            })
        );
        assert_eq!(
            ws.plan_edit("f.txt", "beta", "x"),
            Err(ToolError::EditAmbiguous {
                path: "f.txt".into(),
                count: 2
            })
        );
        assert!(matches!(
            ws.plan_edit("f.txt", "aa", "x"),
            Err(ToolError::EditAmbiguous { count: 2, .. })
        ));
        assert!(matches!(
            ws.plan_edit("f.txt", "", "x"),
            Err(ToolError::EditNoMatch { .. })
        ));
        let (before, after) = ws.plan_edit("f.txt", "alpha", "omega").unwrap();
        assert_eq!(before, "alpha beta beta aaa\n");
        assert_eq!(after, "omega beta beta aaa\n");
        // Planning does not write.
        assert_eq!(ws.read_file("f.txt").unwrap(), before);
        assert!(matches!(
            ws.plan_edit("nope.txt", "a", "b"),
            Err(ToolError::NotFound { .. })
        ));
    }
}
