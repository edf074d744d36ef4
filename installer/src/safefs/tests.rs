use super::*;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

fn secret(dir: &Path) -> (PathBuf, Vec<u8>) {
    let p = dir.join("shadow");
    std::fs::write(&p, "root:$6$x:1::::::\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let b = std::fs::read(&p).unwrap();
    (p, b)
}

#[test]
fn copies_are_private_and_links_stay_links() {
    let t = tempfile::tempdir().unwrap();
    let (target, bytes) = secret(t.path());
    let src = t.path().join("conf");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("kms.properties"), "k=v\n").unwrap();
    std::fs::set_permissions(
        src.join("kms.properties"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(src.join("sub/ca.pem"), "pem").unwrap();
    std::os::unix::fs::symlink(&target, src.join("link")).unwrap();
    std::os::unix::fs::symlink(t.path(), src.join("dirlink")).unwrap();
    nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
    let dst = t.path().join("backup");
    copy_tree(&src, &dst).unwrap();
    let m = |p: &str| std::fs::symlink_metadata(dst.join(p)).unwrap();
    for (p, mode) in [
        ("", 0o700),
        ("sub", 0o700),
        ("kms.properties", 0o600),
        ("sub/ca.pem", 0o600),
    ] {
        assert_eq!(
            (m(p).mode() & 0o7777, m(p).uid(), m(p).gid()),
            (mode, 0, 0),
            "{p}"
        );
    }
    assert_eq!(std::fs::read(dst.join("kms.properties")).unwrap(), b"k=v\n");
    assert!(m("link").file_type().is_symlink());
    assert!(m("dirlink").file_type().is_symlink());
    assert!(std::fs::symlink_metadata(dst.join("fifo")).is_err());
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
}

#[test]
fn append_refuses_fifos_and_hard_links() {
    let t = tempfile::tempdir().unwrap();
    let (target, bytes) = secret(t.path());
    let logs = t.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    // A FIFO would block an ordinary open for writing forever.
    nix::unistd::mkfifo(&logs.join("a.log"), Mode::from_bits_truncate(0o666)).unwrap();
    let (_, w) = open_append_in(&logs, "a.log", &[0]).unwrap();
    assert!(w.is_some());
    assert!(
        std::fs::symlink_metadata(logs.join("a.log"))
            .unwrap()
            .is_file()
    );
    // A second name for a root-only file.
    std::fs::hard_link(&target, logs.join("b.log")).unwrap();
    let (mut f, w) = open_append_in(&logs, "b.log", &[0]).unwrap();
    assert!(w.is_some());
    std::io::Write::write_all(&mut f, b"x\n").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    // A root file with one link is simply appended to.
    let (_, w) = open_append_in(&logs, "b.log", &[0]).unwrap();
    assert!(w.is_none());
}

#[test]
fn make_private_tightens_old_backups() {
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("conf-orig");
    std::fs::create_dir_all(b.join("sub")).unwrap();
    std::fs::write(b.join("sub/kms.properties"), "k=v").unwrap();
    std::fs::set_permissions(
        b.join("sub/kms.properties"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::os::unix::fs::chown(&b, Some(91), Some(91)).unwrap();
    make_private(&b).unwrap();
    for (p, mode) in [("", 0o700), ("sub", 0o700), ("sub/kms.properties", 0o600)] {
        let m = std::fs::symlink_metadata(b.join(p)).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (mode, 0, 0), "{p}");
    }
}
