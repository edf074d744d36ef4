//! Scratch folders for fixtures kept in statics (one PKI or one node per test
//! binary, because keytool is slow). A static is never dropped, so a
//! `TempDir` kept in one would stay behind, test keys and all, after every
//! run. A folder from [`for_process`] is removed when the test process ends,
//! however it ends (a normal exit, a panic that aborts, a kill): a small
//! `sh` waits for the end of a pipe only this process holds open, then
//! removes the folder.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// The write ends of the cleaners' pipes: held until the process ends.
static HELD: Mutex<Vec<ChildStdin>> = Mutex::new(Vec::new());

/// A new temporary folder that lives as long as this test process.
// The cleaner is never waited for on purpose: it must outlive this process
// (it is alive, not a zombie, until then; init reaps it after).
#[allow(clippy::zombie_processes)]
pub fn for_process() -> PathBuf {
    let dir = tempfile::tempdir().expect("a temporary folder").keep();
    let mut cleaner = Command::new("sh")
        .args(["-c", "cat >/dev/null; rm -rf -- \"$1\"", "scratch-cleaner"])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sh starts");
    let pipe = cleaner.stdin.take().expect("a piped stdin");
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(pipe);
    dir
}
