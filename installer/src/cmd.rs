//! Running external programs with their output captured.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::InstallError;
use crate::paths::Root;

/// What a finished command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// Exit code 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Standard output and error together, trimmed, for messages.
    pub fn text(&self) -> String {
        let mut t = self.stdout.trim_end().to_owned();
        let e = self.stderr.trim_end();
        if !e.is_empty() {
            if !t.is_empty() {
                t.push('\n');
            }
            t.push_str(e);
        }
        t
    }

    /// How it ended, in words.
    pub fn status(&self) -> String {
        match self.code {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".into(),
        }
    }
}

/// Is `program` on the PATH (or an existing path)?
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let f = d.join(program);
            f.is_file()
                && std::fs::metadata(&f).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

/// Run `program args...`, stdin closed, output captured.
pub fn run(program: &str, args: &[OsString]) -> Result<Output, InstallError> {
    let mut c = Command::new(program);
    c.args(args).stdin(Stdio::null());
    output(c, &format!("`{program}`"))
}

/// A command that runs a program of the node, inside the root: directly when
/// the root is `/`, else through `chroot ROOT`. With `user` = `(uid, gid)` the
/// program runs as that user (and group, no supplementary groups). The
/// environment is emptied but for `PATH` and `LANG=C`.
pub fn in_root(root: &Root, user: Option<(u32, u32)>, program: &str) -> Command {
    let mut c = if root.is_system() {
        let mut c = Command::new(program);
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt;
            // std drops the supplementary groups when root sets a uid.
            c.uid(uid).gid(gid);
        }
        c
    } else {
        let mut c = Command::new("chroot");
        if let Some((uid, gid)) = user {
            c.arg(format!("--userspec={uid}:{gid}"))
                .arg(format!("--groups={gid}"));
        }
        c.arg(root.dir()).arg(program);
        c
    };
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C")
        .stdin(Stdio::null());
    c
}

/// Run a prepared command, output captured.
pub fn output(mut c: Command, what: &str) -> Result<Output, InstallError> {
    let out = c
        .output()
        .map_err(|e| InstallError::Command(format!("cannot run {what}: {e}")))?;
    Ok(Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Indent every line of `text` by four spaces, for nesting command output in messages.
pub fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
