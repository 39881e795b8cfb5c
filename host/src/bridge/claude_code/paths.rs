//! Paths an event names, resolved the way the kernel will resolve them when the tool runs:
//! every symlink followed (also a dangling one, whose target a write would create, and the
//! parents of a file that does not exist yet), then placed against the canonical project root.
//! A rule on `.env` then holds for `dotenv -> .env`, and `mig -> db/migrations` is judged as
//! `db/migrations`.

use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up (the kernel's limit is 40 too).
const MAX_LINKS: u32 = 40;

/// Where a path leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Inside the project: relative to its root, `/`-separated (`.` for the root itself).
    Inside(String),
    /// Outside the project, canonical.
    Outside(PathBuf),
}

/// Why a path cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("`{0}` has more than {MAX_LINKS} symbolic links on its way")]
    TooManyLinks(String),
    #[error("`{path}`: {reason}")]
    Unreadable { path: String, reason: String },
}

/// The canonical form of `path` (relative ones against `base`), following every symlink that
/// exists, with the part that does not exist yet normalised as written.
pub fn canonical(base: &Path, path: &Path) -> Result<PathBuf, PathError> {
    let start = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    let mut pending: Vec<PathBuf> = start
        .components()
        .rev()
        .map(|c| c.as_os_str().into())
        .collect();
    let mut out = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match Path::new(&part).components().next() {
            None | Some(Component::CurDir) => {}
            Some(Component::RootDir | Component::Prefix(_)) => out = PathBuf::from("/"),
            Some(Component::ParentDir) => {
                out.pop();
            }
            Some(Component::Normal(name)) => {
                let next = out.join(name);
                match std::fs::symlink_metadata(&next) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(PathError::TooManyLinks(start.display().to_string()));
                        }
                        let target =
                            std::fs::read_link(&next).map_err(|e| PathError::Unreadable {
                                path: next.display().to_string(),
                                reason: e.to_string(),
                            })?;
                        // The target's parts come next; an absolute target starts again at `/`.
                        pending.extend(
                            target
                                .components()
                                .rev()
                                .map(|c| PathBuf::from(c.as_os_str())),
                        );
                    }
                    _ => out = next,
                }
            }
        }
    }
    Ok(out)
}

/// Where `path` leads against the canonical project `root`.
pub fn resolve(root: &Path, base: &Path, path: &str) -> Result<Resolved, PathError> {
    let full = canonical(base, Path::new(path))?;
    Ok(match full.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => Resolved::Inside(".".to_string()),
        Ok(rel) => Resolved::Inside(
            rel.components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/"),
        ),
        Err(_) => Resolved::Outside(full),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_to_what_they_point_at_even_when_it_does_not_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("db/migrations")).unwrap();
        symlink(".env", root.join("dotenv")).unwrap();
        symlink("db/migrations", root.join("mig")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let inside = |p: &str| resolve(&root, &root, p).unwrap();
        // `.env` does not exist: the link is dangling, and a write through it creates `.env`.
        assert_eq!(inside("dotenv"), Resolved::Inside(".env".into()));
        assert_eq!(
            inside(&root.join("mig/0001.sql").display().to_string()),
            Resolved::Inside("db/migrations/0001.sql".into())
        );
        assert_eq!(
            inside("new/dir/../../.env"),
            Resolved::Inside(".env".into())
        );
        assert_eq!(
            inside("etc/passwd"),
            Resolved::Outside("/etc/passwd".into())
        );
        assert_eq!(
            inside("../x"),
            Resolved::Outside(root.parent().unwrap().join("x"))
        );
        assert_eq!(inside("."), Resolved::Inside(".".into()));
        assert!(matches!(
            resolve(&root, &root, "loop/x"),
            Err(PathError::TooManyLinks(_))
        ));
    }

    #[test]
    fn a_project_reached_through_a_symlinked_root_is_the_same_project() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().canonicalize().unwrap().join("real");
        std::fs::create_dir(&real).unwrap();
        let alias = tmp.path().join("alias");
        symlink(&real, &alias).unwrap();
        assert_eq!(
            resolve(&real, &real, &alias.join(".env").display().to_string()).unwrap(),
            Resolved::Inside(".env".into())
        );
    }
}
