//! The files a shell command says it will write, read from its text before it runs: output
//! redirections, `tee`, `cp`, `mv`, `rm`, `touch`, `sed -i`, `git checkout` / `git restore`.
//! This is advisory — a shell has endless ways to write a file (`python -c`, `$(...)`,
//! variables, aliases) — and documented as such: the effect is what counts, and PostToolUse
//! judges the working tree after the command, ignored files included.

/// What a command does to a file it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Replaced or created with content not known before the command runs.
    Write,
    /// Appended to (or changed in place) with content not known before the command runs.
    Modify,
    /// Removed.
    Delete,
}

/// One file a command names as a target, with the directory it is relative to (after the
/// command's own `cd`s, relative to where the command starts; empty: there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellWrite {
    pub dir: String,
    pub path: String,
    pub kind: WriteKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    /// `;`, `&&`, `||`, `|`, `&`, a newline, `(`, `)`: a new simple command follows.
    Separator,
    /// An output redirection (`>`, `>>`, `>|`, `&>`, `2>`, ...); `true` appends.
    Redirect(bool),
    /// An input redirection or a descriptor duplication: its operand is not a write target.
    OtherRedirect,
}

/// Split a command into words and operators, with quotes and backslashes as the shell reads
/// them (no expansion).
fn tokenize(command: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars().peekable();
    let flush = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(n) => word.push(n),
                }
            }
            '#' if !in_word => {
                // A comment runs to the end of the line.
                for n in chars.by_ref() {
                    if n == '\n' {
                        tokens.push(Token::Separator);
                        break;
                    }
                }
            }
            ' ' | '\t' => flush(&mut word, &mut in_word, &mut tokens),
            ';' | '\n' | '(' | ')' | '|' => {
                flush(&mut word, &mut in_word, &mut tokens);
                if c == '|' && chars.peek() == Some(&'|') {
                    chars.next();
                }
                tokens.push(Token::Separator);
            }
            '&' => {
                flush(&mut word, &mut in_word, &mut tokens);
                match chars.peek() {
                    Some('&') => {
                        chars.next();
                        tokens.push(Token::Separator);
                    }
                    Some('>') => {
                        chars.next();
                        let append = chars.peek() == Some(&'>');
                        if append {
                            chars.next();
                        }
                        tokens.push(Token::Redirect(append));
                    }
                    _ => tokens.push(Token::Separator),
                }
            }
            '>' => {
                // A descriptor number written just before (`2>`) is part of the operator.
                if in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                flush(&mut word, &mut in_word, &mut tokens);
                let token = match chars.peek() {
                    Some('>') => {
                        chars.next();
                        Token::Redirect(true)
                    }
                    Some('|') => {
                        chars.next();
                        Token::Redirect(false)
                    }
                    Some('&') => {
                        chars.next();
                        Token::OtherRedirect
                    }
                    _ => Token::Redirect(false),
                };
                tokens.push(token);
            }
            '<' => {
                flush(&mut word, &mut in_word, &mut tokens);
                while matches!(chars.peek(), Some('<' | '&' | '>')) {
                    chars.next();
                }
                tokens.push(Token::OtherRedirect);
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut in_word, &mut tokens);
    tokens
}

/// The files `command` names as write targets; see the module.
pub fn write_targets(command: &str) -> Vec<ShellWrite> {
    let mut targets = Vec::new();
    let mut dir = String::new();
    let mut words: Vec<String> = Vec::new();
    let mut tokens = tokenize(command).into_iter();
    let mut push = |dir: &str, path: &str, kind| {
        if path.is_empty() || path == "/dev/null" || path.starts_with("/dev/fd/") {
            return;
        }
        targets.push(ShellWrite {
            dir: dir.to_string(),
            path: path.to_string(),
            kind,
        });
    };
    loop {
        let token = tokens.next();
        match token {
            Some(Token::Word(w)) => words.push(w),
            Some(Token::Redirect(append)) => {
                if let Some(Token::Word(target)) = tokens.next() {
                    let kind = if append {
                        WriteKind::Modify
                    } else {
                        WriteKind::Write
                    };
                    push(&dir, &target, kind);
                }
            }
            Some(Token::OtherRedirect) => {
                // Its operand (a file read, or a descriptor) is not a target.
                let _ = tokens.next();
            }
            Some(Token::Separator) | None => {
                command_targets(&words, &mut dir, &mut push);
                words.clear();
                if token.is_none() {
                    break;
                }
            }
        }
    }
    targets
}

