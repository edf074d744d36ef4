//! [`ServiceManager`] without a service manager: start `cmx-kms serve` as a
//! detached process and take its `READY=1` notification as readiness.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::ServiceManager;
use crate::InstallError;
use crate::cmd;
use crate::paths::{self, Root};
use crate::safefs;

/// Longest path of a Unix socket (`sun_path`, with its terminating zero).
const SUN_PATH_MAX: usize = 107;

/// Starts and stops the service as a plain process (see the module doc of [`super`]).
#[derive(Debug)]
pub struct Direct {
    root: Root,
}

impl Direct {
    /// The direct-process manager for services under `root`.
    pub fn new(root: &Root) -> Self {
        Self { root: root.clone() }
    }

    /// The pid file of `unit`: `/run/UNIT.pid` under the root.
    pub fn pid_file(&self, unit: &str) -> PathBuf {
        self.root.path(&format!("{}/{unit}.pid", paths::RUN_DIR))
    }

    /// The running process of `unit`, from its pid file, if it is alive.
    pub fn running_pid(&self, unit: &str) -> Option<i32> {
        let text = fs::read_to_string(self.pid_file(unit)).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        if !alive(pid) {
            return None;
        }
        if unit == paths::SERVICE {
            // A pid file may outlive its process and the pid be reused.
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&cmdline).contains("cmx-kms") {
                return None;
            }
        }
        Some(pid)
    }

    fn start_cmx_kms(&self, timeout: Duration) -> Result<(), InstallError> {
        let (uid, gid) = service_ids(&self.root)?;
        self.runtime_dir(uid, gid)?;
        let (sock, guard) = self.notify_socket(uid, gid)?;
        let sock_path = &guard.0;

        let log_dir = self.root.path(paths::LOG_DIR);
        let out_path = log_dir.join("cmx-kms.out");
        // /var/log/kms belongs to the service user: never follow what it put there.
        let (out, warning) = safefs::open_append_in(&log_dir, "cmx-kms.out", &[0, uid])?;
        if let Some(w) = warning {
            eprintln!("{w}");
        }
        let err = out
            .try_clone()
            .map_err(InstallError::io("open", &out_path))?;
        // Read back through its own descriptor, never by name (the name may
        // be replaced by a link meanwhile).
        let reader = out
            .try_clone()
            .map_err(InstallError::io("open", &out_path))?;
        let start_len = out.metadata().map(|m| m.len()).unwrap_or(0);

        let notify_in_root = self.root.node_path(sock_path);
        let mut c = cmd::in_root(&self.root, Some((uid, gid)), paths::CMX_KMS);
        c.args(["serve", "-c", paths::PROPERTIES])
            .env("NOTIFY_SOCKET", &notify_in_root)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let mut child = c
            .spawn()
            .map_err(|e| InstallError::Service(format!("cannot start {}: {e}", paths::CMX_KMS)))?;

        wait_ready(&mut child, &sock, (&reader, start_len), timeout)?;
        let pid = i32::try_from(child.id()).unwrap_or(0);
        let pid_file = self.pid_file(paths::SERVICE);
        fs::write(&pid_file, format!("{pid}\n")).map_err(InstallError::io("write", &pid_file))?;
        // The child runs on, detached (own process group); it is not waited for.
        drop(child);
        Ok(())
    }

    /// `/run/cmx-kms`, `kms:kms 0750`, as the unit's `RuntimeDirectory=`
    /// makes it under systemd: the control socket (`cmx-kms cache flush`,
    /// `cluster status`) lives there. Anything else found at that name (a
    /// link, a file) is refused, not followed.
    fn runtime_dir(&self, uid: u32, gid: u32) -> Result<(), InstallError> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        let dir = self.root.path(paths::RUNTIME_DIR);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(InstallError::Service(format!(
                    "{} exists but is not a directory: remove it and run the installer again",
                    dir.display()
                )));
            }
            Err(_) => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(&dir)
                .map_err(InstallError::io("create", &dir))?,
        }
        nix::unistd::chown(&dir, Some(uid.into()), Some(gid.into()))
            .map_err(|e| InstallError::io("chown", &dir)(e.into()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750))
            .map_err(InstallError::io("set the mode of", &dir))
    }

    /// The socket cmx-kms sends `READY=1` to, in the run directory, which
    /// only the service user may send to; removed when the guard drops.
    fn notify_socket(
        &self,
        uid: u32,
        gid: u32,
    ) -> Result<(UnixDatagram, RemoveOnDrop), InstallError> {
        let run = self.root.path(paths::RUN_DIR);
        fs::create_dir_all(&run).map_err(InstallError::io("create", &run))?;
        let sock_path = run.join(format!("{}.notify", paths::SERVICE));
        if sock_path.as_os_str().len() > SUN_PATH_MAX {
            return Err(InstallError::Service(format!(
                "the notify socket path {} is too long for a Unix socket: use a shorter --root",
                sock_path.display()
            )));
        }
        let _ = fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path)
            .map_err(InstallError::io("bind the notify socket", &sock_path))?;
        let guard = RemoveOnDrop(sock_path.clone());
        // Only the service user may send to it.
        nix::unistd::chown(&sock_path, Some(uid.into()), Some(gid.into()))
            .map_err(|e| InstallError::io("chown", &sock_path)(e.into()))?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(InstallError::io("configure", &sock_path))?;
        Ok((sock, guard))
    }
}

