//! Counts PyKMIP's `Processing operation: X` log lines as the log grows.
//!
//! PyKMIP logs through a `RotatingFileHandler` (1 MB, five backups): at about
//! 3 000 requests at INFO level `server.log` is renamed `server.log.1` and a
//! new one begins, so re-reading the file would lose counts. The counter
//! follows the file by inode and offset instead, through up to five
//! rotations between two reads.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::BenchError;

/// PyKMIP's backups (`backupCount=5`).
const BACKUPS: usize = 5;

/// Running totals of the operations logged since the counter was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub decrypts: u64,
    pub encrypts: u64,
}

/// Follows one log file across rotations.
pub struct LogCounter {
    path: PathBuf,
    /// The inode and offset read up to (after the last complete line).
    at: Option<(u64, u64)>,
    totals: Counts,
}

/// How often each counted operation appears in `text`'s lines.
fn count(text: &str, into: &mut Counts) {
    for line in text.lines() {
        if line.ends_with("Processing operation: Decrypt") {
            into.decrypts += 1;
        } else if line.ends_with("Processing operation: Encrypt") {
            into.encrypts += 1;
        }
    }
}

/// Reads `path` from `from` up to its last complete line; returns the text
/// and the offset just after it.
fn read_lines(path: &Path, from: u64) -> Result<(String, u64), BenchError> {
    let mut f = std::fs::File::open(path).map_err(BenchError::io(path))?;
    f.seek(SeekFrom::Start(from))
        .map_err(BenchError::io(path))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(BenchError::io(path))?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    bytes.truncate(complete);
    let end = from + complete as u64;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), end))
}

impl LogCounter {
    /// Counts from the start of the current file.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            at: None,
            totals: Counts::default(),
        }
    }

    fn generation(&self, i: usize) -> PathBuf {
        if i == 0 {
            self.path.clone()
        } else {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        }
    }

    /// Reads what was logged since the last call; returns the totals.
    pub fn advance(&mut self) -> Result<Counts, BenchError> {
        let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).ok();
        // Where we stopped: the current file, or a backup it was renamed to.
        let (start, offset) = match self.at {
            None => (0, 0),
            Some((inode, offset)) => {
                let found = (0..=BACKUPS).find(|i| ino(&self.generation(*i)) == Some(inode));
                match found {
                    Some(i) => (i, offset),
                    None => {
                        return Err(BenchError::Request(format!(
                            "{} rotated more than {BACKUPS} times between two reads: \
                             use fewer requests per round",
                            self.path.display()
                        )));
                    }
                }
            }
        };
        for i in (0..=start).rev() {
            let path = self.generation(i);
            let from = if i == start { offset } else { 0 };
            let (text, end) = read_lines(&path, from)?;
            count(&text, &mut self.totals);
            if i == 0 {
                self.at = ino(&path).map(|inode| (inode, end));
            }
        }
        Ok(self.totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEC: &str = "2026 - kmip.server.engine - INFO - Processing operation: Decrypt\n";
    const ENC: &str = "2026 - kmip.server.engine - INFO - Processing operation: Encrypt\n";

    fn append(path: &Path, text: &str) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn follows_rotations_and_skips_partial_lines() {
        let dir = std::env::temp_dir().join(format!("cmx-kms-bench-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let log = dir.join("server.log");
        append(&log, &format!("{DEC}{ENC}{DEC}"));
        let mut c = LogCounter::new(&log);
        assert_eq!(
            c.advance().ok(),
            Some(Counts {
                decrypts: 2,
                encrypts: 1
            })
        );
        // A line still being written is not counted until it is whole.
        append(
            &log,
            &format!("{DEC}2026 - kmip - INFO - Processing operation: Decr"),
        );
        assert_eq!(c.advance().ok().map(|t| t.decrypts), Some(3));
        append(&log, "ypt\n");
        assert_eq!(c.advance().ok().map(|t| t.decrypts), Some(4));
        // Two rotations between reads, as RotatingFileHandler does them.
        append(&log, DEC);
        std::fs::rename(&log, dir.join("server.log.1")).unwrap_or_else(|e| panic!("{e}"));
        append(&log, &format!("{DEC}{ENC}"));
        std::fs::rename(dir.join("server.log.1"), dir.join("server.log.2"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&log, dir.join("server.log.1")).unwrap_or_else(|e| panic!("{e}"));
        append(&log, DEC);
        assert_eq!(
            c.advance().ok(),
            Some(Counts {
                decrypts: 7,
                encrypts: 2
            })
        );
        assert_eq!(
            c.advance().ok(),
            Some(Counts {
                decrypts: 7,
                encrypts: 2
            })
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
