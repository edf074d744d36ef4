//! Scratch roots and what the tests do in them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{Artifacts, debroot_tar, must, run_script, text};

/// A Debian minbase root in a temporary directory, with an rpm database.
/// Dropping it stops a service the direct-process manager left running.
pub struct ScratchRoot {
    dir: tempfile::TempDir,
}

impl ScratchRoot {
    pub fn new() -> Self {
        // Short, under /tmp: the notify socket path must fit a Unix socket.
        let dir = tempfile::Builder::new()
            .prefix("ckr")
            .tempdir_in("/tmp")
            .expect("tempdir");
        must(
            Command::new("tar")
                .arg("-C")
                .arg(dir.path())
                .arg("-xf")
                .arg(debroot_tar()),
        );
        std::fs::create_dir_all(dir.path().join("var/tmp")).unwrap();
        must(
            Command::new("rpm")
                .arg("--root")
                .arg(dir.path())
                .arg("--initdb"),
        );
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn root_arg(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    /// A node path under the root.
    pub fn p(&self, node: &str) -> PathBuf {
        self.dir.path().join(node.trim_start_matches('/'))
    }

    /// `rpm -q cmx-kms-server` in the root: `Some("0.1.0-2")` or `None`.
    pub fn installed(&self) -> Option<String> {
        let out = Command::new("rpm")
            .arg("--root")
            .arg(self.path())
            .args(["-q", "--qf", "%{VERSION}-%{RELEASE}", "cmx-kms-server"])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The service's pid, if the direct manager's pid file names a live cmx-kms.
    pub fn service_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.p("/run/cmx-kms.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
        (state != 'Z').then_some(pid)
    }

    /// uid and gid of `name` in the root's passwd.
    pub fn user(&self, name: &str) -> Option<(u32, u32)> {
        let t = std::fs::read_to_string(self.p("/etc/passwd")).unwrap();
        t.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
    }

    /// (mode, uid, gid) of a node path.
    pub fn stat(&self, node: &str) -> (u32, u32, u32) {
        let m = std::fs::symlink_metadata(self.p(node)).unwrap_or_else(|e| panic!("{node}: {e}"));
        (m.mode() & 0o7777, m.uid(), m.gid())
    }

    /// Run the tarball's CMX-KMS-Installer.sh against this root with `--yes`.
    pub fn install(&self, a: &Artifacts, extra: &[&str]) -> Output {
        let root = self.root_arg();
        let mut args = vec![
            "--root",
            root.as_str(),
            "--yes",
            "--rpm-nodeps",
            "--ready-timeout",
            "30",
        ];
        args.extend_from_slice(extra);
        run_script(&a.tarball_dir, "CMX-KMS-Installer.sh", &args, "")
    }

    /// Run CMX-KMS-Uninstaller.sh against this root with `--yes`.
    pub fn uninstall(&self, a: &Artifacts) -> Output {
        let root = self.root_arg();
        run_script(
            &a.tarball_dir,
            "CMX-KMS-Uninstaller.sh",
            &["--root", &root, "--yes", "--rpm-nodeps"],
            "",
        )
    }

    /// Make the installed node's configuration complete: see [`configure_root`].
    pub fn configure(&self, port: u16) {
        let dev = tempfile::tempdir().unwrap();
        configure_root(self.path(), dev.path(), port);
    }

    /// Is the service answering TLS connections on `port`?
    pub fn listening(&self, port: u16) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }
}

impl Drop for ScratchRoot {
    fn drop(&mut self) {
        if let Some(pid) = self.service_pid() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// Make the configuration of the node installed in `root` complete: a
/// keystore (made by `cmx-kms dev`'s code in `dev_dir`, whose client
/// certificates the caller may use), the soft backend with its key file in
/// the conf directory, the server on 127.0.0.1:`port`, no metrics listener.
pub fn configure_root(root: &Path, dev_dir: &Path, port: u16) -> cmx_kms::dev::DevFolder {
    let p = |node: &str| root.join(node.trim_start_matches('/'));
    let folder = cmx_kms::dev::DevFolder::prepare(&dev_dir.join("dev"), port).unwrap();
    std::fs::copy(
        folder.path("kmsKeystore.jks"),
        p("/usr/share/kms/conf/kmsKeystore.jks"),
    )
    .unwrap();
    let pw = secrecy::SecretString::from(folder.password.clone());
    cmx_kms::backend::soft::SoftBackend::open_or_create(
        &p("/usr/share/kms/conf/soft-master.key"),
        &pw,
    )
    .unwrap();
    let props = p("/usr/share/kms/conf/kms.properties");
    let mut t = std::fs::read_to_string(&props).unwrap();
    for (k, v) in [
        ("kms.keystore.password", folder.password.as_str()),
        ("kms.hsm.protocol", "soft"),
        (
            "kms.hsm.soft.key.file",
            "/usr/share/kms/conf/soft-master.key",
        ),
        ("kms.server.address", "127.0.0.1"),
        ("kms.server.port", &port.to_string()),
        ("kms.metrics.port", "0"),
    ] {
        t = set_property(&t, k, v);
    }
    std::fs::write(&props, t).unwrap();
    folder
}

/// Set `key=value` in properties text: replaces the first `key=` or `#key=` line, else appends.
pub fn set_property(text: &str, key: &str, value: &str) -> String {
    let mut done = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|l| {
            let body = l.strip_prefix('#').unwrap_or(l);
            if !done && body.strip_prefix(key).is_some_and(|r| r.starts_with('=')) {
                done = true;
                format!("{key}={value}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !done {
        out.push(format!("{key}={value}"));
    }
    out.join("\n") + "\n"
}

/// Panic with the installer's output unless it exited with `code`.
pub fn expect_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit {:?}\n{}",
        out.status.code(),
        text(out)
    );
}
