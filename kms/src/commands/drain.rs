//! `cmx-kms drain [-c PATH] [--resume]`: take the running node out of its
//! load balancer without stopping it, and put it back.
//!
//! The command finds the `cmx-kms serve` process that runs with the same
//! kms.properties (by its command line in `/proc`; a cmx-kms is a process
//! whose executable is this one's file, or whose program is named
//! `cmx-kms*`; a `serve` of that configuration under another name is
//! reported, not signalled) and signals it: SIGUSR1
//! drains (every readiness check answers `draining`, and after
//! `kms.server.drain-delay` open keep-alive connections close between
//! requests, so clients reconnect through the balancer to other nodes; the
//! node still serves whoever comes), SIGUSR2 resumes. No socket or port is
//! opened for it: the kernel's signal permissions decide who may drain a
//! node (root, or the service's own user). `systemctl kill -s SIGUSR1
//! cmx-kms` does the same under systemd.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
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
    let Found { pids, others } = serving(&wanted);
    if pids.is_empty() {
        return Err(CommandError::Unavailable(not_found(&wanted, &others)));
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

/// The `serve` processes whose configuration is `wanted`.
#[derive(Debug, Default)]
struct Found {
    /// cmx-kms's (see [`is_cmx_kms`]).
    pids: Vec<i32>,
    /// Other programs' (pid, program), not signalled.
    others: Vec<(i32, String)>,
}

/// The message when no cmx-kms serves `wanted`; `others` are programs of
/// another name that run `serve` with it.
fn not_found(wanted: &Path, others: &[(i32, String)]) -> String {
    if others.is_empty() {
        return format!(
            "cmx-kms drain: no running `cmx-kms serve` uses {}; is the node running? \
             (systemctl status cmx-kms)",
            wanted.display()
        );
    }
    let list: Vec<String> = others
        .iter()
        .map(|(pid, program)| format!("pid {pid} ({program})"))
        .collect();
    format!(
        "cmx-kms drain: no cmx-kms process serves {}, but {} runs `serve` with it under another \
         program name, so it was not signalled. If it is the node, signal it yourself: \
         kill -USR1 PID drains, kill -USR2 PID resumes",
        wanted.display(),
        list.join(", ")
    )
}

/// The `serve` processes whose configuration is `wanted` (canonical), this
/// process excluded.
fn serving(wanted: &Path) -> Found {
    let me = std::process::id();
    let my_exe = std::env::current_exe()
        .and_then(std::fs::metadata)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let mut found = Found::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
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
        let Ok(pid) = i32::try_from(pid) else {
            continue;
        };
        if !config.canonicalize().is_ok_and(|c| c == wanted) {
            continue;
        }
        // Unreadable for another user's process (without root): the
        // program name decides then.
        let exe_link = entry.path().join("exe");
        let exe = std::fs::read_link(&exe_link).ok();
        let same = my_exe.is_some()
            && std::fs::metadata(&exe_link)
                .ok()
                .map(|m| (m.dev(), m.ino()))
                == my_exe;
        let program = args.first().copied().unwrap_or_default();
        if is_cmx_kms(program, exe.as_deref(), same) {
            found.pids.push(pid);
        } else {
            let name = exe.unwrap_or_else(|| PathBuf::from(program));
            found.others.push((pid, name.display().to_string()));
        }
    }
    found
}

/// Whether a process is a cmx-kms: its executable is the same file as this
/// one's (`same_file`), or its program (`argv0`) or executable (`exe`) is
/// named `cmx-kms` or `cmx-kms` followed by anything (a versioned or
/// renamed copy, `cmx-kms-0.2.0`).
fn is_cmx_kms(argv0: &OsStr, exe: Option<&Path>, same_file: bool) -> bool {
    let named = |p: &Path| {
        p.file_name()
            .is_some_and(|n| n.as_bytes().starts_with(b"cmx-kms"))
    };
    same_file || named(Path::new(argv0)) || exe.is_some_and(named)
}

/// The configuration a `serve` command line runs with (whatever its
/// program: see [`is_cmx_kms`]); `None` for any other command line.
fn serve_config(args: &[&OsStr]) -> Option<PathBuf> {
    let (_program, rest) = args.split_first()?;
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
        assert_eq!(
            parse(&["/opt/kms/cmx-kms-0.2.0", "serve", "-c", "x"]),
            Some(PathBuf::from("x")),
            "the program is judged apart"
        );
        assert_eq!(parse(&["cmx-kms", "serve", "-c"]), None, "no value");
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn a_cmx_kms_by_its_executable_or_a_name_starting_with_cmx_kms() {
        let os = OsStr::new;
        assert!(is_cmx_kms(os("/usr/share/kms/bin/cmx-kms"), None, false));
        assert!(is_cmx_kms(os("/opt/cmx-kms-aed03dc"), None, false));
        assert!(is_cmx_kms(os("cmx-kms.old"), None, false));
        // A wrapper or a symlink of another name, onto this very binary.
        assert!(is_cmx_kms(os("/usr/local/bin/kms-node"), None, true));
        // argv[0] rewritten, the executable's name tells.
        let exe = Path::new("/opt/kms/cmx-kms-0.2.0 (deleted)");
        assert!(is_cmx_kms(os("kms"), Some(exe), false));
        assert!(!is_cmx_kms(os("/usr/bin/python3"), None, false));
        assert!(!is_cmx_kms(
            os("node"),
            Some(Path::new("/usr/bin/node")),
            false
        ));
    }

    #[test]
    fn other_programs_serving_the_configuration_are_named() {
        let wanted = Path::new("/etc/kms/kms.properties");
        let none = not_found(wanted, &[]);
        assert!(none.contains("is the node running?"), "{none}");
        let other = not_found(wanted, &[(42, "/opt/kms/kms-node".into())]);
        assert!(
            other.contains(
                "pid 42 (/opt/kms/kms-node) runs `serve` with it under another program name"
            ),
            "{other}"
        );
        assert!(other.contains("kill -USR1"), "{other}");
    }
}
