//! Imports of a TypeScript / JavaScript file: `import ... from "m"`, `import "m"`,
//! `import type`, `export ... from "m"`, `require("m")`, `import("m")`. Comments, template
//! literals and regular expressions are skipped by a small lexer; other strings are kept as
//! tokens (they are the specifiers).

use crate::Import;
use crate::paths::{join, normalize, parent};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    Str(String),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token<'a> {
    tok: Tok<'a>,
    line: u32,
}

/// Whether a `/` after this token starts a regular expression (rather than a division).
fn regex_allowed(prev: Option<&Tok<'_>>) -> bool {
    match prev {
        None => true,
        Some(Tok::Punct(c)) => !matches!(c, ')' | ']' | '}'),
        Some(Tok::Ident(w)) => matches!(
            *w,
            "return"
                | "typeof"
                | "case"
                | "do"
                | "else"
                | "in"
                | "of"
                | "new"
                | "delete"
                | "void"
                | "throw"
                | "yield"
                | "await"
                | "instanceof"
        ),
        Some(Tok::Str(_)) => false,
    }
}

fn lex(src: &str) -> Vec<Token<'_>> {
    let bytes = src.as_bytes();
    let n = bytes.len();
    let mut tokens: Vec<Token<'_>> = Vec::new();
    let mut i = 0;
    let mut line = 1u32;
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
                i += 2;
                while i < n && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 2;
            }
            b'/' if regex_allowed(tokens.last().map(|t| &t.tok)) => {
                i += 1;
                let mut class = false;
                while i < n && bytes[i] != b'\n' {
                    match bytes[i] {
                        b'\\' => i += 1,
                        b'[' => class = true,
                        b']' => class = false,
                        b'/' if !class => break,
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
                while i < n && bytes[i].is_ascii_alphabetic() {
                    i += 1; // flags
                }
                tokens.push(Token {
                    tok: Tok::Punct('/'), // stands for the regex: a value
                    line,
                });
                // A regex is a value: make a following `/` a division.
                tokens.push(Token {
                    tok: Tok::Punct(')'),
                    line,
                });
            }
            b'"' | b'\'' => {
                let start_line = line;
                let mut value = String::new();
                i += 1;
                let mut closed = false;
                while i < n {
                    match bytes[i] {
                        b'\\' => {
                            if let Some(ch) = src.get(i + 1..).and_then(|s| s.chars().next()) {
                                if ch == '\n' {
                                    line += 1;
                                }
                                value.push(ch);
                                i += 1 + ch.len_utf8();
                            } else {
                                i += 1;
                            }
                        }
                        b'\n' => break, // unterminated: JSX text with an apostrophe, say
                        q if q == c => {
                            i += 1;
                            closed = true;
                            break;
                        }
                        _ => {
                            let ch = src.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                            value.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                if closed {
                    tokens.push(Token {
                        tok: Tok::Str(value),
                        line: start_line,
                    });
                }
            }
            b'`' => {
                // A template literal, with `${...}` expressions skipped by brace depth.
                i += 1;
                let mut depth = 0usize;
                while i < n {
                    match bytes[i] {
                        b'\\' => i += 1,
                        b'\n' => line += 1,
                        b'$' if depth == 0 && bytes.get(i + 1) == Some(&b'{') => {
                            depth = 1;
                            i += 1;
                        }
                        b'{' if depth > 0 => depth += 1,
                        b'}' if depth > 0 => depth -= 1,
                        b'`' if depth == 0 => {
                            i += 1;
                            break;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                tokens.push(Token {
                    tok: Tok::Str(String::new()),
                    line,
                });
            }
            _ if c.is_ascii_digit() => {
                while i < n
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
                {
                    i += 1;
                }
                tokens.push(Token {
                    tok: Tok::Ident("0"),
                    line,
                });
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = i;
                while i < n
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                tokens.push(Token {
                    tok: Tok::Ident(src.get(start..i).unwrap_or("")),
                    line,
                });
            }
            _ => {
                tokens.push(Token {
                    tok: Tok::Punct(c as char),
                    line,
                });
                i += 1;
            }
        }
    }
    tokens
}

const EXTENSIONS: [&str; 8] = [".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts"];

fn candidates(path: &str, specifier: &str) -> Vec<String> {
    let relative = specifier == "."
        || specifier == ".."
        || specifier.starts_with("./")
        || specifier.starts_with("../");
    if !relative {
        return Vec::new();
    }
    let p = normalize(&join(parent(path), specifier));
    let mut out = vec![p.clone()];
    // TypeScript's ESM style imports `./db.js` for `./db.ts`.
    for js in [".js", ".jsx", ".mjs", ".cjs"] {
        if let Some(stem) = p.strip_suffix(js) {
            for ts in [".ts", ".tsx", ".mts", ".cts"] {
                out.push(format!("{stem}{ts}"));
            }
        }
    }
    for ext in EXTENSIONS {
        out.push(format!("{p}{ext}"));
    }
    for ext in EXTENSIONS {
        out.push(format!("{p}/index{ext}"));
    }
    out
}

/// The imports of TS/JS source `text` at repository path `path`.
pub fn imports(path: &str, text: &str) -> Vec<Import> {
    let tokens = lex(text);
    let tok = |i: usize| tokens.get(i).map(|t| &t.tok);
    let mut found: Vec<(u32, String)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let after_dot = i > 0 && tok(i - 1) == Some(&Tok::Punct('.'));
        match &tokens[i].tok {
            Tok::Ident("import") if !after_dot => match tok(i + 1) {
                // import("m") — also in type positions: typeof import("m")
                Some(Tok::Punct('(')) => {
                    if let Some(Tok::Str(s)) = tok(i + 2) {
                        found.push((tokens[i + 2].line, s.clone()));
                    }
                    i += 2;
                }
                // import "m"
                Some(Tok::Str(s)) => {
                    found.push((tokens[i + 1].line, s.clone()));
                    i += 2;
                }
                // import x from "m", import {a} from "m", import * as n from "m", import type ...
                Some(Tok::Ident(_) | Tok::Punct('{') | Tok::Punct('*')) => {
                    let mut j = i + 1;
                    let mut depth = 0usize;
                    while j < tokens.len() && j < i + 2000 {
                        match &tokens[j].tok {
                            Tok::Punct('{') => depth += 1,
                            Tok::Punct('}') => depth = depth.saturating_sub(1),
                            Tok::Punct(';' | '=') if depth == 0 => break,
                            Tok::Ident("from") if depth == 0 => {
                                if let Some(Tok::Str(s)) = tok(j + 1) {
                                    found.push((tokens[j + 1].line, s.clone()));
                                }
                                break;
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    i = j;
                }
                _ => i += 1,
            },
            // export * from "m", export * as n from "m", export {a} from "m", export type {T} from "m"
            Tok::Ident("export") if !after_dot => {
                let mut j = i + 1;
                if tok(j) == Some(&Tok::Ident("type")) {
                    j += 1;
                }
                match tok(j) {
                    Some(Tok::Punct('*')) => {
                        j += 1;
                        if tok(j) == Some(&Tok::Ident("as")) {
                            j += 2;
                        }
                    }
                    Some(Tok::Punct('{')) => {
                        while j < tokens.len() && tok(j) != Some(&Tok::Punct('}')) {
                            j += 1;
                        }
                        j += 1;
                    }
                    _ => {
                        i += 1;
                        continue;
                    }
                }
                if tok(j) == Some(&Tok::Ident("from"))
                    && let Some(Tok::Str(s)) = tok(j + 1)
                {
                    found.push((tokens[j + 1].line, s.clone()));
                }
                i = j;
            }
            // require("m")
            Tok::Ident("require") if !after_dot => {
                if let (Some(Tok::Punct('(')), Some(Tok::Str(s)), Some(Tok::Punct(')'))) =
                    (tok(i + 1), tok(i + 2), tok(i + 3))
                {
                    found.push((tokens[i + 2].line, s.clone()));
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    found
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(line, module)| Import {
            line,
            candidates: candidates(path, &module),
            module,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(path: &str, text: &str) -> Vec<(u32, String)> {
        imports(path, text)
            .into_iter()
            .map(|i| (i.line, i.module))
            .collect()
    }

    fn m(line: u32, module: &str) -> (u32, String) {
        (line, module.to_string())
    }

    #[test]
    fn import_forms() {
        let src = r#"import React from "react";
import { a, b as c } from './infra/db';
import * as ns from "../shared";
import type { User } from "@app/domain";
import "./polyfill";
import def, {
  x,
  y,
} from "multi";
export * from "./reexport";
export * as all from './all';
export { z } from "./z";
export type { T } from "./types";
export const notAnImport = 1;
const fs = require("fs");
const lazy = await import("./lazy");
type M = typeof import("./typed");
import x = require("legacy");
"#;
        assert_eq!(
            modules("src/app/page.ts", src),
            vec![
                m(1, "react"),
                m(2, "./infra/db"),
                m(3, "../shared"),
                m(4, "@app/domain"),
                m(5, "./polyfill"),
                m(9, "multi"),
                m(10, "./reexport"),
                m(11, "./all"),
                m(12, "./z"),
                m(13, "./types"),
                m(15, "fs"),
                m(16, "./lazy"),
                m(17, "./typed"),
                m(18, "legacy"),
            ]
        );
    }

    #[test]
    fn comments_strings_templates_and_regexes_are_skipped() {
        let src = r#"// import a from "commented";
/* import b from "block"; */
const s = "import c from 'string'";
const t = `import d from "template" ${ require("inside-template") }`;
const r = /import e from "regex"/g;
const half = 10 / 2; import real from "real";
const jsx = <p>don't import f from "jsx-text"</p>;
obj.require("method");
"#;
        assert_eq!(modules("src/a.tsx", src), vec![m(6, "real")]);
    }

    #[test]
    fn relative_specifiers_resolve_against_the_file() {
        let got = imports("src/app/page.ts", r#"import { q } from "../infra/db.js";"#);
        assert_eq!(got[0].candidates[0], "src/infra/db.js");
        assert_eq!(got[0].candidates[1], "src/infra/db.ts");
        assert!(
            got[0]
                .candidates
                .contains(&"src/infra/db.js/index.ts".to_string())
        );
        let got = imports("src/app/page.ts", r#"import { q } from "./util";"#);
        assert_eq!(got[0].candidates[0], "src/app/util");
        assert!(got[0].candidates.contains(&"src/app/util.tsx".to_string()));
        assert!(
            got[0]
                .candidates
                .contains(&"src/app/util/index.ts".to_string())
        );
        assert!(
            imports("src/app/page.ts", r#"import "lodash";"#)[0]
                .candidates
                .is_empty()
        );
    }
}
