//! Path globs with the gitignore-like semantics people expect from a rules file.
//!
//! - `*` matches within one path segment, `?` one character, `[abc]` / `[a-z]` a class,
//!   `{a,b}` alternatives; `**` as a whole segment matches any number of segments (zero too).
//! - A pattern without a `/` matches a file or directory name anywhere: `.env` matches
//!   `config/.env`, `*.lock` matches `a/b/Cargo.lock`, `node_modules` matches
//!   `web/node_modules/x/index.js`.
//! - A pattern with a `/` is anchored at the repository root: `src/*.rs` matches `src/a.rs`
//!   but not `lib/src/a.rs`. A leading `/` or `./` only anchors.
//! - A pattern that matches a directory matches everything below it: `src/domain` matches
//!   `src/domain/user.rs`, as does `src/domain/**`.
//! - A trailing `/` restricts the pattern to directories: `build/` matches `build/x.o`, not a
//!   file named `build`.
//!
//! Paths are repository-relative with `/` separators; a leading `./` or `/` is ignored.
//! Matching is done by the small `fast-glob` crate (no regex engine).

/// Whether `path` matches `pattern` (see the [module docs](self) for the semantics).
///
/// ```
/// use gaffer_sdk::glob::matches;
/// assert!(matches(".env", "config/.env"));
/// assert!(matches(".env.*", ".env.local"));
/// assert!(matches("**/migrations/**", "db/migrations/0001.sql"));
/// assert!(matches(".git/**", ".git/config"));
/// assert!(!matches("src/*.rs", "src/a/b.rs"));
/// ```
pub fn matches(pattern: &str, path: &str) -> bool {
    let path = normalize_path(path);
    if path.is_empty() {
        return false;
    }
    let mut pat = pattern.trim();
    let mut dir_only = false;
    if pat.len() > 1 && pat.ends_with('/') {
        pat = pat.trim_end_matches('/');
        dir_only = true;
    }
    let mut anchored = false;
    loop {
        if let Some(rest) = pat.strip_prefix("./") {
            pat = rest;
            anchored = true;
        } else if let Some(rest) = pat.strip_prefix('/') {
            pat = rest;
            anchored = true;
        } else {
            break;
        }
    }
    if pat.is_empty() {
        return false;
    }
    if !anchored && !pat.contains('/') {
        // A name anywhere: any segment (a directory one only, for `dir/`).
        let mut segments = path.split('/').peekable();
        while let Some(segment) = segments.next() {
            let is_last = segments.peek().is_none();
            if (!dir_only || !is_last) && fast_glob::glob_match(pat, segment) {
                return true;
            }
        }
        return false;
    }
    if !dir_only && fast_glob::glob_match(pat, path) {
        return true;
    }
    // An ancestor directory of the path matches: everything below it does.
    path.char_indices()
        .filter(|&(_, c)| c == '/')
        .any(|(i, _)| fast_glob::glob_match(pat, &path[..i]))
}

/// The first of `patterns` that `path` matches, if any (for a reason that names it).
///
/// ```
/// let globs = vec![".env".to_string(), "**/migrations/**".to_string()];
/// assert_eq!(gaffer_sdk::glob::first_match(&globs, "config/.env"), Some(".env"));
/// assert_eq!(gaffer_sdk::glob::first_match(&globs, "src/main.rs"), None);
/// ```
pub fn first_match<'a, S: AsRef<str>>(patterns: &'a [S], path: &str) -> Option<&'a str> {
    patterns
        .iter()
        .map(AsRef::as_ref)
        .find(|pattern| matches(pattern, path))
}

/// Whether `path` matches any of `patterns`.
pub fn matches_any<S: AsRef<str>>(patterns: &[S], path: &str) -> bool {
    first_match(patterns, path).is_some()
}

fn normalize_path(path: &str) -> &str {
    crate::paths::strip_leading(path.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[track_caller]
    fn yes(pattern: &str, path: &str) {
        assert!(matches(pattern, path), "`{pattern}` should match `{path}`");
    }

    #[track_caller]
    fn no(pattern: &str, path: &str) {
        assert!(
            !matches(pattern, path),
            "`{pattern}` should not match `{path}`"
        );
    }

    #[test]
    fn basename_patterns_match_anywhere() {
        yes(".env", ".env");
        yes(".env", "config/.env");
        yes(".env", "a/b/c/.env");
        no(".env", ".envrc");
        no(".env", "config/.env.local");
        yes(".env.*", ".env.local");
        yes(".env.*", "deploy/.env.production");
        no(".env.*", ".env");
        yes("*.lock", "Cargo.lock");
        yes("*.lock", "a/.b/Cargo.lock");
        yes("?.rs", "src/a.rs");
        no("?.rs", "src/ab.rs");
        yes("*.{rs,py}", "x/y.py");
        yes("[ab].txt", "d/b.txt");
        no("[ab].txt", "d/c.txt");
    }

    #[test]
    fn a_matching_directory_covers_everything_below() {
        yes("node_modules", "web/node_modules/x/index.js");
        yes("src/domain", "src/domain/user.rs");
        yes("src/domain", "src/domain");
        no("src/domain", "src/domainx/user.rs");
        yes("build/", "build/x.o");
        no("build/", "build");
        yes("migrations/", "db/migrations/1.sql");
        no("migrations/", "db/migrations");
    }

    #[test]
    fn slash_patterns_are_anchored() {
        yes("src/*.rs", "src/a.rs");
        no("src/*.rs", "src/a/b.rs");
        no("src/*.rs", "lib/src/a.rs");
        yes("/.env", ".env");
        no("/.env", "config/.env");
        yes("./Cargo.toml", "Cargo.toml");
        no("./Cargo.toml", "sub/Cargo.toml");
        yes("src/*.rs", "./src/a.rs");
    }

    #[test]
    fn globstar_spans_segments() {
        yes("**/migrations/**", "migrations/0001.sql");
        yes("**/migrations/**", "db/migrations/x/0001.sql");
        no("**/migrations/**", "db/migration/0001.sql");
        yes(".git/**", ".git/config");
        yes(".git/**", ".git/refs/heads/main");
        no(".git/**", ".github/workflows/ci.yml");
        yes("**/*.js", "a/b.c/c.js");
        yes("**/*.lock", "Cargo.lock");
        yes("**/package-lock.json", "package-lock.json");
        yes("**/package-lock.json", "web/package-lock.json");
        yes("src/**/*.rs", "src/a.rs");
        yes("src/**/*.rs", "src/a/b/c.rs");
        no("src/**/*.rs", "tests/a.rs");
        yes("**", "anything/at/all.txt");
        yes("src/**", "src/a/b");
    }

    #[test]
    fn degenerate_inputs() {
        no("", "a");
        no("/", "a");
        no("*", "");
        yes("*", "a");
    }
}
