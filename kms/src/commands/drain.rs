//! `cmx-kms drain [-c PATH] [--resume]`: take the running node out of its
//! load balancer without stopping it, and put it back.
//!
//! The command finds the `cmx-kms serve` process that runs with the same
//! kms.properties (by its command line in `/proc`) and signals it: SIGUSR1
//! drains (every readiness check answers `draining`, and after
//! `kms.server.drain-delay` open keep-alive connections close between
//! requests, so clients reconnect through the balancer to other nodes; the
//! node still serves whoever comes), SIGUSR2 resumes. No socket or port is
//! opened for it: the kernel's signal permissions decide who may drain a
//! node (root, or the service's own user). `systemctl kill -s SIGUSR1
//! cmx-kms` does the same under systemd.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{CommandError, DEFAULT_CONFIG};

/// Signal the node serving `config`: drain, or resume with `resume`.
#[allow(clippy::print_stdout)] // The command's report is its output.
pub fn run(config: &Path, resume: bool) -> Result<(), CommandError> {
    let Ok(wanted) = config.canonicalize() else {
        return Err(CommandError::Usage(format!(
            "cmx-kms drain: {} does not exist; name the node's kms.properties with -c",
            config.display()
        )));
    };
    let pids = serving(&wanted);
    if pids.is_empty() {
        return Err(CommandError::Unavailable(format!(
            "cmx-kms drain: no running `cmx-kms serve` uses {}; is the node running? \
             (systemctl status cmx-kms)",
            wanted.display()
        )));
    }
    let (signal, what) = if resume {
        (
            Signal::SIGUSR2,
            "resumed: its readiness checks report its canary again",
        )
    } else {
        (
            Signal::SIGUSR1,
            "draining: its readiness checks answer 'draining' now, and open keep-alive \
             connections close after kms.server.drain-delay; it still serves. \
             `cmx-kms drain --resume` puts it back",
        )
    };
    let mut failed = Vec::new();
    for pid in pids {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) => println!("cmx-kms (pid {pid}) {what}"),
            Err(Errno::EPERM) => failed.push(CommandError::NotAllowed(format!(
                "cmx-kms drain: not allowed to signal pid {pid}: run it as root or as the \
                 service's user"
            ))),
            Err(Errno::ESRCH) => failed.push(CommandError::Unavailable(format!(
                "cmx-kms drain: pid {pid} exited meanwhile"
            ))),
            Err(e) => failed.push(CommandError::Software(format!(
                "cmx-kms drain: cannot signal pid {pid}: {e}"
            ))),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CommandError::Several(failed))
    }
}

/// The pids of `cmx-kms serve` processes whose configuration is `wanted`
/// (canonical), this process excluded.
fn serving(wanted: &Path) -> Vec<i32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&OsStr> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(OsStr::from_bytes)
            .collect();
        let Some(config) = serve_config(&args) else {
            continue;
        };
        let config = if config.is_relative() {
            match std::fs::read_link(entry.path().join("cwd")) {
                Ok(cwd) => cwd.join(config),
                Err(_) => continue,
            }
        } else {
            config
        };
        if config.canonicalize().is_ok_and(|c| c == wanted)
            && let Ok(pid) = i32::try_from(pid)
        {
            out.push(pid);
        }
    }
    out
}

/// The configuration a `cmx-kms serve` command line runs with; `None` for
/// any other command line.
fn serve_config(args: &[&OsStr]) -> Option<PathBuf> {
    let (program, rest) = args.split_first()?;
    if Path::new(program).file_name() != Some(OsStr::new("cmx-kms")) {
        return None;
    }
    let serve = rest.iter().position(|a| *a == "serve")?;
    let mut config = PathBuf::from(DEFAULT_CONFIG);
    let mut it = rest[serve + 1..].iter();
    while let Some(a) = it.next() {
        let b = a.as_bytes();
        if b == b"-c" || b == b"--config" {
            config = PathBuf::from(it.next()?);
        } else if let Some(v) = b.strip_prefix(b"--config=") {
            config = PathBuf::from(OsStr::from_bytes(v));
        } else if let Some(v) = b.strip_prefix(b"-c") {
            config = PathBuf::from(OsStr::from_bytes(v));
        }
    }
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[&str]) -> Option<PathBuf> {
        let args: Vec<&OsStr> = line.iter().map(OsStr::new).collect();
        serve_config(&args)
    }

    #[test]
    fn finds_the_configuration_of_serve_command_lines_only() {
        let default = Some(PathBuf::from(DEFAULT_CONFIG));
        assert_eq!(parse(&["/usr/share/kms/bin/cmx-kms", "serve"]), default);
        assert_eq!(
            parse(&["cmx-kms", "serve", "-c", "/etc/k.properties"]),
            Some(PathBuf::from("/etc/k.properties"))
        );
        assert_eq!(
            parse(&["./cmx-kms", "serve", "--config=conf/k"]),
            Some(PathBuf::from("conf/k"))
        );
        assert_eq!(
            parse(&["cmx-kms", "serve", "-cconf/k"]),
            Some(PathBuf::from("conf/k"))
        );
        assert_eq!(parse(&["cmx-kms", "drain", "-c", "x"]), None);
        assert_eq!(parse(&["cmx-kms", "check-config"]), None);
        assert_eq!(parse(&["/usr/bin/python3", "serve", "-c", "x"]), None);
        assert_eq!(parse(&["cmx-kms", "serve", "-c"]), None, "no value");
        assert_eq!(parse(&[]), None);
    }
}
