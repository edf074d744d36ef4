//! Shared by the installer tests: the packages (built once per test binary
//! through scripts/build-tarball and scripts/build-rpm), scratch roots made
//! from the cached Debian minbase root (shell, useradd, getent: the RPM's
//! scriptlets really run), and running the installer like an operator would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod booted;
pub mod node;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The testbed cache directory, by the project's rule.
pub fn testbed() -> PathBuf {
    if let Some(d) = std::env::var_os("CMX_KMS_TESTBED") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    cache.join("cmx-kms-testbed")
}

const INSTALL_HINT: &str = "run scripts/testbed/install-rpm-tools.sh (rpm, rpmlint, debootstrap root, zig, cargo-generate-rpm)";

/// The cached Debian 11 minbase root tarball (glibc 2.31: older than the
/// build machine's, so the installed server runs on an older glibc); fails
/// with the install script's name if missing.
pub fn debroot_tar() -> PathBuf {
    let t = testbed().join("rpm/debroot-minbase-bullseye.tar");
    assert!(t.is_file(), "{} is missing: {INSTALL_HINT}", t.display());
    t
}

/// Run a command, panicking with its output unless it exits 0.
pub fn must(c: &mut Command) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e} ({INSTALL_HINT})"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Everything the tests install, built once per test binary.
pub struct Artifacts {
    /// The extracted `cmx-kms-server-rpm.tar.gz`.
    pub tarball_dir: PathBuf,
    pub tarball: PathBuf,
    /// N: the package of the tarball (0.1.0-2).
    pub rpm_n: PathBuf,
    /// N-1: an earlier build (0.1.0-1) whose default kms.properties differs.
    pub rpm_prev: PathBuf,
    /// N+1: a broken build (0.1.0-3) whose server exits 70 at start.
    pub rpm_broken: PathBuf,
}

fn last_line(out: &Output) -> PathBuf {
    let s = String::from_utf8_lossy(&out.stdout);
    workspace().join(s.lines().last().expect("script printed a path").trim())
}

/// Build (once) the tarball and the N-1 and broken N+1 packages.
pub fn artifacts() -> &'static Artifacts {
    static A: OnceLock<Artifacts> = OnceLock::new();
    A.get_or_init(|| {
        let _ = debroot_tar();
        let ws = workspace();
        let tarball = last_line(&must(
            Command::new(ws.join("scripts/build-tarball")).args(["--build", "2"]),
        ));
        // Under target/ (replaced by each run): the static OnceLock is never
        // dropped, so a temporary directory would be left behind. Readable by
        // everyone: the not-root test runs ckms-install as nobody.
        let dir = ws.join("target/test-installer");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tarball_dir = dir.join("installer");
        std::fs::create_dir(&tarball_dir).unwrap();
        must(
            Command::new("tar")
                .arg("-C")
                .arg(&tarball_dir)
                .arg("-xzf")
                .arg(&tarball),
        );
        let rpm_n = std::fs::read_dir(&tarball_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "rpm"))
            .expect("the tarball holds an RPM");

        let out = ws.join("target/test-rpms");
        std::fs::create_dir_all(&out).unwrap();
        // N-1: same binaries, a default kms.properties that differs from N's.
        let conf_prev = dir.join("kms.properties.prev");
        let mut text = std::fs::read_to_string(ws.join("conf/kms.properties")).unwrap();
        text.push_str("\n# (default of the earlier build 0.1.0-1)\n");
        std::fs::write(&conf_prev, text).unwrap();
        let rpm_prev = last_line(&must(
            Command::new(ws.join("scripts/build-rpm"))
                .args(["--no-compile", "--build", "1", "--out"])
                .arg(&out)
                .arg("--conf")
                .arg(&conf_prev),
        ));
        // N+1: a server that passes check-config and exits non-zero at start.
        let broken = dir.join("cmx-kms-broken");
        std::fs::write(
            &broken,
            "#!/bin/sh\n# Deliberately broken cmx-kms for the rollback test.\n\
             case \"$1\" in\n  check-config) echo 'configuration OK'; exit 0 ;;\n\
             \x20 *) echo 'cmx-kms (broken build): cannot start' >&2; exit 70 ;;\nesac\n",
        )
        .unwrap();
        let rpm_broken = last_line(&must(
            Command::new(ws.join("scripts/build-rpm"))
                .args(["--no-compile", "--build", "3", "--out"])
                .arg(&out)
                .arg("--cmx-kms")
                .arg(&broken),
        ));
        Artifacts {
            tarball_dir,
            tarball,
            rpm_n,
            rpm_prev,
            rpm_broken,
        }
    })
}

/// A file tree snapshot: path → (mode, uid, gid, size, mtime). The rpm
/// database (queries touch its journal) and `skip` prefixes are left out.
pub fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<String, (u32, u32, u32, u64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("root/.rpmdb")
                || rel.starts_with("var/lib/rpm")
                || skip.iter().any(|s| rel.starts_with(s))
            {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            out.insert(rel, (m.mode(), m.uid(), m.gid(), m.size(), m.mtime()));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Assert two snapshots are equal, naming the differences.
pub fn assert_same(
    before: &BTreeMap<String, (u32, u32, u32, u64, i64)>,
    after: &BTreeMap<String, (u32, u32, u32, u64, i64)>,
    what: &str,
) {
    let mut diffs = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diffs.push(format!("removed {k}")),
            Some(w) if w != v => diffs.push(format!("changed {k}: {v:?} -> {w:?}")),
            _ => {}
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        diffs.push(format!("added {k}"));
    }
    assert!(
        diffs.is_empty(),
        "{what} changed the root:\n{}",
        diffs.join("\n")
    );
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Text of an output.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run a shell script of the extracted tarball (`CMX-KMS-Installer.sh`...)
/// with `args`, feeding `stdin`.
pub fn run_script(dir: &Path, script: &str, args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new("sh");
    c.arg(dir.join(script)).args(args);
    run_with_stdin(c, stdin)
}

/// Run a command feeding `stdin`; output captured.
pub fn run_with_stdin(mut c: Command, stdin: &str) -> Output {
    use std::io::Write as _;
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    child.wait_with_output().unwrap()
}
