//! Where the database is and how to log in: a `postgres://` URL, with the password from the
//! URL (on the command line only), `PGPASSWORD`, or a `.pgpass` file, as libpq finds them.
//! `gaffer.toml` is in every worktree an agent works in, so a URL from it may name no password.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokio_postgres::config::Host;

/// The port PostgreSQL listens on unless told otherwise.
const DEFAULT_PORT: u16 = 5432;

/// Why a store URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("store url `{url}`: {reason}")]
    Malformed { url: String, reason: String },
    #[error(
        "store url in {file} names a password: that file is in every worktree an agent works \
         in; remove the password and set PGPASSWORD or a ~/.pgpass line instead"
    )]
    PasswordInConfig { file: String },
}

/// A PostgreSQL store's address and credentials, resolved.
#[derive(Debug, Clone)]
pub struct StoreUrl {
    config: tokio_postgres::Config,
    display: String,
}

impl StoreUrl {
    /// Whether `text` names a PostgreSQL store (rather than a SQLite file).
    pub fn is_postgres(text: &str) -> bool {
        text.starts_with("postgres://") || text.starts_with("postgresql://")
    }

    /// A URL from the command line (`--db`): a password in it is the user's choice.
    pub fn from_command_line(url: &str) -> Result<StoreUrl, ConnectError> {
        Self::resolve(url, &Environment::process())
    }

    /// A URL from `[store] url` in `file`: refused when it names a password.
    pub fn from_config(url: &str, file: &Path) -> Result<StoreUrl, ConnectError> {
        let parsed = parse(url)?;
        if parsed.get_password().is_some() {
            return Err(ConnectError::PasswordInConfig {
                file: file.display().to_string(),
            });
        }
        Self::resolve(url, &Environment::process())
    }

    /// Parse `url` and fill in what it leaves out from `env`: the user (`PGUSER`, else the
    /// login name) and the password (`PGPASSWORD`, else the first matching `.pgpass` line).
    fn resolve(url: &str, env: &Environment) -> Result<StoreUrl, ConnectError> {
        let mut config = parse(url)?;
        if config.get_hosts().is_empty() {
            return Err(ConnectError::Malformed {
                url: redact(url),
                reason: "it names no host (a name, an address, or `?host=/socket/dir`)".to_string(),
            });
        }
        if config.get_user().is_none()
            && let Some(user) = env.user.clone()
        {
            config.user(user);
        }
        let user = config.get_user().unwrap_or_default().to_string();
        let dbname = config.get_dbname().unwrap_or(&user).to_string();
        let host = host_text(&config.get_hosts()[0]);
        let port = config.get_ports().first().copied().unwrap_or(DEFAULT_PORT);
        if config.get_password().is_none() {
            if let Some(password) = env.password.clone() {
                config.password(password);
            } else if let Some(file) = &env.pgpass
                && let Some(password) = pgpass_password(file, &host, port, &dbname, &user)
            {
                config.password(password);
            }
        }
        let display = match &config.get_hosts()[0] {
            Host::Unix(path) if port == DEFAULT_PORT => {
                format!("postgres://{user}@/{dbname}?host={}", path.display())
            }
            Host::Unix(path) => format!(
                "postgres://{user}@/{dbname}?host={}&port={port}",
                path.display()
            ),
            Host::Tcp(name) => format!("postgres://{user}@{name}:{port}/{dbname}"),
        };
        Ok(StoreUrl { config, display })
    }

    /// The driver's configuration.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The URL without its password, for messages.
    pub fn display(&self) -> String {
        self.display.clone()
    }
}

fn parse(url: &str) -> Result<tokio_postgres::Config, ConnectError> {
    tokio_postgres::Config::from_str(url).map_err(|e| ConnectError::Malformed {
        url: redact(url),
        reason: e.to_string(),
    })
}

/// `url` with any password replaced, for an error message.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            let hidden = if credentials.contains(':') {
                ":***"
            } else {
                ""
            };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

fn host_text(host: &Host) -> String {
    match host {
        Host::Tcp(name) => name.clone(),
        Host::Unix(path) => path.display().to_string(),
    }
}

/// What the password and user lookups read from the process's environment (a value of its
/// own, so that tests do not change the process's).
#[derive(Debug, Clone, Default)]
struct Environment {
    user: Option<String>,
    password: Option<String>,
    pgpass: Option<PathBuf>,
}

