//! Owner-only state on disk (issue 19, item 5): a state dir 0700, the files in it
//! 0600. New files are created so; [`tighten_dir`] and [`tighten_file`] tighten what
//! an older version, a careless `mkdir` or a restored backup left open, on every
//! open. A folder or file we cannot tighten (another user's) is an error, never
//! silently used. [`create_private`] does all of it for an SQLite file.
//!
//! The presence store uses it, and so does the connector that hosts this crate (its
//! state database and token cache), so that the rule lives in one place.

use std::io;
use std::path::{Path, PathBuf};

/// Create (if need be) `state_dir` 0700 and `state_dir/file_name` 0600, and tighten
/// both, with SQLite's `-wal` and `-shm` companions, when they are open to others.
/// SQLite gives the companions the main file's mode when it creates them.
pub fn create_private(state_dir: &Path, file_name: &str) -> io::Result<PathBuf> {
    let path = state_dir.join(file_name);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(state_dir)?;
    tighten_dir(state_dir)?;
    for suffix in ["", "-wal", "-shm"] {
        tighten_file(&state_dir.join(format!("{file_name}{suffix}")))?;
    }
    Ok(path)
}

/// Make the folder `dir` owner-only (0700) when group or others have any
/// access. A missing folder is left for the caller to create. A folder with
/// the sticky bit (`/tmp` and the like) is shared by design: refused, never
/// changed.
pub fn tighten_dir(dir: &Path) -> io::Result<()> {
    tighten(dir, true)
}

/// Make the file `path` owner-only (0600) when group or others have any access.
/// A missing file, or one that is not a regular file, is left alone.
pub fn tighten_file(path: &Path) -> io::Result<()> {
    tighten(path, false)
}

#[cfg(unix)]
fn tighten(path: &Path, is_dir: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if (is_dir && !meta.is_dir()) || (!is_dir && !meta.is_file()) {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    if is_dir && mode & 0o1000 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is a shared folder (mode {mode:o}, sticky bit); give a --state-dir of your own",
                path.display()
            ),
        ));
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{} is open to other users (mode {mode:o}) and cannot be made owner-only ({e}); \
                 give a --state-dir of your own",
                path.display()
            ),
        )
    })
}

#[cfg(not(unix))]
fn tighten(_path: &Path, _is_dir: bool) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn open_folders_and_files_are_tightened_private_ones_left() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("state");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let f = d.join("store");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        tighten_dir(&d).unwrap();
        tighten_file(&f).unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&f), 0o600);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
        tighten_file(&f).unwrap();
        assert_eq!(mode(&f), 0o400, "an already private file keeps its mode");
        tighten_file(&d.join("missing")).unwrap();
    }

    #[test]
    fn sticky_folders_are_refused_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = tighten_dir(dir.path()).unwrap_err();
        assert!(e.to_string().contains("shared folder"), "{e}");
        assert_eq!(mode(dir.path()), 0o1777);
    }
}
