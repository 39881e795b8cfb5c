//! Imports of a Rust source file: `use` trees (grouped, nested, multi-line, `pub use`),
//! `extern crate`, and `crate::`/`super::` paths used inline. Comments, strings, char
//! literals and lifetimes are skipped by a small lexer.

use crate::Import;
use crate::paths::{file_name, join, parent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    PathSep,
    Punct(char),
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    tok: Tok<'a>,
    line: u32,
}

fn lex(src: &str) -> Vec<Token<'_>> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut line = 1u32;
    let n = bytes.len();
    // Skips a quoted string starting at the opening quote `bytes[i]`; returns the index after it.
    let skip_string = |mut i: usize, line: &mut u32| -> usize {
        i += 1;
        while i < n {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                b'\n' => {
                    *line += 1;
                    i += 1;
                }
                _ => i += 1,
            }
        }
        n
    };
    // Skips a raw string `r#*"..."#*` whose first `#` or `"` is at `i`.
    let skip_raw = |mut i: usize, line: &mut u32| -> usize {
        let mut hashes = 0;
        while i < n && bytes[i] == b'#' {
            hashes += 1;
            i += 1;
        }
        if i >= n || bytes[i] != b'"' {
            return i;
        }
        i += 1;
        while i < n {
            if bytes[i] == b'\n' {
                *line += 1;
            }
            if bytes[i] == b'"'
                && bytes[i + 1..]
                    .iter()
                    .take(hashes)
                    .filter(|&&b| b == b'#')
                    .count()
                    == hashes
            {
                return i + 1 + hashes;
            }
            i += 1;
        }
        n
    };
    while i < n {
        let c = bytes[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            _ if c.is_ascii_whitespace() => i += 1,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < n && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while i < n && depth > 0 {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        if bytes[i] == b'\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            b'"' => i = skip_string(i, &mut line),
            b'\'' => {
                // A char literal ('a', '\n', '\u{1F600}') or a lifetime / label ('a).
                if is_char_literal(src, i) {
                    i = skip_char_literal(src, i);
                } else {
                    i += 1;
                    while i < n && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                        i += 1;
                    }
                }
            }
            b':' if bytes.get(i + 1) == Some(&b':') => {
                tokens.push(Token {
                    tok: Tok::PathSep,
                    line,
                });
                i += 2;
            }
            _ if c.is_ascii_digit() => {
                while i < n && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < n
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                let word = src.get(start..i).unwrap_or("");
                let next = bytes.get(i).copied();
                match (word, next) {
                    ("r" | "br" | "cr", Some(b'"' | b'#'))
                        if next == Some(b'"')
                            || bytes.get(i + 1).is_some_and(|&b| b == b'#' || b == b'"') =>
                    {
                        i = skip_raw(i, &mut line);
                    }
                    ("r", Some(b'#')) => {
                        // A raw identifier: r#type.
                        i += 1;
                        let start = i;
                        while i < n && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                            i += 1;
                        }
                        tokens.push(Token {
                            tok: Tok::Ident(src.get(start..i).unwrap_or("")),
                            line,
                        });
                    }
                    ("b" | "c", Some(b'"')) => i = skip_string(i, &mut line),
                    ("b", Some(b'\'')) => i = skip_char_literal(src, i),
                    _ => tokens.push(Token {
                        tok: Tok::Ident(word),
                        line,
                    }),
                }
            }
            _ => {
                let ch = src.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                tokens.push(Token {
                    tok: Tok::Punct(ch),
                    line,
                });
                i += ch.len_utf8();
            }
        }
    }
    tokens
}

/// Whether the `'` at `i` opens a char literal (rather than a lifetime or label).
fn is_char_literal(src: &str, i: usize) -> bool {
    let rest = src.get(i + 1..).unwrap_or("");
    let mut chars = rest.chars();
    match chars.next() {
        Some('\\') => true,
        Some(_) => chars.next() == Some('\''),
        None => false,
    }
}

