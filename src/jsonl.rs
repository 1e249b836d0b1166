//! Output files (`output_path` of `pull_sign_ins` and `get_user_photo`): where they
//! may go ([`check_output_path`]), and writes that are all or nothing: JSON lines
//! written to a partial file beside the target and renamed onto it only when
//! complete, so a killed run leaves no half file at the target. Output files are
//! created 0600, like the store: sign-ins and photos are personal data.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// Refuse, before any request, an output path we must not replace: anything but
/// a regular file or a name not yet taken in an existing directory (a directory,
/// FIFO, device or socket, or a symbolic link to one of those or to nothing), and
/// anything inside the state dir, whose store and token cache a rename would
/// destroy. Links are resolved before the state dir is compared. (What is at the
/// path can still change between this check and the final rename; the rename then
/// replaces the new directory entry, and never writes into a device or FIFO.)
pub fn check_output_path(target: &Path, state_dir: Option<&Path>, pointer: &str) -> Result<()> {
    let bad = |m: String| Error::invalid(pointer, m);
    let shown = target.display();
    let Some(name) = target.file_name() else {
        return Err(bad("must name a file".into()));
    };
    let dir = parent_dir(target);
    let real_dir = dir
        .canonicalize()
        .ok()
        .filter(|d| d.is_dir())
        .ok_or_else(|| bad(format!("its directory {} does not exist", dir.display())))?;
    let real = match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => real_dir.join(name),
        Err(e) => return Err(bad(format!("cannot inspect {shown}: {e}"))),
        Ok(_) => {
            let meta = std::fs::metadata(target)
                .map_err(|_| bad(format!("{shown} is a symbolic link to nothing")))?;
            if !meta.is_file() {
                return Err(bad(format!(
                    "{shown} is {}; only a regular file or a new name is replaced",
                    describe(&meta.file_type())
                )));
            }
            target
                .canonicalize()
                .map_err(|e| bad(format!("cannot inspect {shown}: {e}")))?
        }
    };
    if let Some(state) = state_dir.and_then(|d| d.canonicalize().ok())
        && (real.starts_with(&state) || real_dir.starts_with(&state))
    {
        return Err(bad(format!(
            "{shown} is inside the state dir (--state-dir), which holds the token cache \
             and the store; write output elsewhere"
        )));
    }
    // Can we write there at all? Asked by creating (and at once dropping, which
    // removes it) the very kind of temporary file the write will use, so the answer
    // holds for root, ACLs and read-only mounts alike, where `access(2)` may not.
    // Asked now, before any request: a failed write must not cost a Graph call.
    private_temp_in(&real_dir, ".msgraph-connector-probe.")
        .map(drop)
        .map_err(|e| {
            Error::local(format!(
                "cannot write output in {}: {e}",
                real_dir.display()
            ))
        })
}

fn describe(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// The directory a file path lives in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file in `dir` named `{prefix}{random}`, created with `O_CREAT|O_EXCL`
/// (so never through a planted symbolic link, never over another file) and mode
/// 0600: `tempfile::Builder::tempfile_in`, whose docs state both. Dropped
/// unpersisted, it removes itself.
pub fn private_temp_in(dir: &Path, prefix: &str) -> std::io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(prefix)
        .rand_bytes(12)
        .tempfile_in(dir)
}

/// JSON lines written beside the target and renamed onto it only when complete.
pub struct PartialFile {
    target: PathBuf,
    out: BufWriter<NamedTempFile>,
    pointer: &'static str,
}

impl PartialFile {
    /// Start writing `target`; errors point at `pointer` (the input that named it).
    /// The partial file is `.{name}.partial-{pid}.{random}`: the pid lets a later
    /// run remove what a killed one left, the random part makes the name
    /// unguessable, so nobody can plant a link there first.
    pub fn create(target: &Path, pointer: &'static str) -> Result<Self> {
        let bad = |m: String| Error::invalid(pointer, m);
        let name = target
            .file_name()
            .ok_or_else(|| bad("names no file".into()))?
            .to_string_lossy()
            .into_owned();
        let dir = parent_dir(target).to_path_buf();
        if target.is_dir() {
            return Err(bad(format!("{} is a directory", target.display())));
        }
        let prefix = format!(".{name}.partial-");
        remove_stale_partials(&dir, &prefix);
        let file =
            private_temp_in(&dir, &format!("{prefix}{}.", std::process::id())).map_err(|e| {
                let message = format!("cannot create a file in {}: {e}", dir.display());
                // A folder that is not there is the caller's mistake; one we cannot write is ours.
                if e.kind() == std::io::ErrorKind::NotFound {
                    bad(message)
                } else {
                    Error::local(message)
                }
            })?;
        Ok(PartialFile {
            target: target.to_path_buf(),
            out: BufWriter::with_capacity(256 * 1024, file),
            pointer,
        })
    }

    /// The file this one becomes.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// A second handle on the partial file, for a writer of its own (such as a thread
    /// of the presence engine). What goes through it bypasses this one's buffer, so the
    /// two must not both write.
    pub fn raw_handle(&self) -> std::io::Result<std::fs::File> {
        self.out.get_ref().as_file().try_clone()
    }

    /// Append lines already encoded (each ending in a newline).
    pub fn write_bytes(&mut self, lines: &[u8]) -> Result<()> {
        self.out.write_all(lines).map_err(|e| self.io_error(e))
    }

