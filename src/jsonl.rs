//! Output files that are all or nothing: JSON lines written to a partial file beside
//! the target and renamed onto it only when complete, so a killed run leaves no half
//! file at the target (used by `pull_sign_ins`'s `output_path`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// JSON lines written beside the target and renamed onto it only when complete.
pub struct PartialFile {
    target: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    pointer: &'static str,
}

impl PartialFile {
    /// Start writing `target`; errors point at `pointer` (the input that named it).
    pub fn create(target: &Path, pointer: &'static str) -> Result<Self> {
        let bad = |m: String| Error::invalid(pointer, m);
        let name = target
            .file_name()
            .ok_or_else(|| bad("names no file".into()))?
            .to_string_lossy()
            .into_owned();
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if target.is_dir() {
            return Err(bad(format!("{} is a directory", target.display())));
        }
        let prefix = format!(".{name}.partial-");
        remove_stale_partials(&dir, &prefix);
        let tmp = dir.join(format!("{prefix}{}", std::process::id()));
        let file = File::create(&tmp)
            .map_err(|e| bad(format!("cannot create a file in {}: {e}", dir.display())))?;
        Ok(PartialFile {
            target: target.to_path_buf(),
            tmp,
            out: BufWriter::with_capacity(256 * 1024, file),
            pointer,
        })
    }

    /// Append one value as a line.
    pub fn write(&mut self, record: &impl Serialize) -> Result<()> {
        serde_json::to_writer(&mut self.out, record)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| self.io_error(e))
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::invalid(
            self.pointer,
            format!("cannot write {}: {e}", self.tmp.display()),
        )
    }

    /// Flush, sync and rename onto the target; the path written.
    pub fn commit(self) -> Result<String> {
        let PartialFile {
            target,
            tmp,
            out,
            pointer,
        } = self;
        let done = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &target));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::invalid(
                pointer,
                format!("cannot complete {}: {e}", target.display()),
            ));
        }
        Ok(target.display().to_string())
    }

    /// Give up: remove the partial file.
    pub fn abandon(self) {
        drop(self.out);
        let _ = std::fs::remove_file(&self.tmp);
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
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
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
        let stale = dir.path().join(".out.jsonl.partial-4000000000");
        std::fs::write(&stale, "{\"id\":").unwrap();
        let mut f = PartialFile::create(&target, "/inputs/output_path").unwrap();
        assert!(!stale.exists());
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
}