/// Skips the char literal whose opening `'` is at `i`; returns the index after it.
fn skip_char_literal(src: &str, i: usize) -> usize {
    let bytes = src.as_bytes();
    let mut j = i + 1;
    if bytes.get(j) == Some(&b'\\') {
        j += 2; // the backslash and the (ASCII) escaped character
    } else {
        j += src
            .get(j..)
            .and_then(|s| s.chars().next())
            .map_or(1, char::len_utf8);
    }
    while j < bytes.len() && bytes[j] != b'\'' && bytes[j] != b'\n' {
        j += 1;
    }
    (j + 1).min(bytes.len())
}

/// One imported path: its segments and the line of its last segment.
struct Leaf {
    segments: Vec<String>,
    glob: bool,
    line: u32,
}

/// Parses a use tree at `tokens[*i]` with `prefix` already read; appends leaves to `out`.
fn use_tree(tokens: &[Token<'_>], i: &mut usize, prefix: &mut Vec<String>, out: &mut Vec<Leaf>) {
    let depth = prefix.len();
    if matches!(tokens.get(*i), Some(t) if t.tok == Tok::PathSep) {
        *i += 1;
    }
    while let Some(token) = tokens.get(*i) {
        match token.tok {
            Tok::Ident(word) => {
                prefix.push(word.to_string());
                *i += 1;
                if matches!(tokens.get(*i), Some(t) if t.tok == Tok::PathSep) {
                    *i += 1;
                    continue;
                }
                if matches!(tokens.get(*i), Some(t) if t.tok == Tok::Ident("as")) {
                    *i += 2;
                }
                out.push(Leaf {
                    segments: prefix.clone(),
                    glob: false,
                    line: token.line,
                });
                break;
            }
            Tok::Punct('*') => {
                *i += 1;
                out.push(Leaf {
                    segments: prefix.clone(),
                    glob: true,
                    line: token.line,
                });
                break;
            }
            Tok::Punct('{') => {
                *i += 1;
                loop {
                    match tokens.get(*i).map(|t| t.tok) {
                        None | Some(Tok::Punct(';')) => break,
                        Some(Tok::Punct('}')) => {
                            *i += 1;
                            break;
                        }
                        Some(Tok::Punct(',')) => *i += 1,
                        Some(_) => {
                            let before = *i;
                            use_tree(tokens, i, prefix, out);
                            if *i == before {
                                *i += 1; // malformed: make progress
                            }
                        }
                    }
                }
                break;
            }
            _ => break,
        }
    }
    prefix.truncate(depth);
}

/// Where a file's crate root and own module directory are.
struct Context {
    crate_root: String,
    module_dir: String,
}

fn context(path: &str, rust_root: &str) -> Context {
    let root = rust_root.trim_matches('/');
    let crate_root = if root.is_empty() || path.starts_with(&format!("{root}/")) {
        root.to_string()
    } else if let Some(i) = path.rfind("/src/") {
        path[..i + 4].to_string() // a workspace member: crates/foo/src
    } else if path.starts_with("src/") {
        "src".to_string()
    } else {
        root.to_string()
    };
    let dir = parent(path);
    let name = file_name(path);
    let module_dir = match name {
        "mod.rs" | "lib.rs" | "main.rs" => dir.to_string(),
        _ => join(dir, name.strip_suffix(".rs").unwrap_or(name)),
    };
    Context {
        crate_root,
        module_dir,
    }
}

const EXTERNAL_ROOTS: [&str; 5] = ["std", "core", "alloc", "proc_macro", "test"];

fn resolve(leaf: Leaf, ctx: &Context) -> Option<Import> {
    let mut segments = leaf.segments;
    if segments.len() > 1 && segments.last().is_some_and(|s| s == "self") {
        segments.pop();
    }
    let first = segments.first()?.clone();
    let mut module = segments.join("::");
    if leaf.glob {
        module.push_str("::*");
    }
    let (base, rest): (String, &[String]) = match first.as_str() {
        "crate" => (ctx.crate_root.clone(), &segments[1..]),
        "self" => (ctx.module_dir.clone(), &segments[1..]),
        "super" => {
            let supers = segments.iter().take_while(|s| *s == "super").count();
            let mut base = ctx.module_dir.as_str();
            for _ in 0..supers {
                base = parent(base);
            }
            (base.to_string(), &segments[supers..])
        }
        s if EXTERNAL_ROOTS.contains(&s) => {
            return Some(Import {
                line: leaf.line,
                module,
                candidates: Vec::new(),
            });
        }
        // Another crate, or (2018 uniform paths) a child module of this one.
        _ => (ctx.module_dir.clone(), &segments[..]),
    };
    let mut candidates = Vec::new();
    if rest.is_empty() {
        if !base.is_empty() {
            candidates.push(format!("{base}.rs"));
            candidates.push(format!("{base}/mod.rs"));
        }
    } else {
        for k in (1..=rest.len()).rev() {
            let p = join(&base, &rest[..k].join("/"));
            candidates.push(format!("{p}.rs"));
            candidates.push(format!("{p}/mod.rs"));
        }
    }
    Some(Import {
        line: leaf.line,
        module,
        candidates,
    })
}

/// The imports of Rust source `text` at repository path `path`.
pub fn imports(path: &str, text: &str, rust_root: &str) -> Vec<Import> {
    let tokens = lex(text);
    let ctx = context(path, rust_root);
    let mut leaves = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        match token.tok {
            Tok::Ident("use")
                if !matches!(tokens.get(i + 1).map(|t| t.tok), Some(Tok::Punct('<'))) =>
            {
                i += 1;
                use_tree(&tokens, &mut i, &mut Vec::new(), &mut leaves);
                while i < tokens.len() && tokens[i].tok != Tok::Punct(';') {
                    i += 1;
                }
            }
            Tok::Ident("extern") => {
                if let (Some(Tok::Ident("crate")), Some(Tok::Ident(name))) = (
                    tokens.get(i + 1).map(|t| t.tok),
                    tokens.get(i + 2).map(|t| t.tok),
                ) {
                    if name != "self" {
                        leaves.push(Leaf {
                            segments: vec![name.to_string()],
                            glob: false,
                            line: tokens[i + 2].line,
                        });
                    }
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(head @ ("crate" | "super"))
                if matches!(tokens.get(i + 1).map(|t| t.tok), Some(Tok::PathSep))
                    && !matches!(
                        i.checked_sub(1).and_then(|j| tokens.get(j)).map(|t| t.tok),
                        Some(Tok::Ident("in") | Tok::PathSep | Tok::Punct('$'))
                    ) =>
            {
                // A path used inline: crate::infrastructure::db::connect().
                let mut segments = vec![head.to_string()];
                let mut line = token.line;
                i += 1;
                while let (Some(Tok::PathSep), Some(Tok::Ident(word))) = (
                    tokens.get(i).map(|t| t.tok),
                    tokens.get(i + 1).map(|t| t.tok),
                ) {
                    segments.push(word.to_string());
                    line = tokens[i + 1].line;
                    i += 2;
                }
                leaves.push(Leaf {
                    segments,
                    glob: false,
                    line,
                });
            }
            _ => i += 1,
        }
    }
    leaves
        .into_iter()
        .filter_map(|leaf| resolve(leaf, &ctx))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(path: &str, text: &str) -> Vec<(u32, String)> {
        imports(path, text, "src")
            .into_iter()
            .map(|i| (i.line, i.module))
            .collect()
    }

    fn m(line: u32, module: &str) -> (u32, String) {
        (line, module.to_string())
    }

    #[test]
    fn use_statements_of_every_shape() {
        let src = r#"
use crate::infrastructure::db;
pub use crate::domain::{User, Order as O};
pub(crate) use super::sibling::*;
use self::child::{self, Thing};
use std::collections::{
    HashMap,
    hash_map::{Entry, self},
};
use ::serde::Deserialize;
extern crate sqlx;
extern crate self as me;
#[cfg(test)] use crate::testing::Fixture;
"#;
        assert_eq!(
            modules("src/app/service.rs", src),
            vec![
                m(2, "crate::infrastructure::db"),
                m(3, "crate::domain::User"),
                m(3, "crate::domain::Order"),
                m(4, "super::sibling::*"),
                m(5, "self::child"),
                m(5, "self::child::Thing"),
                m(7, "std::collections::HashMap"),
                m(8, "std::collections::hash_map::Entry"),
                m(8, "std::collections::hash_map"),
                m(10, "serde::Deserialize"),
                m(11, "sqlx"),
                m(13, "crate::testing::Fixture"),
            ]
        );
    }

    #[test]
    fn comments_strings_and_lifetimes_are_not_imports() {
        let src = r##"
// use crate::infrastructure::db;
/* use crate::infrastructure::a; /* nested */ use crate::infrastructure::b; */
const S: &str = "use crate::infrastructure::c;";
const R: &str = r#"use crate::infrastructure::"d";"#;
const B: &[u8] = b"use crate::infrastructure::e;";
fn f<'a>(x: &'a str) -> char { let _ = '"'; let _ = '\''; 'x' }
fn g() -> impl Sized + use<> {}
use crate::real;
"##;
        assert_eq!(modules("src/lib.rs", src), vec![m(9, "crate::real")]);
    }

    #[test]
    fn inline_paths_count_but_visibility_does_not() {
        let src = "pub(crate) fn f() { let p = crate::infrastructure::db::Pool::new(); }\n\
                   pub(in crate::app) fn g() { super::helpers::h(); }\n";
        assert_eq!(
            modules("src/app/mod.rs", src),
            vec![
                m(1, "crate::infrastructure::db::Pool::new"),
                m(2, "super::helpers::h")
            ]
        );
    }

    #[test]
    fn candidates_follow_the_module_tree() {
        let got = imports(
            "src/domain/user.rs",
            "use crate::infrastructure::db::Pool;",
            "src",
        );
        assert_eq!(
            got[0].candidates,
            vec![
                "src/infrastructure/db/Pool.rs",
                "src/infrastructure/db/Pool/mod.rs",
                "src/infrastructure/db.rs",
                "src/infrastructure/db/mod.rs",
                "src/infrastructure.rs",
                "src/infrastructure/mod.rs",
            ]
        );
        // super from a file module and from a mod.rs.
        let got = imports("src/domain/user.rs", "use super::order::Order;", "src");
        assert_eq!(got[0].candidates[2], "src/domain/order.rs");
        let got = imports("src/domain/mod.rs", "use super::infrastructure;", "src");
        assert_eq!(got[0].candidates[0], "src/infrastructure.rs");
        let got = imports("src/domain/user.rs", "use super::super::x;", "src");
        assert_eq!(got[0].candidates[0], "src/x.rs");
        // self in a file module is its own directory.
        let got = imports("src/domain/user.rs", "use self::email::Email;", "src");
        assert_eq!(got[0].candidates[2], "src/domain/user/email.rs");
        // A workspace member's crate root.
        let got = imports("crates/core/src/a.rs", "use crate::b::C;", "src");
        assert_eq!(got[0].candidates[2], "crates/core/src/b.rs");
        // Uniform paths from the crate root.
        let got = imports("src/main.rs", "use infrastructure::db;", "src");
        assert_eq!(got[0].candidates[0], "src/infrastructure/db.rs");
        // std has no candidates.
        assert!(
            imports("src/main.rs", "use std::fs;", "src")[0]
                .candidates
                .is_empty()
        );
    }

    #[test]
    fn custom_rust_root() {
        let got = imports("backend/domain/a.rs", "use crate::infra::Db;", "backend");
        assert_eq!(got[0].candidates[2], "backend/infra.rs");
    }
}
