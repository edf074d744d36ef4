//! The booted root never outlives its test: a test that panics with a
//! container running still halts and removes it.

use std::sync::{Arc, Mutex};

use crate::support::booted::BootedRoot;

#[test]
fn a_panicking_test_leaves_no_container_behind() {
    let seen: Arc<Mutex<Option<(i32, std::path::PathBuf)>>> = Arc::default();
    let result = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let b = BootedRoot::boot(&[]);
            assert_eq!(b.must("cat /proc/1/comm").trim(), "systemd");
            *seen.lock().unwrap() = Some((b.init_pid(), b.work_dir().to_owned()));
            panic!("a test failing with its container up");
        })
        .join()
    };
    assert!(result.is_err(), "the thread panicked");
    let (init, work) = seen.lock().unwrap().clone().expect("it booted");
    // The container's PID 1 is gone (not even a zombie left by us), and so
    // are the tmpfs and the directory of its root.
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap_or_default();
    assert!(
        !status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "the container's PID 1 ({init}) still runs:\n{status}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&work.to_string_lossy().into_owned()),
        "its root is still mounted:\n{mounts}"
    );
    assert!(!work.exists(), "{} is left", work.display());
}