/// The targets of one simple command (`words`), and its effect on the directory (`cd`).
fn command_targets(
    words: &[String],
    dir: &mut String,
    push: &mut impl FnMut(&str, &str, WriteKind),
) {
    // Leading variable assignments and wrappers that run the rest as a command.
    let mut rest = words;
    while let Some(first) = rest.first() {
        let assignment = first.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        });
        if assignment
            || matches!(
                first.as_str(),
                "sudo" | "command" | "env" | "nohup" | "time" | "exec"
            )
        {
            rest = &rest[1..];
        } else {
            break;
        }
    }
    let Some((program, args)) = rest.split_first() else {
        return;
    };
    let program = program.rsplit('/').next().unwrap_or(program);
    let operands: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    match program {
        "cd" => {
            let to = operands.first().copied().unwrap_or("");
            if to.starts_with('/') || to.is_empty() || to.starts_with('~') || dir.is_empty() {
                *dir = to.to_string();
            } else {
                *dir = format!("{dir}/{to}");
            }
        }
        "tee" => {
            let kind = if args.iter().any(|a| a == "-a" || a == "--append") {
                WriteKind::Modify
            } else {
                WriteKind::Write
            };
            for file in operands {
                push(dir, file, kind);
            }
        }
        "cp" | "mv" | "install" | "ln" => {
            let target_dir = args
                .iter()
                .position(|a| a == "-t")
                .and_then(|i| args.get(i + 1))
                .map(String::as_str)
                .or_else(|| {
                    args.iter()
                        .find_map(|a| a.strip_prefix("--target-directory="))
                });
            let (sources, target): (Vec<&str>, Option<&str>) = match target_dir {
                Some(t) => (
                    operands.iter().copied().filter(|o| *o != t).collect(),
                    Some(t),
                ),
                None => match operands.split_last() {
                    Some((last, sources)) if !sources.is_empty() => (sources.to_vec(), Some(*last)),
                    _ => (Vec::new(), None),
                },
            };
            if let Some(target) = target {
                push(dir, target, WriteKind::Write);
                // Into a directory: each source's name inside it.
                for source in &sources {
                    let name = source.rsplit('/').next().unwrap_or(source);
                    push(
                        dir,
                        &format!("{}/{name}", target.trim_end_matches('/')),
                        WriteKind::Write,
                    );
                }
            }
            if program == "mv" {
                for source in sources {
                    push(dir, source, WriteKind::Delete);
                }
            }
        }
        "rm" | "unlink" | "shred" => {
            for file in operands {
                push(dir, file, WriteKind::Delete);
            }
        }
        "touch" | "truncate" => {
            for file in operands {
                push(dir, file, WriteKind::Modify);
            }
        }
        "sed" | "perl" => {
            let in_place = args
                .iter()
                .any(|a| a.starts_with("-i") || a == "--in-place" || a.starts_with("--in-place="));
            if in_place {
                // The operands of `-e`/`-f` are scripts; without them, the first operand is.
                let mut files = Vec::new();
                let mut scripted = false;
                let mut args = args.iter();
                while let Some(arg) = args.next() {
                    if arg == "-e" || arg == "-f" {
                        scripted = true;
                        args.next();
                    } else if arg.starts_with("--expression") || arg.starts_with("--file") {
                        scripted = true;
                    } else if !arg.starts_with('-') {
                        files.push(arg.as_str());
                    }
                }
                let files = if scripted {
                    &files[..]
                } else {
                    files.get(1..).unwrap_or(&[])
                };
                for file in files {
                    push(dir, file, WriteKind::Modify);
                }
            }
        }
        "git" => {
            let sub = args.iter().position(|a| a == "checkout" || a == "restore");
            if let Some(sub) = sub {
                let after = &args[sub + 1..];
                let paths: Vec<&str> = match after.iter().position(|a| a == "--") {
                    Some(dash) => after[dash + 1..].iter().map(String::as_str).collect(),
                    // `git restore FILE...`; `git checkout BRANCH` names no file.
                    None if args[sub] == "restore" => after
                        .iter()
                        .map(String::as_str)
                        .filter(|a| !a.starts_with('-'))
                        .collect(),
                    None => Vec::new(),
                };
                for path in paths {
                    push(dir, path, WriteKind::Write);
                }
            }
        }
        "dd" => {
            for arg in args {
                if let Some(file) = arg.strip_prefix("of=") {
                    push(dir, file, WriteKind::Write);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(command: &str) -> Vec<(String, WriteKind)> {
        write_targets(command)
            .into_iter()
            .map(|t| {
                let path = if t.dir.is_empty() {
                    t.path
                } else {
                    format!("{}/{}", t.dir, t.path)
                };
                (path, t.kind)
            })
            .collect()
    }

    #[test]
    fn redirections_and_the_usual_writers_are_recognised() {
        use WriteKind::*;
        assert_eq!(targets("echo K=1 > .env"), [(".env".into(), Write)]);
        assert_eq!(
            targets("echo K=1 >>.env 2>/dev/null"),
            [(".env".into(), Modify)]
        );
        assert_eq!(targets("printf x 2> err.log"), [("err.log".into(), Write)]);
        assert_eq!(
            targets("make &> 'build log'"),
            [("build log".into(), Write)]
        );
        assert_eq!(
            targets("ls 2>&1 | tee -a out.txt"),
            [("out.txt".into(), Modify)]
        );
        assert_eq!(
            targets("cp a.txt \"db/migrations/\" && mv x y"),
            [
                ("db/migrations/".into(), Write),
                ("db/migrations/a.txt".into(), Write),
                ("y".into(), Write),
                ("y/x".into(), Write),
                ("x".into(), Delete)
            ]
        );
        assert_eq!(targets("sed -i 's/a/b/' .env"), [(".env".into(), Modify)]);
        assert_eq!(
            targets("sed -i -e s/a/b/ a b"),
            [("a".into(), Modify), ("b".into(), Modify)]
        );
        assert_eq!(targets("git checkout -- .env"), [(".env".into(), Write)]);
        assert_eq!(targets("git checkout main"), []);
        assert_eq!(
            targets("cd config; rm -f secrets.yml"),
            [("config/secrets.yml".into(), Delete)]
        );
        assert_eq!(
            targets("FOO=1 sudo tee .env < input"),
            [(".env".into(), Write)]
        );
        assert_eq!(targets("cat < .env # > not-a-target"), []);
        assert_eq!(targets("echo '>' not-a-target"), []);
        assert_eq!(
            targets("dd if=/dev/zero of=big bs=1M count=1"),
            [("big".into(), Write)]
        );
    }
}
