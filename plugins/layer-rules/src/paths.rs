//! Lexical path helpers (no filesystem).

/// The directory part of `path` ("" for a file at the root).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

/// The file name of `path`.
pub fn file_name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// `base` and `rest` joined with `/`, either may be empty.
pub fn join(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (false, true) => base.to_string(),
        (false, false) => format!("{base}/{rest}"),
    }
}

pub use gaffer_sdk::paths::normalize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(parent("src/a/b.rs"), "src/a");
        assert_eq!(parent("b.rs"), "");
        assert_eq!(file_name("src/a/b.rs"), "b.rs");
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", ""), "a");
        assert_eq!(join("a", "b/c"), "a/b/c");
        assert_eq!(normalize("./src/../lib//x/./y"), "lib/x/y");
        assert_eq!(normalize("../../x"), "x");
    }
}
