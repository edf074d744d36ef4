//! The install log: every applied step, with a UTC timestamp, both on the
//! terminal and appended to `/var/log/kms/install.log` under the root. Only
//! what happens after the plan is confirmed is logged; a refused or
//! unconfirmed run writes nothing.
//!
//! `/var/log/kms` belongs to the service user, so the file is opened with
//! [`crate::safefs::open_append_in`]: a link, FIFO or foreign file planted
//! under its name is moved aside, never written through.

use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use cmx_kms::time::civil_from_days;

/// Where messages go.
pub struct Log {
    file: Option<fs::File>,
    path: PathBuf,
    program: &'static str,
}

impl Log {
    /// A log that writes to the terminal only, until [`Log::open`].
    pub fn terminal(program: &'static str, path: PathBuf) -> Self {
        Self {
            file: None,
            path,
            program,
        }
    }

    /// Start appending to the log file (its directory must exist). A log file
    /// that cannot be opened is reported once and the run goes on.
    pub fn open(&mut self) {
        if self.file.is_some() {
            return;
        }
        let path = self.path.clone();
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        // /var/log/kms belongs to the service user: never follow what it put there.
        match crate::safefs::open_append_in(dir, &name.to_string_lossy(), &[0]) {
            Ok((f, warning)) => {
                self.file = Some(f);
                let args: Vec<String> = std::env::args().skip(1).collect();
                self.append(&format!("---- {} {}", self.program, args.join(" ")));
                if let Some(w) = warning {
                    self.say(&w);
                }
            }
            Err(e) => eprintln!("warning: cannot write {}: {e}", self.path.display()),
        }
    }

    fn append(&mut self, line: &str) {
        if let Some(f) = self.file.as_mut() {
            let _ = writeln!(f, "{} {line}", timestamp(SystemTime::now()));
        }
    }

    /// A message for the operator and the log.
    pub fn say(&mut self, msg: &str) {
        #[allow(clippy::print_stdout)]
        {
            println!("{msg}");
        }
        for l in msg.lines() {
            self.append(l);
        }
    }

    /// A step about to run.
    pub fn step(&mut self, n: usize, total: usize, what: &str) {
        self.say(&format!("[{n}/{total}] {what}"));
    }
}

/// `2025-05-20T13:45:12Z` for `t`.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A compact `20250520T134512Z` for file names.
pub fn stamp(t: SystemTime) -> String {
    timestamp(t).replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_747_748_712);
        assert_eq!(timestamp(t), "2025-05-20T13:45:12Z");
        assert_eq!(stamp(t), "20250520T134512Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00Z");
    }

    /// A link planted as install.log (the directory belongs to the service
    /// user) is not written through: its target stays as it was, the link is
    /// moved aside, and the log goes to a new regular file.
    #[test]
    fn a_planted_link_is_not_followed() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("shadow");
        std::fs::write(&target, "root:$6$secret:19000:0:99999:7:::\n").unwrap();
        let before = std::fs::read(&target).unwrap();
        let logs = dir.path().join("log");
        std::fs::create_dir(&logs).unwrap();
        let log = logs.join("install.log");
        std::os::unix::fs::symlink(&target, &log).unwrap();

        let mut l = Log::terminal("test", log.clone());
        l.open();
        l.say("a line that must not reach the link's target");

        assert_eq!(std::fs::read(&target).unwrap(), before, "target written");
        let m = std::fs::symlink_metadata(&log).unwrap();
        assert!(m.is_file(), "a new regular install.log");
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("must not reach")
        );
        let aside: Vec<_> = std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("install.log.untrusted-")
            })
            .collect();
        assert_eq!(aside.len(), 1, "the planted link is kept aside");
        assert!(aside[0].file_type().unwrap().is_symlink());
    }
}
