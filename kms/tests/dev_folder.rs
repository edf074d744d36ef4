//! `cmx-kms dev` in a folder that is not its own (one of the security
//! review's "lows", end to end through the real binary): it leaves an
//! operator's files in an existing folder alone, and refuses a folder
//! holding files it did not make.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::KillOnDrop;

/// Run `cmx-kms dev --dir DIR` until it listens (then stop it) or exits:
/// `None` when it served, else its exit code and output.
fn run_dev(dir: &Path) -> Option<(Option<i32>, String)> {
    // A reused folder keeps the port of its first run.
    let port = std::fs::read_to_string(dir.join("kms.properties"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("kms.server.port=")?.parse().ok())
        })
        .unwrap_or_else(support::node::free_port);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_cmx-kms"))
            .args(["dev", "--dir"])
            .arg(dir)
            .args(["--port", &port.to_string()])
            // No metrics listener: its fixed default port may be taken on this host.
            .env("CMX_KMS_METRICS_PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break Some((status.code(), std::fs::read_to_string(log.path()).unwrap()));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break None;
        }
        assert!(Instant::now() < deadline, "dev neither served nor exited");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (mode, content) of every entry of `dir`, by name.
fn snapshot(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let content = if meta.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.permissions().mode() & 0o7777,
                content,
            )
        })
        .collect();
    out.sort();
    out
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn dev_in_an_existing_folder_leaves_the_operators_files_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("notes.txt"), "the operator's notes\n").unwrap();
    std::fs::set_permissions(
        dir.join("notes.txt"),
        std::fs::Permissions::from_mode(0o664),
    )
    .unwrap();
    std::fs::create_dir(dir.join("src")).unwrap();
    std::fs::set_permissions(dir.join("src"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let operators = snapshot(&dir);

    assert_eq!(run_dev(&dir), None, "dev serves from an existing folder");
    assert_eq!(mode_of(&dir), 0o755, "the folder's mode is the operator's");
    let after = snapshot(&dir);
    for entry in &operators {
        assert!(after.contains(entry), "{} changed", entry.0);
    }
    let made: Vec<_> = after.iter().filter(|e| !operators.contains(e)).collect();
    assert!(made.iter().any(|e| e.0 == "kms.properties"), "{made:?}");
    for (name, mode, _) in &made {
        assert_eq!(
            mode & 0o077 & !0o040,
            0,
            "{name} is private (mode {mode:o})"
        );
    }

    // The control socket is made mode 0660 (the service's group may use
    // it): dev keeps it in a folder only its owner can enter (where it is
    // bound: cli::a_dev_node_keeps_its_control_socket_in_its_folder).
    assert_eq!(mode_of(&dir.join("run")), 0o700);

    // A second run reuses what dev made, and still touches nothing else;
    // the socket's folder, opened up in between, is made private again.
    std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(run_dev(&dir), None, "dev reuses its own folder");
    assert_eq!(mode_of(&dir.join("run")), 0o700);
    let again = snapshot(&dir);
    for entry in &operators {
        assert!(again.contains(entry), "{} changed", entry.0);
    }
    let props = |s: &[(String, u32, Vec<u8>)]| {
        s.iter()
            .find(|e| e.0 == "kms.properties")
            .map(|e| e.2.clone())
    };
    assert_eq!(props(&again), props(&after), "the same dev configuration");
    assert_eq!(mode_of(&dir), 0o755);
    // dev makes the soft master key (serve never does) and keeps it.
    let key = |s: &[(String, u32, Vec<u8>)]| {
        s.iter()
            .find(|e| e.0 == "soft-master.key")
            .map(|e| e.2.clone())
    };
    assert!(key(&after).is_some_and(|k| !k.is_empty()), "{made:?}");
    assert_eq!(key(&again), key(&after), "the same master key");
    // A folder of an older dev, whose serve made the key, gets one from dev.
    std::fs::remove_file(dir.join("soft-master.key")).unwrap();
    assert_eq!(run_dev(&dir), None, "dev makes a missing key again");
    assert!(dir.join("soft-master.key").is_file());

    // A folder dev made itself is private.
    let fresh = tmp.path().join("fresh");
    assert_eq!(run_dev(&fresh), None);
    assert_eq!(mode_of(&fresh), 0o700);
}

#[test]
fn dev_refuses_a_folder_holding_files_it_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, content) in [
        ("ca.crt", "the operator's CA\n"),
        (
            "kms.properties",
            "kms.keystore.password=production-secret\n",
        ),
        ("audit.log", "{\"seq\":1}\n"),
    ] {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join(name), content).unwrap();
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
        let before = snapshot(&dir);
        let (code, text) = run_dev(&dir).expect("dev must not serve here");
        assert_ne!(code, Some(0), "{text}");
        assert!(
            text.contains(&dir.join(name).display().to_string())
                && text.contains("not made by `cmx-kms dev`"),
            "{text}"
        );
        assert!(!text.contains("production-secret"), "{text}");
        assert_eq!(
            snapshot(&dir),
            before,
            "{name}: nothing written, nothing changed"
        );
        assert_eq!(mode_of(&dir), 0o755);
    }
}
