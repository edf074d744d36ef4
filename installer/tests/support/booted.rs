//! A root booted with a real systemd as its PID 1 (`systemd-nspawn -b`), for
//! the tests of the node's life under systemd on a machine whose own PID 1 is
//! not systemd.
//!
//! The root is a copy, in a tmpfs mounted in a temporary directory, of the
//! Debian root with systemd, dbus and rpm that
//! scripts/testbed/install-systemd-root.sh caches.
//! It shares the host's network (no `--private-network`): a server inside is
//! reached on the host's 127.0.0.1. There is no machined (`--register=no
//! --keep-unit`), so commands run inside through `nsenter` into the
//! namespaces of the container's PID 1, found as the nspawn process's child.
//!
//! Dropping it (also while a test panics) halts the container (SIGTERM to
//! nspawn: the container's systemd powers off), kills what is left (SIGKILL to
//! the container's PID 1 ends its whole PID namespace; a killed nspawn would
//! leave it running), unmounts and removes the root: no process outlives the
//! test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{must, testbed, text};

const HINT: &str =
    "run scripts/testbed/install-systemd-root.sh (systemd-container, the systemd root)";

/// The cached root tarball; fails with the install script's name if missing.
pub fn systemd_root_tar() -> PathBuf {
    let t = testbed().join("systemd/debroot-systemd.tar");
    assert!(t.is_file(), "{} is missing: {HINT}", t.display());
    t
}

/// A port on 127.0.0.1 below the ephemeral range, from a block of its own
/// (the kms tests use 20000–32000): see ports.rs for why not port 0.
pub fn test_port() -> u16 {
    port_in_block(17000..20000, 1)
}

include!("../../../kms/tests/support/ports.rs");

/// A booted root. See the module documentation.
pub struct BootedRoot {
    // Dropped in this order, after `Drop::drop` halted the container.
    mounted: MountedRoot,
    work: tempfile::TempDir,
    nspawn: Child,
    /// The container's PID 1, as a host pid.
    init: i32,
    machine: String,
}

impl BootedRoot {
    /// Copy the cached root, boot it with the host directories `binds`
    /// (host path, path inside) mounted read-only, and wait until its
    /// systemd has finished booting.
    pub fn boot(binds: &[(&Path, &str)]) -> Self {
        let tar = systemd_root_tar();
        // Short, under /tmp; the machine name is the directory's, unique.
        let work = tempfile::Builder::new()
            .prefix("ckmsd")
            .tempdir_in("/tmp")
            .unwrap();
        let root = work.path().join("root");
        std::fs::create_dir(&root).unwrap();
        must(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    "mode=0755,size=2g",
                    "cmx-kms-test-root",
                ])
                .arg(&root),
        );
        let mounted = MountedRoot(root.clone());
        must(
            Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-xf")
                .arg(&tar),
        );
        let machine = work
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let console = std::fs::File::create(work.path().join("console.log")).unwrap();
        let mut c = Command::new("systemd-nspawn");
        c.arg("-q").arg("-D").arg(&root).args([
            "--register=no",
            "--keep-unit",
            "--machine",
            &machine,
        ]);
        for (host, inside) in binds {
            c.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        c.arg("-b")
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console);
        let nspawn = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run systemd-nspawn: {e} ({HINT})"));
        let mut booted = Self {
            mounted,
            work,
            nspawn,
            init: 0,
            machine,
        };
        booted.init = booted.find_init();
        // The first command may come before systemd set up its namespace
        // view; is-system-running --wait returns once booting is over.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = booted.sh("systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the container did not finish booting ({state}):\n{}\n{}",
                text(&out),
                booted.console()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        booted
    }

    /// The host pid of the container's PID 1: the child of nspawn whose pid
    /// in its own namespace is 1.
    fn find_init(&mut self) -> i32 {
        let parent = self.nspawn.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
                    continue;
                };
                let field = |k: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(k))
                        .map(str::trim)
                        .unwrap_or("")
                        .to_owned()
                };
                let nspid = field("NSpid:");
                if field("PPid:") == parent && nspid.split_whitespace().last() == Some("1") {
                    return nspid.split_whitespace().next().unwrap().parse().unwrap();
                }
            }
            if let Some(st) = self.nspawn.try_wait().unwrap() {
                panic!("systemd-nspawn exited ({st}):\n{}", self.console());
            }
            assert!(
                Instant::now() < deadline,
                "no container PID 1 under systemd-nspawn:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The container's PID 1, as a host pid.
    pub fn init_pid(&self) -> i32 {
        self.init
    }

    /// The temporary directory holding the root and the console log.
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// A path inside the root, seen from the host.
    pub fn p(&self, inside: &str) -> PathBuf {
        self.work
            .path()
            .join("root")
            .join(inside.trim_start_matches('/'))
    }

    /// nspawn's console: the container's boot and shutdown messages.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.work.path().join("console.log")).unwrap_or_default()
    }

    /// Run `script` with `sh -c` inside the container (as its root, with a
    /// clean environment), at most 5 minutes; output captured.
    pub fn sh(&self, script: &str) -> Output {
        let mut c = Command::new("timeout");
        c.args(["-k", "5", "300", "nsenter", "-t"])
            .arg(self.init.to_string())
            .args(["-m", "-u", "-i", "-p", "-C", "-r", "-w", "--"])
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "LANG=C.UTF-8",
                "/bin/sh",
                "-c",
                script,
            ])
            .stdin(Stdio::null());
        c.output()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e} ({HINT})"))
    }

    /// [`Self::sh`], panicking with the output unless it exits 0; its stdout.
    pub fn must(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "inside the container `{script}` failed ({}):\n{}",
            out.status,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl show -p <prop> --value cmx-kms`.
    pub fn show(&self, prop: &str) -> String {
        self.must(&format!("systemctl show -p {prop} --value cmx-kms.service"))
            .trim()
            .to_owned()
    }

    /// Poll `cond` every 200 ms until it holds, at most `secs` seconds.
    pub fn wait_for(&self, what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status:\n{}",
                text(&self.sh("systemctl status --no-pager -l cmx-kms.service"))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kill(pid: u32, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// The tmpfs the root is copied into, unmounted on drop: that frees it at
/// once, where deleting the ~12,000 files of a root from a busy disk took
/// 20-40 s.
struct MountedRoot(PathBuf);

impl Drop for MountedRoot {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

impl Drop for BootedRoot {
    fn drop(&mut self) {
        // nspawn forwards SIGTERM as a power-off request to the container.
        // (Child ids are real pids, never 0: no group-wide kill.)
        Self::kill(self.nspawn.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(self.nspawn.try_wait(), Ok(Some(_))) {
            let c = self.console();
            let tail: Vec<&str> = c.lines().rev().take(40).collect();
            eprintln!(
                "the container did not halt within 30 s; killing it. Console:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            if let Ok(init) = u32::try_from(self.init)
                && init > 1
            {
                Self::kill(init, "-KILL");
            }
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        // A killed nspawn leaves its propagation directory on the host.
        let _ = std::fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(&self.machine));
        // Then `mounted` unmounts the root and the TempDir removes the rest.
    }
}
