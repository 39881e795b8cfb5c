//! Imports of a Python source file: `import a.b as x, c`, `from a.b import (c, d)`, relative
//! `from ..x import y`. Comments and strings (triple-quoted too) are skipped; parenthesised and
//! backslash-continued statements are joined.

use crate::Import;
use crate::paths::{join, parent};

/// Logical lines of code (strings blanked, comments dropped) with their first line number.
fn logical_lines(src: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start_line = 1u32;
    let mut line = 1u32;
    let mut depth = 0i32;
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '"' | '\'' => {
                let triple = {
                    let mut look = chars.clone();
                    look.next() == Some(c) && look.next() == Some(c)
                };
                if triple {
                    chars.next();
                    chars.next();
                }
                let mut run = 0;
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => {
                            if chars.next() == Some('\n') {
                                line += 1;
                            }
                            run = 0;
                        }
                        '\n' => {
                            line += 1;
                            run = 0;
                            if !triple {
                                break; // an unterminated string ends at the line
                            }
                        }
                        d if d == c => {
                            run += 1;
                            if !triple || run == 3 {
                                break;
                            }
                        }
                        _ => run = 0,
                    }
                }
                current.push_str("\"\"");
            }
            '(' | '[' | '{' => {
                depth += 1;
                current.push(c);
            }
            ')' | ']' | '}' => {
                depth = (depth - 1).max(0);
                current.push(c);
            }
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
                line += 1;
                current.push(' ');
            }
            '\n' => {
                line += 1;
                if depth > 0 {
                    current.push(' ');
                } else {
                    if !current.trim().is_empty() {
                        out.push((start_line, std::mem::take(&mut current)));
                    }
                    current.clear();
                    start_line = line;
                }
            }
            _ => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        out.push((start_line, current));
    }
    out
}

/// Candidate files of dotted module `segments` below `base`, most specific first.
fn module_candidates(base: &str, segments: &[&str], out: &mut Vec<String>) {
    for k in (1..=segments.len()).rev() {
        let p = join(base, &segments[..k].join("/"));
        out.push(format!("{p}.py"));
        out.push(format!("{p}/__init__.py"));
    }
}

fn is_identifier_path(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

fn strip_alias(item: &str) -> &str {
    let item = item.trim();
    match item.find(" as ") {
        Some(i) => item[..i].trim(),
        None => item,
    }
}

/// The imports of Python source `text` at repository path `path`.
pub fn imports(path: &str, text: &str, roots: &[String]) -> Vec<Import> {
    let mut out = Vec::new();
    for (line, code) in logical_lines(text) {
        for statement in code.split(';') {
            let statement = statement.trim();
            if let Some(rest) = statement.strip_prefix("import ") {
                for item in rest.split(',') {
                    let module = strip_alias(item);
                    if !is_identifier_path(module) {
                        continue;
                    }
                    let segments: Vec<&str> = module.split('.').collect();
                    let mut candidates = Vec::new();
                    for root in roots {
                        module_candidates(root.trim_matches('/'), &segments, &mut candidates);
                    }
                    out.push(Import {
                        line,
                        module: module.to_string(),
                        candidates,
                    });
                }
            } else if let Some(rest) = statement.strip_prefix("from ") {
                let Some((module, names)) = rest.split_once(" import ") else {
                    continue;
                };
                let module = module.trim();
                if module == "__future__" {
                    continue;
                }
                let names: Vec<&str> = names
                    .trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(strip_alias)
                    .filter(|n| !n.is_empty() && *n != "*" && is_identifier_path(n))
                    .collect();
                let dots = module.chars().take_while(|&c| c == '.').count();
                let dotted = &module[dots..];
                if !dotted.is_empty() && !is_identifier_path(dotted) {
                    continue;
                }
                let segments: Vec<&str> = if dotted.is_empty() {
                    Vec::new()
                } else {
                    dotted.split('.').collect()
                };
                let mut candidates = Vec::new();
                let mut push = |base: &str| {
                    for name in &names {
                        let mut deeper = segments.clone();
                        deeper.push(name);
                        let p = join(base, &deeper.join("/"));
                        candidates.push(format!("{p}.py"));
                        candidates.push(format!("{p}/__init__.py"));
                    }
                    module_candidates(base, &segments, &mut candidates);
                };
                if dots > 0 {
                    // Relative to the file's package, one level up per extra dot.
                    let mut base = parent(path);
                    for _ in 1..dots {
                        base = parent(base);
                    }
                    push(base);
                } else {
                    for root in roots {
                        push(root.trim_matches('/'));
                    }
                }
                out.push(Import {
                    line,
                    module: module.to_string(),
                    candidates,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> Vec<String> {
        vec![String::new(), "src".to_string()]
    }

    fn modules(path: &str, text: &str) -> Vec<(u32, String)> {
        imports(path, text, &roots())
            .into_iter()
            .map(|i| (i.line, i.module))
            .collect()
    }

    fn m(line: u32, module: &str) -> (u32, String) {
        (line, module.to_string())
    }

    #[test]
    fn import_forms() {
        let src = r#"import os
import app.infrastructure.db as db, requests
from app.domain import (
    User,
    Order as O,
)
from . import sibling
from ..infrastructure.db import Session  # comment: import nothing
from __future__ import annotations
x = 1; import json
if TYPE_CHECKING:
    from app.adapters import http
"""
import not_this
"""
s = 'from not_this import x'
from a \
    import b
"#;
        assert_eq!(
            modules("app/domain/user.py", src),
            vec![
                m(1, "os"),
                m(2, "app.infrastructure.db"),
                m(2, "requests"),
                m(3, "app.domain"),
                m(7, "."),
                m(8, "..infrastructure.db"),
                m(10, "json"),
                m(12, "app.adapters"),
                m(17, "a"),
            ]
        );
    }

    #[test]
    fn candidates() {
        let got = imports(
            "app/domain/user.py",
            "import app.infrastructure.db",
            &roots(),
        );
        assert_eq!(
            got[0].candidates,
            vec![
                "app/infrastructure/db.py",
                "app/infrastructure/db/__init__.py",
                "app/infrastructure.py",
                "app/infrastructure/__init__.py",
                "app.py",
                "app/__init__.py",
                "src/app/infrastructure/db.py",
                "src/app/infrastructure/db/__init__.py",
                "src/app/infrastructure.py",
                "src/app/infrastructure/__init__.py",
                "src/app.py",
                "src/app/__init__.py",
            ]
        );
        let got = imports(
            "app/domain/user.py",
            "from ..infrastructure import db",
            &roots(),
        );
        assert_eq!(
            got[0].candidates,
            vec![
                "app/infrastructure/db.py",
                "app/infrastructure/db/__init__.py",
                "app/infrastructure.py",
                "app/infrastructure/__init__.py",
            ]
        );
        let got = imports("app/domain/user.py", "from . import order", &roots());
        assert_eq!(
            got[0].candidates,
            vec!["app/domain/order.py", "app/domain/order/__init__.py"]
        );
    }
}
