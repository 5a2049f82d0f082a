//! A file that another process appends lines to, read as it grows: only the bytes added since
//! the last look, and only when its length, modification time or identity changed — a 100 MB
//! steps file costs one `stat` a tick once read.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What tells a version of a file from another without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Device and inode: a file replaced by another (renamed over it) is a new file.
    id: (u64, u64),
}

impl Stamp {
    pub(crate) fn of(meta: &Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            id: file_id(meta),
        }
    }
}

#[cfg(unix)]
fn file_id(meta: &Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_id(_: &Metadata) -> (u64, u64) {
    (0, 0)
}

/// A line, numbered from 1 in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub number: usize,
    pub text: String,
}

/// What a look at the file found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Added {
    /// The file is not the one read before (replaced, or cut shorter, as a resumed fit does):
    /// `lines` start from its first line, and what was read before is to be forgotten.
    pub restarted: bool,
    /// Complete lines (ended by a newline) added since the last look.
    pub lines: Vec<Line>,
}

/// The lines of one file, read incrementally.
#[derive(Debug)]
pub(crate) struct Tail {
    path: PathBuf,
    stamp: Option<Stamp>,
    /// Bytes read so far.
    offset: u64,
    /// The bytes after the last newline: a line being written, or one cut off.
    partial: Vec<u8>,
    /// Complete lines read so far.
    lines: usize,
}

impl Tail {
    pub(crate) fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            stamp: None,
            offset: 0,
            partial: Vec::new(),
            lines: 0,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The text after the last newline, with its line number, when there is any: the line a
    /// writer is in the middle of, or the end of a file cut mid-line.
    pub(crate) fn partial(&self) -> Option<Line> {
        (!self.partial.is_empty()).then(|| Line {
            number: self.lines + 1,
            text: String::from_utf8_lossy(&self.partial).into_owned(),
        })
    }

    /// The lines added since the last call (all of them the first time). An error says that
    /// the file could not be read (gone, or unreadable); the next call tries again.
    pub(crate) fn read(&mut self) -> io::Result<Added> {
        let meta = std::fs::metadata(&self.path)?;
        let stamp = Stamp::of(&meta);
        if self.stamp == Some(stamp) {
            return Ok(Added::default());
        }
        let restarted = self.stamp.is_some_and(|old| old.id != stamp.id) || stamp.len < self.offset;
        if restarted {
            self.offset = 0;
            self.partial.clear();
            self.lines = 0;
        }
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = std::mem::take(&mut self.partial);
        // What the writer adds meanwhile is read next time.
        let added = file
            .take(stamp.len.saturating_sub(self.offset))
            .read_to_end(&mut bytes)?;
        self.offset += added as u64;
        // Had the file grown while being stat'ed and read, its new stamp is taken next time.
        self.stamp = Some(Stamp {
            len: self.offset,
            ..stamp
        });
        let mut lines = Vec::new();
        let mut start = 0;
        for end in memchr_all(&bytes) {
            self.lines += 1;
            let text = &bytes[start..end];
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            lines.push(Line {
                number: self.lines,
                text: String::from_utf8_lossy(text).into_owned(),
            });
            start = end + 1;
        }
        self.partial = bytes[start..].to_vec();
        Ok(Added { restarted, lines })
    }
}

/// The positions of the newlines in `bytes`.
fn memchr_all(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn texts(read: &Added) -> Vec<&str> {
        read.lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn reads_what_was_added_and_keeps_a_cut_line_for_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, "a\nb\nc").unwrap();
        let mut tail = Tail::new(path.clone());
        let first = tail.read().unwrap();
        assert_eq!(texts(&first), ["a", "b"]);
        assert!(!first.restarted);
        assert_eq!(tail.partial().map(|l| (l.number, l.text)), Some((3, "c".into())));
        assert_eq!(tail.read().unwrap(), Added::default(), "nothing new");

        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"d\ne\n").unwrap();
        let next = tail.read().unwrap();
        assert_eq!(texts(&next), ["cd", "e"]);
        assert_eq!(next.lines[0].number, 3);
        assert_eq!(tail.partial(), None);
    }

    #[test]
    fn a_file_cut_shorter_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, "h\n1\n2\n3\n").unwrap();
        let mut tail = Tail::new(path.clone());
        assert_eq!(tail.read().unwrap().lines.len(), 4);
        std::fs::write(&path, "h\n1\n").unwrap();
        let again = tail.read().unwrap();
        assert!(again.restarted);
        assert_eq!(texts(&again), ["h", "1"]);
        assert_eq!(again.lines[1].number, 2);
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let mut tail = Tail::new(PathBuf::from("/nonexistent/trainmon/steps.jsonl"));
        assert_eq!(tail.read().unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