impl Environment {
    fn process() -> Environment {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Environment {
            user: var("PGUSER").or_else(|| var("USER")).or_else(login_name),
            password: var("PGPASSWORD"),
            pgpass: var("PGPASSFILE")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|home| Path::new(&home).join(".pgpass"))),
        }
    }
}

/// The login name of this process's user, from the password database.
fn login_name() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; its name is copied
    // out at once, before any other call could overwrite it.
    unsafe {
        let entry = libc::getpwuid(libc::geteuid());
        if entry.is_null() || (*entry).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*entry).pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

/// The password of the first line of a `.pgpass` file that matches, as libpq reads it:
/// `host:port:database:user:password`, `*` matching anything, `\:` and `\\` escaped. Like
/// libpq, a file that others can read is ignored (with a warning). A Unix-socket connection
/// also matches `localhost`.
fn pgpass_password(file: &Path, host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(file).ok()?;
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            file = %file.display(),
            "the password file is readable by others and is ignored (chmod 0600 it)"
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let port = port.to_string();
    let socket = host.starts_with('/');
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .find_map(|line| {
            let fields = split_pgpass_line(line);
            let [h, p, d, u, password] = fields.as_slice() else {
                return None;
            };
            let matches = |field: &str, value: &str| field == "*" || field == value;
            let host_matches = matches(h, host) || (socket && h == "localhost");
            (host_matches && matches(p, &port) && matches(d, dbname) && matches(u, user))
                .then(|| password.clone())
        })
}

/// A `.pgpass` line's five fields, with `\:` and `\\` unescaped.
fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next()
                    && let Some(field) = fields.last_mut()
                {
                    field.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn env(password: Option<&str>, pgpass: Option<PathBuf>) -> Environment {
        Environment {
            user: Some("alice".into()),
            password: password.map(str::to_string),
            pgpass,
        }
    }

    fn pgpass(lines: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, lines).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_password_in_the_configuration_file_is_refused() {
        let error = StoreUrl::from_config(
            "postgres://bob:hunter2@db.internal/gaffer",
            Path::new("/repo/gaffer.toml"),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("/repo/gaffer.toml"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn the_password_comes_from_the_environment_before_the_password_file() {
        let (_dir, file) = pgpass("db.internal:5432:gaffer:bob:from-file\n", 0o600);
        let url = "postgres://bob@db.internal/gaffer";
        let from_env = StoreUrl::resolve(url, &env(Some("from-env"), Some(file.clone()))).unwrap();
        assert_eq!(from_env.config().get_password(), Some(&b"from-env"[..]));
        let from_file = StoreUrl::resolve(url, &env(None, Some(file))).unwrap();
        assert_eq!(from_file.config().get_password(), Some(&b"from-file"[..]));
        assert_eq!(
            from_file.display(),
            "postgres://bob@db.internal:5432/gaffer"
        );
    }

    #[test]
    fn pgpass_lines_match_by_field_with_wildcards_and_escapes() {
        let (_dir, file) = pgpass(
            "# comment\nother:5432:*:bob:wrong\n*:6000:*:bob:wrong-port\ndb.internal:*:gaffer:bob:pa\\:ss\\\\\n",
            0o600,
        );
        let url = "postgres://bob@db.internal:5432/gaffer";
        let resolved = StoreUrl::resolve(url, &env(None, Some(file))).unwrap();
        assert_eq!(resolved.config().get_password(), Some(&b"pa:ss\\"[..]));
    }

    #[test]
    fn a_socket_connection_matches_localhost_lines() {
        let (_dir, file) = pgpass("localhost:5432:gaffer:bob:sock\n", 0o600);
        let url = "postgres://bob@localhost/gaffer?host=/run/postgresql";
        let resolved = StoreUrl::resolve(url, &env(None, Some(file))).unwrap();
        assert_eq!(resolved.config().get_password(), Some(&b"sock"[..]));
    }

    #[test]
    fn a_password_file_others_can_read_is_ignored() {
        let (_dir, file) = pgpass("*:*:*:*:secret\n", 0o644);
        let resolved =
            StoreUrl::resolve("postgres://bob@db/gaffer", &env(None, Some(file))).unwrap();
        assert_eq!(resolved.config().get_password(), None);
    }

    #[test]
    fn the_user_defaults_to_the_login_and_errors_hide_the_password() {
        let resolved = StoreUrl::resolve("postgres://db/gaffer", &env(None, None)).unwrap();
        assert_eq!(resolved.config().get_user(), Some("alice"));
        let error = StoreUrl::from_command_line("postgres://bob:hunter2@db:notaport/x")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("bob:***@"), "{error}");
    }
}