    /// Append one value as a line.
    pub fn write(&mut self, record: &impl Serialize) -> Result<()> {
        serde_json::to_writer(&mut self.out, record)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| self.io_error(e))
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::local(format!(
            "cannot write {} (for {}): {e}",
            self.out.get_ref().path().display(),
            self.pointer
        ))
    }

    /// Flush, sync and rename onto the target; the path written.
    pub fn commit(self) -> Result<String> {
        let PartialFile {
            target,
            out,
            pointer,
        } = self;
        // On failure the temporary file is dropped, which removes it.
        let done = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.as_file().sync_all().map(|()| f))
            .and_then(|f| f.persist(&target).map(drop).map_err(|e| e.error));
        if let Err(e) = done {
            return Err(Error::local(format!(
                "cannot complete {} (for {pointer}): {e}",
                target.display()
            )));
        }
        Ok(target.display().to_string())
    }

    /// Give up: remove the partial file.
    pub fn abandon(self) {
        drop(self.out);
    }
}

/// Partial files of runs that were killed (their process is gone). Linux only: elsewhere
/// there is no cheap way to tell a dead writer from a live one, so they are left.
fn remove_stale_partials(dir: &Path, prefix: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // `{pid}.{random}` (or `{pid}`, as runs before the random part wrote).
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split('.').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_file_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        // A leftover of a killed run whose process is gone.
        // Leftovers of killed runs whose process is gone, as older runs named them
        // and as runs name them now.
        let stale = dir.path().join(".out.jsonl.partial-4000000000");
        std::fs::write(&stale, "{\"id\":").unwrap();
        let stale_new = dir
            .path()
            .join(".out.jsonl.partial-4000000001.aZ3kQ9xW2mP1");
        std::fs::write(&stale_new, "{\"id\":").unwrap();
        // A live run's partial file (this process) is left alone.
        let live = dir
            .path()
            .join(format!(".out.jsonl.partial-{}.live", std::process::id()));
        std::fs::write(&live, "").unwrap();
        let mut f = PartialFile::create(&target, "/inputs/output_path").unwrap();
        assert!(!stale.exists() && !stale_new.exists());
        assert!(live.exists());
        std::fs::remove_file(&live).unwrap();
        f.write(&json!({"id": "a"})).unwrap();
        f.write(&json!({"id": "b"})).unwrap();
        assert!(!target.exists());
        f.commit().unwrap();
        let text = std::fs::read_to_string(&target).unwrap();
        assert_eq!(text, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut f = PartialFile::create(&target, "/inputs/output_path").unwrap();
        f.write(&json!({"id": "c"})).unwrap();
        f.abandon();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), text);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn output_path_in_a_missing_directory_is_invalid_input() {
        let e = PartialFile::create(Path::new("/nonexistent-dir/x.jsonl"), "/inputs/output_path")
            .err()
            .unwrap();
        assert_eq!(e.details[0].path, "/inputs/output_path");
    }

    #[test]
    fn output_paths_that_must_not_be_replaced_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::write(state.join("presence.sqlite3"), "store").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let check = |p: &Path| check_output_path(p, Some(&state), "/inputs/output_path");
        // A new name and a regular file are fine.
        check(&out.join("new.jsonl")).unwrap();
        std::fs::write(out.join("old.jsonl"), "x").unwrap();
        check(&out.join("old.jsonl")).unwrap();
        let refused = |p: &Path, why: &str| {
            let e = check(p)
                .err()
                .unwrap_or_else(|| panic!("{} accepted", p.display()));
            assert_eq!(e.exit_code(), 2);
            assert_eq!(e.details[0].path, "/inputs/output_path");
            assert!(
                e.details[0].message.contains(why),
                "{}",
                e.details[0].message
            );
        };
        refused(&out, "a directory");
        refused(Path::new("/dev/null"), "a character device");
        refused(&state.join("presence.sqlite3"), "inside the state dir");
        refused(&state.join("new.jsonl"), "inside the state dir");
        refused(&out.join("missing/x.jsonl"), "does not exist");
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink("/dev/null", out.join("null")).unwrap();
            refused(&out.join("null"), "a character device");
            symlink(state.join("presence.sqlite3"), out.join("store")).unwrap();
            refused(&out.join("store"), "inside the state dir");
            symlink(&state, out.join("state-link")).unwrap();
            refused(&out.join("state-link/x.jsonl"), "inside the state dir");
            symlink(out.join("nothing"), out.join("dangling")).unwrap();
            refused(&out.join("dangling"), "to nothing");
            let fifo = out.join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                refused(&fifo, "a FIFO");
            }
        }
        assert_eq!(
            std::fs::read_to_string(state.join("presence.sqlite3")).unwrap(),
            "store"
        );
    }

    #[cfg(unix)]
    #[test]
    fn output_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        std::fs::write(&target, "old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut f = PartialFile::create(&target, "/inputs/output_path").unwrap();
        f.write(&json!({"id": "a"})).unwrap();
        f.commit().unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_link_at_the_partial_name_is_never_followed() {
        // Issue 19, item 3: the partial file's name was `.{name}.partial-{pid}`, so a
        // link planted there made the run write sign-ins into the link's target.
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let target = dir.path().join("out.jsonl");
        let planted = dir
            .path()
            .join(format!(".out.jsonl.partial-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let mut f = PartialFile::create(&target, "/inputs/output_path").unwrap();
        f.write(&json!({"id": "a"})).unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "{\"id\":\"a\"}\n"
        );
        assert!(
            planted.is_symlink(),
            "the planted link itself is left alone"
        );
    }
}
