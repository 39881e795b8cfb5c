//! Repository paths as plugins see them: relative, `/`-separated, compared lexically.

/// Normalise lexically: drop `.` and empty segments, apply `..` (never above the root).
///
/// ```
/// assert_eq!(gaffer_sdk::paths::normalize("./src/../lib//x/./y"), "lib/x/y");
/// assert_eq!(gaffer_sdk::paths::normalize("../../x"), "x");
/// ```
pub fn normalize(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    segments.join("/")
}

/// Strip leading `./` and `/` (cheap, no allocation; `..` is left alone).
///
/// ```
/// assert_eq!(gaffer_sdk::paths::strip_leading("././/src/a.rs"), "src/a.rs");
/// ```
pub fn strip_leading(path: &str) -> &str {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            return p;
        }
    }
}