/// Wait for `READY=1` on `sock` until `timeout`. If the child exits first,
/// or is not ready in time (then it is killed), the error quotes the last
/// lines of its `output` (the file and where this start's output begins).
fn wait_ready(
    child: &mut Child,
    sock: &UnixDatagram,
    output: (&fs::File, u64),
    timeout: Duration,
) -> Result<(), InstallError> {
    let (reader, start_len) = output;
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(InstallError::Service(format!(
                "cmx-kms exited during start ({status}) before it was ready; its last output:\n{}",
                cmd::indent(&tail(reader, start_len))
            )));
        }
        if Instant::now() >= deadline {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = child.wait();
            return Err(InstallError::Service(format!(
                "cmx-kms was not ready within {} s (no READY=1); it was stopped. Its last output:\n{}",
                timeout.as_secs(),
                cmd::indent(&tail(reader, start_len))
            )));
        }
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
            if msg.lines().any(|l| l == "READY=1") {
                return Ok(());
            }
        }
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The last lines of the open `file` written after `from`, for error messages.
fn tail(file: &fs::File, from: u64) -> String {
    use std::os::unix::fs::FileExt as _;
    let mut buf = vec![0u8; 64 * 1024];
    let n = file.read_at(&mut buf, from).unwrap_or(0);
    let s = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = s.lines().collect();
    lines
        .get(lines.len().saturating_sub(15)..)
        .unwrap_or_default()
        .join("\n")
}

/// Is `pid` a live process (zombies count as dead)?
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

/// uid and gid of the service user, from the root's `/etc/passwd`.
pub fn service_ids(root: &Root) -> Result<(u32, u32), InstallError> {
    let passwd = root.path("/etc/passwd");
    let text = fs::read_to_string(&passwd).map_err(InstallError::io("read", &passwd))?;
    text.lines()
        .find_map(|l| {
            let mut f = l.split(':');
            if f.next()? != paths::SERVICE_USER {
                return None;
            }
            let _pw = f.next()?;
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .ok_or_else(|| {
            InstallError::Service(format!(
                "the service user '{}' does not exist in {}: reinstall the package (its %pre scriptlet creates it)",
                paths::SERVICE_USER,
                passwd.display()
            ))
        })
}

impl ServiceManager for Direct {
    fn name(&self) -> &'static str {
        "direct process (no systemd)"
    }

    fn reload_units(&self) -> Result<(), InstallError> {
        Ok(())
    }

    fn is_enabled(&self, _unit: &str) -> Result<bool, InstallError> {
        Ok(true)
    }

    fn enable(&self, _unit: &str) -> Result<(), InstallError> {
        Ok(())
    }

    fn disable(&self, _unit: &str) -> Result<(), InstallError> {
        Ok(())
    }

    fn is_active(&self, unit: &str) -> Result<bool, InstallError> {
        Ok(self.running_pid(unit).is_some())
    }

    fn start(&self, unit: &str, timeout: Duration) -> Result<(), InstallError> {
        if self.running_pid(unit).is_some() {
            return Ok(());
        }
        if unit != paths::SERVICE {
            return Err(InstallError::Service(format!(
                "without systemd the installer can start only {}, not {unit}",
                paths::SERVICE
            )));
        }
        self.start_cmx_kms(timeout)
    }

    fn stop(&self, unit: &str) -> Result<(), InstallError> {
        let pid_file = self.pid_file(unit);
        let Some(pid) = self.running_pid(unit) else {
            let _ = fs::remove_file(&pid_file);
            return Ok(());
        };
        let p = Pid::from_raw(pid);
        let _ = kill(p, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(45);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive(pid) {
            let _ = kill(p, Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if alive(pid) {
            return Err(InstallError::Service(format!(
                "{unit} (pid {pid}) did not stop, even after SIGKILL"
            )));
        }
        fs::remove_file(&pid_file).map_err(InstallError::io("remove", &pid_file))
    }
}
