//! Where a run's files go, and how they are written.

pub mod plot;
pub mod tensorboard;
pub(crate) mod weights;

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// A fresh directory for one run's outputs: `ROOT/NAME/version_N`, N the first number free
/// (as Lightning's `lightning_logs/version_N`), so that runs never overwrite each other.
///
/// A directory [`RunDir::create`] made that is still empty when its last handle goes away — a
/// fit refused before it wrote anything (`--epochs 0`), a program that failed at its setup — is
/// removed: refused runs leave no empty `version_N` behind. ([`RunDir::open`]'s is left as it is.)
#[derive(Clone, Debug)]
pub struct RunDir {
    path: std::sync::Arc<Made>,
}

/// The directory, and whether this handle's [`RunDir::create`] made it.
#[derive(Debug)]
struct Made {
    path: PathBuf,
    fresh: bool,
}

impl Drop for Made {
    fn drop(&mut self) {
        // `remove_dir` removes an empty directory only: anything written there keeps it.
        if self.fresh && std::fs::remove_dir(&self.path).is_ok() {
            tracing::debug!("removed the empty run directory {}", self.path.display());
        }
    }
}

impl RunDir {
    /// Creates `root/name/version_N`, creating `root/name` as needed.
    pub fn create(root: impl AsRef<Path>, name: &str) -> Result<RunDir> {
        let parent = root.as_ref().join(name);
        std::fs::create_dir_all(&parent).map_err(Error::io("create the run directory", &parent))?;
        for version in 0.. {
            let path = parent.join(format!("version_{version}"));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir::of(path, true)),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(Error::io("create the run directory", path)(err)),
            }
        }
        unreachable!("there is always a free version number")
    }

    /// The run directory at `path` itself, created if need be, or as it is: to go on with a
    /// run (see [`crate::Trainer::resumable`]).
    pub fn open(path: impl Into<PathBuf>) -> Result<RunDir> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(Error::io("create the run directory", &path))?;
        Ok(RunDir::of(path, false))
    }

    fn of(path: PathBuf, fresh: bool) -> RunDir {
        RunDir {
            path: std::sync::Arc::new(Made { path, fresh }),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path.path
    }

    /// What it holds, for a last log line: `checkpoints/ (4 files), metrics/ (4 files),
    /// final.safetensors, history.json` (each folder below it and its count of files, then the
    /// files in it), or `nothing`.
    pub fn describe(&self) -> Result<String> {
        describe(self.path()).map_err(Error::io("read the run directory", self.path()))
    }
}

/// `name/ (N files)` for each folder below `dir`, and the files directly in it.
pub(crate) fn describe(dir: &Path) -> std::io::Result<String> {
    let mut parts = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            let files = std::fs::read_dir(entry.path())?.count();
            parts.push(format!("{name}/ ({files} file{})", if files == 1 { "" } else { "s" }));
        } else {
            parts.push(name);
        }
    }
    Ok(if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    })
}

/// This machine's host name (`localhost` when it cannot be read).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Writes a file atomically: `write` fills a temporary file beside `path`, which is then renamed
/// over it, so that a crash never leaves a half-written file at `path`.
pub(crate) fn atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Keep the extension last: some writers pick the format from it.
    let temp = path.with_file_name(format!(".{}.tmp-{name}", std::process::id()));
    let result = write(&temp).and_then(|()| std::fs::rename(&temp, path).map_err(Error::io("write", path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Removes the temporary files that writes by [`atomically`] left in `dir` when their process
/// was killed — those of processes that no longer run (on Linux; elsewhere, all of them).
pub(crate) fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some((pid, _)) = name.strip_prefix('.').and_then(|rest| rest.split_once(".tmp-")) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            tracing::debug!("removing {name}, left by a write that was killed");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes a file atomically and durably: as [`atomically`], with the temporary file flushed to
/// disk before the rename and the directory after it, so that neither a killed process nor a
/// power cut leaves a torn file at `path`.
pub(crate) fn durably(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    atomically(path, |temp| {
        write(temp)?;
        std::fs::File::open(temp)
            .and_then(|f| f.sync_all())
            .map_err(Error::io("flush", temp))
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Makes the rename itself durable; some file systems cannot sync a directory: no loss.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up() {
        let root = tempfile::tempdir().unwrap();
        let a = RunDir::create(root.path(), "demo").unwrap();
        let b = RunDir::create(root.path(), "demo").unwrap();
        assert_eq!(a.path(), root.path().join("demo/version_0"));
        assert_eq!(b.path(), root.path().join("demo/version_1"));
    }

    #[test]
    fn a_run_directory_left_empty_goes_with_its_last_handle() {
        let root = tempfile::tempdir().unwrap();
        let empty = RunDir::create(root.path(), "demo").unwrap();
        let path = empty.path().to_owned();
        let clone = empty.clone();
        drop(empty);
        assert!(path.exists(), "a handle is left");
        drop(clone);
        assert!(!path.exists(), "empty, and no handle left");
        let written = RunDir::create(root.path(), "demo").unwrap();
        std::fs::write(written.path().join("epochs.csv"), b"epoch\n").unwrap();
        let kept = written.path().to_owned();
        drop(written);
        assert!(kept.join("epochs.csv").exists(), "a run that wrote something stays");
        let opened = RunDir::open(root.path().join("mine")).unwrap();
        let mine = opened.path().to_owned();
        drop(opened);
        assert!(mine.exists(), "an opened directory is the user's");
    }

    #[test]
    fn unwritable_root_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = RunDir::create(&file, "demo").unwrap_err().to_string();
        assert!(
            err.contains("create the run directory") && err.contains("not-a-dir"),
            "{err}"
        );
    }

    #[test]
    fn failed_atomic_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, b"old").unwrap();
        let err = atomically(&path, |temp| {
            std::fs::write(temp, b"half").unwrap();
            Err(Error::config("test", "failed half way".into()))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old", "old content intact");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file removed"
        );
    }
}
