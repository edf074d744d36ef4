//! The workers of `kmip` (requests one after another, timed one by one) and
//! the CPU counters it reads around each measured stretch.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cmx_kms::backend::kmip::KmipBackend;
use cmx_kms::backend::{Backend, MasterWrap};

use crate::http::{Connection, Target};

/// Requests of one worker.
#[derive(Default)]
pub struct Worker {
    pub samples: Vec<u32>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Worker {
    fn sample(&mut self, since: Instant) {
        self.samples
            .push(u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX));
    }

    pub fn error(&mut self, e: impl ToString) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    pub fn merge(&mut self, other: Worker) {
        self.samples.extend(other.samples);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// What the scheduler has counted for every thread of some processes:
/// `/proc/PID/task/*/schedstat` (threads that ended are not counted: measured
/// stretches keep their threads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sched {
    /// Time on a CPU, nanoseconds.
    pub run_ns: u64,
    /// Time runnable but waiting for a CPU, nanoseconds.
    pub wait_ns: u64,
    /// Times a thread was put on a CPU (each wake-up, and each return after
    /// being preempted).
    pub slices: u64,
}

impl Sched {
    /// What was counted between `before` and `self`.
    pub fn since(self, before: Self) -> Self {
        Self {
            run_ns: self.run_ns.saturating_sub(before.run_ns),
            wait_ns: self.wait_ns.saturating_sub(before.wait_ns),
            slices: self.slices.saturating_sub(before.slices),
        }
    }
}

/// The scheduler's counts summed over every thread of `pids`.
pub fn sched(pids: &[i32]) -> Sched {
    let mut sum = Sched::default();
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let mut fields = text
                .split_whitespace()
                .map(|t| t.parse::<u64>().unwrap_or(0));
            sum.run_ns += fields.next().unwrap_or(0);
            sum.wait_ns += fields.next().unwrap_or(0);
            sum.slices += fields.next().unwrap_or(0);
        }
    }
    sum
}

pub async fn run_direct(
    backend: Arc<KmipBackend>,
    wrapped: Arc<MasterWrap>,
    aad: Arc<Vec<u8>>,
    n: usize,
) -> Worker {
    let mut w = Worker::default();
    for _ in 0..n {
        let t = Instant::now();
        match backend.unwrap(&wrapped, &aad).await {
            Ok(key) if key.len() == 32 => w.sample(t),
            Ok(key) => w.error(format!("unwrap gave {} bytes, not 32", key.len())),
            Err(e) => w.error(e),
        }
    }
    w
}

/// `n` decrypt requests one after another on `conn` (reopened after an error).
pub async fn run_http(
    mut conn: Connection,
    target: Target,
    body: Bytes,
    n: usize,
) -> (Worker, Connection) {
    let mut w = Worker::default();
    for _ in 0..n {
        let t = Instant::now();
        match conn.post("/v1/workspace-keys/decrypt", body.clone()).await {
            Ok(r) if r.status == 200 => w.sample(t),
            Ok(r) => w.error(format!(
                "status {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Err(e) => {
                w.error(e);
                match Connection::open(&target).await {
                    Ok(c) => conn = c,
                    Err(e) => {
                        w.error(e);
                        break;
                    }
                }
            }
        }
    }
    (w, conn)
}

/// `n` spread over `workers` as evenly as possible.
pub fn shares(n: usize, workers: usize) -> Vec<usize> {
    let workers = workers.max(1);
    (0..workers)
        .map(|i| n / workers + usize::from(i < n % workers))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(shares(5, 0), vec![5]);
        assert_eq!(shares(1000, 5).iter().sum::<usize>(), 1000);
    }

    #[test]
    fn reads_own_threads() {
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        let s = sched(&[me]);
        assert!(s.run_ns > 0, "this test process has used some CPU");
        assert!(s.slices > 0, "and has been put on a CPU");
        assert_eq!(sched(&[-5]), Sched::default());
    }
}
