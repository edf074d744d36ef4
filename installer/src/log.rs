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
use std::time::SystemTime;

use crate::clock::timestamp;

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

#[cfg(test)]
mod tests {
    use super::*;

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
