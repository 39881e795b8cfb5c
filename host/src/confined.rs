//! Files of a worktree, opened the one safe way for everything the host reads or writes there
//! on behalf of the agent or a plugin: beneath a [`cap_std::fs::Dir`] capability (no `..`, no
//! absolute path, no symlink out), never blocking (`O_NONBLOCK`: a FIFO the agent planted with
//! no writer or reader does not hang the open), and only when it is a regular file (a FIFO,
//! socket or device would hang the read or act elsewhere).

use std::io;
use std::path::Path;

use cap_std::fs::{Dir, File, OpenOptions, OpenOptionsExt};

/// How [`open_regular`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Write, creating the file when it is missing; truncating is the caller's, once the file
    /// is known to be regular.
    Write,
}

/// Why [`open_regular`] refused.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("is a directory")]
    Directory,
    #[error("is not a regular file")]
    NotRegular,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Opens `rel` beneath `dir`; see the module.
pub fn open_regular(dir: &Dir, rel: impl AsRef<Path>, access: Access) -> Result<File, OpenError> {
    let mut options = OpenOptions::new();
    match access {
        Access::Read => options.read(true),
        Access::Write => options.write(true).create(true),
    };
    options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = match dir.open_with(rel, &options) {
        Ok(file) => file,
        // A FIFO opened for writing with no reader.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Err(OpenError::NotRegular),
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => return Err(OpenError::Directory),
        Err(e) => return Err(OpenError::Io(e)),
    };
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(OpenError::Directory);
    }
    if !meta.is_file() {
        return Err(OpenError::NotRegular);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn fifos_are_refused_without_blocking_and_files_open() {
        let tmp = tempfile::tempdir().unwrap();
        mkfifo(&tmp.path().join("p"));
        std::fs::write(tmp.path().join("f"), "text").unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        // Each would block forever with a plain open.
        assert!(matches!(
            open_regular(&dir, "p", Access::Read),
            Err(OpenError::NotRegular)
        ));
        assert!(matches!(
            open_regular(&dir, "p", Access::Write),
            Err(OpenError::NotRegular)
        ));
        assert!(matches!(
            open_regular(&dir, "d", Access::Read),
            Err(OpenError::Directory)
        ));
        let mut text = String::new();
        io::Read::read_to_string(
            &mut open_regular(&dir, "f", Access::Read).unwrap(),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "text");
    }
}
