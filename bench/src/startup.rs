//! Start-up probe: spawn `cmx-kms serve` again and again and time how long
//! it takes until the port accepts connections and until it tells systemd
//! `READY=1` (through a `NOTIFY_SOCKET` we listen on), its idle resident
//! memory just after, and how long a SIGTERM takes to stop it.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::BenchError;
use crate::cpu;
use crate::stats::median;

/// How to start the server.
pub struct StartupSpec {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub addr: SocketAddr,
    pub runs: usize,
    /// Where to bind the notify socket (removed before each run).
    pub notify_socket: PathBuf,
    /// `CMX_KMS_LOG` for the server.
    pub log: String,
}

/// Medians over the runs, as written to the results file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StartupResult {
    pub kind: String,
    pub runs: usize,
    pub listen_ms: Vec<f64>,
    pub ready_ms: Vec<f64>,
    pub median_listen_ms: f64,
    pub median_ready_ms: f64,
    pub median_stop_ms: f64,
    pub median_rss_idle_kib: f64,
}

/// Kills the child if a run ends early.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const DEADLINE: Duration = Duration::from_secs(10);

struct Run {
    listen: Duration,
    ready: Duration,
    stop: Duration,
    rss_kib: u64,
}

fn one(spec: &StartupSpec) -> Result<Run, BenchError> {
    let _ = std::fs::remove_file(&spec.notify_socket);
    let io = |e: std::io::Error| BenchError::Io {
        path: spec.notify_socket.clone(),
        reason: e.to_string(),
    };
    let sock = UnixDatagram::bind(&spec.notify_socket).map_err(io)?;
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(io)?;
    let t0 = Instant::now();
    let child = Command::new(&spec.bin)
        .arg("serve")
        .arg("-c")
        .arg(&spec.config)
        .env("NOTIFY_SOCKET", &spec.notify_socket)
        .env("CMX_KMS_LOG", &spec.log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Io {
            path: spec.bin.clone(),
            reason: e.to_string(),
        })?;
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let mut guard = Guard(Some(child));
    let (listen, ready) = std::thread::scope(|s| {
        let ready = s.spawn(|| {
            let mut buf = [0u8; 4096];
            while t0.elapsed() < DEADLINE {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = buf.get(..n).unwrap_or_default();
                    if msg.split(|b| *b == b'\n').any(|l| l == b"READY=1") {
                        return Some(t0.elapsed());
                    }
                }
            }
            None
        });
        let mut listen = None;
        while t0.elapsed() < DEADLINE {
            if TcpStream::connect_timeout(&spec.addr, Duration::from_millis(50)).is_ok() {
                listen = Some(t0.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (listen, ready.join().ok().flatten())
    });
    let (Some(listen), Some(ready)) = (listen, ready) else {
        return Err(BenchError::Startup(format!(
            "the server did not listen and report READY=1 within {DEADLINE:?} (listen: {listen:?}, ready: {ready:?}); run it by hand to see why"
        )));
    };
    // Idle: a moment after start, nothing connected.
    std::thread::sleep(Duration::from_millis(300));
    let rss_kib = cpu::rss_kib(pid).unwrap_or(0);
    let t1 = Instant::now();
    kill(Pid::from_raw(pid), Signal::SIGTERM)
        .map_err(|e| BenchError::Startup(format!("cannot signal the server: {e}")))?;
    let stop = loop {
        if let Some(c) = guard.0.as_mut()
            && let Ok(Some(_)) = c.try_wait()
        {
            guard.0 = None;
            break t1.elapsed();
        }
        if t1.elapsed() > DEADLINE {
            return Err(BenchError::Startup(
                "the server did not stop within 10 s of SIGTERM".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = std::fs::remove_file(&spec.notify_socket);
    Ok(Run {
        listen,
        ready,
        stop,
        rss_kib,
    })
}

/// Start and stop the server `runs` times.
pub fn measure(spec: &StartupSpec) -> Result<StartupResult, BenchError> {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut runs = Vec::with_capacity(spec.runs);
    for _ in 0..spec.runs.max(1) {
        runs.push(one(spec)?);
    }
    let listen_ms: Vec<f64> = runs.iter().map(|r| ms(r.listen)).collect();
    let ready_ms: Vec<f64> = runs.iter().map(|r| ms(r.ready)).collect();
    let mut stop: Vec<f64> = runs.iter().map(|r| ms(r.stop)).collect();
    let mut rss: Vec<f64> = runs.iter().map(|r| r.rss_kib as f64).collect();
    Ok(StartupResult {
        kind: "startup".into(),
        runs: runs.len(),
        median_listen_ms: median(&mut listen_ms.clone()),
        median_ready_ms: median(&mut ready_ms.clone()),
        median_stop_ms: median(&mut stop),
        median_rss_idle_kib: median(&mut rss),
        listen_ms,
        ready_ms,
    })
}
