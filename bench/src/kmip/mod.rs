//! `kmip`: the cold-cache comparison of issue 5 item 6. A decrypt through
//! cmx-kms with the customer-key cache off should cost no more than 1.1x the
//! latency of the same KMIP Decrypt sent by a long-lived direct client to the
//! same PyKMIP server.
//!
//! The direct client is the server's own [`KmipBackend`], long-lived in this
//! process: its pool keeps the TLS connection to PyKMIP open, so each
//! [`Backend::unwrap`] is one KMIP Decrypt request and answer on an open
//! connection, with no handshake. It unwraps the very blob cmx-kms unwraps
//! (the customer-key envelope of the benchmark's key chain: same master key,
//! IV, tag, associated data and ciphertext), so both send the same Decrypt.
//!
//! Series, run in rounds that rotate their order:
//! - `direct KMIP`: N Decrypts through the long-lived `KmipBackend`;
//! - `cmx-kms cold cache`: N decrypt-workspace-key requests over one
//!   keep-alive mutual-TLS connection to a node with `kms.cache.ttl=0`
//!   (one HSM Decrypt per request, checked in PyKMIP's log);
//! - `cmx-kms warm cache` (optional): the same against a node with the cache
//!   on, which never asks the HSM: the cost of the front alone;
//! - `direct KMIP through an nginx TLS proxy` (optional): the direct client's
//!   Decrypts through nginx's stream module, which ends the client's TLS and
//!   opens its own to PyKMIP: what the least a TLS-terminating hop adds on this
//!   machine, the floor under cmx-kms's added time.
//!
//! With `--concurrency C` every series runs once more with C workers, each
//! on its own key chain and keep-alive connection (on one shared customer key
//! cmx-kms's single flight would merge concurrent unwraps into one HSM Decrypt
//! even with the cache off), in rounds as well: C times fewer, each worker
//! sending per round what a sequential round sends.
//!
//! CPU time per request comes from `/proc/PID/task/*/schedstat` (nanoseconds,
//! every thread), as the 10 ms ticks of `/proc/PID/stat` are too coarse for
//! a thousand requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cmx_kms::backend::MasterWrap;
use cmx_kms::backend::kmip::KmipBackend;
use tokio::task::JoinSet;

use crate::BenchError;
use crate::http::{Connection, Target};
use crate::kmip_log::LogCounter;
use crate::kmip_report::{self, KmipResult, Phase};
use crate::kmip_worker::{Sched, Worker, run_direct, run_http, sched, shares};

mod setup;

/// Most concurrent workers (PyKMIP listens with a backlog of 5 and runs one
/// thread per connection; the node's KMIP pool holds 8 connections by default).
const MAX_WORKERS: usize = 16;

/// Most rounds: each round's median difference is one draw of the added
/// time, and the interval of their median is computed for at most 1 000.
const MAX_ROUNDS: usize = 1000;

/// Options of `cmx-kms-bench kmip`.
#[derive(clap::Args)]
pub struct KmipArgs {
    /// Folder of the guide's PKI: ca.crt, cmxBackend.*, cmxDevice.*, kmsClient.*, kmipSigningCA.crt.
    #[arg(long)]
    pki: PathBuf,
    /// Folder for decrypt-request.json (the key chain the series decrypt).
    #[arg(long)]
    work: PathBuf,
    /// The cmx-kms node with kms.cache.ttl=0.
    #[arg(long)]
    kms: SocketAddr,
    /// A second node with the cache on (the front without the HSM); optional.
    #[arg(long)]
    kms_warm: Option<SocketAddr>,
    /// cmx-kms process ids whose CPU time to sample (repeat).
    #[arg(long = "kms-pid")]
    kms_pids: Vec<i32>,
    /// The PyKMIP server.
    #[arg(long)]
    hsm: SocketAddr,
    /// PyKMIP process ids whose CPU time to sample (repeat).
    #[arg(long = "hsm-pid")]
    hsm_pids: Vec<i32>,
    /// A TLS-terminating proxy (nginx's stream module) in front of the same
    /// PyKMIP, presenting PyKMIP's certificate; optional.
    #[arg(long)]
    proxy: Option<SocketAddr>,
    /// The proxy's process ids whose CPU time to sample (repeat).
    #[arg(long = "proxy-pid")]
    proxy_pids: Vec<i32>,
    /// PyKMIP's log (logging_level INFO or DEBUG), to count its Decrypts.
    #[arg(long)]
    hsm_log: PathBuf,
    /// The master key's name (kms.hsm.key.name).
    #[arg(long, default_value = "cmx-kms-master")]
    key_name: String,
    /// Measured requests per series, spread over the rounds.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Unmeasured requests per series first.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Also run each series with this many concurrent workers (0 or 1: not).
    #[arg(long, default_value_t = 0)]
    concurrency: usize,
    /// Results file (JSON lines).
    #[arg(long)]
    out: PathBuf,
}

/// What a series sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Series {
    Direct,
    Cold,
    Warm,
    Proxy,
}

impl Series {
    fn label(self) -> &'static str {
        match self {
            Self::Direct => kmip_report::DIRECT,
            Self::Cold => kmip_report::COLD,
            Self::Warm => kmip_report::WARM,
            Self::Proxy => kmip_report::PROXY,
        }
    }
}

/// One key chain: what a worker sends.
struct Chain {
    /// The customer key's backend half and the associated data cmx-kms binds to it.
    wrapped: Arc<MasterWrap>,
    aad: Arc<Vec<u8>>,
    /// The decrypt-workspace-key request body.
    body: Bytes,
}

/// CPU times and PyKMIP's operation counts at one moment.
struct Snapshot {
    client: Sched,
    kms: Sched,
    proxy: Sched,
    hsm: Sched,
    decrypts: u64,
    encrypts: u64,
}

struct Bench {
    backend: Arc<KmipBackend>,
    /// The same client through the proxy, if there is one.
    proxied: Option<Arc<KmipBackend>>,
    /// At least one; worker i of a concurrent series uses chain i.
    chains: Vec<Chain>,
    cold: Target,
    warm: Option<Target>,
    /// The long-lived keep-alive connections of the node series, kept
    /// between rounds (one per worker).
    cold_conns: Vec<Connection>,
    warm_conns: Vec<Connection>,
    kms_pids: Vec<i32>,
    proxy_pids: Vec<i32>,
    hsm_pids: Vec<i32>,
    hsm_log: LogCounter,
}

impl Bench {
    fn target(&self, series: Series) -> Option<&Target> {
        match series {
            Series::Direct | Series::Proxy => None,
            Series::Cold => Some(&self.cold),
            Series::Warm => self.warm.as_ref(),
        }
    }

    fn snapshot(&mut self) -> Result<Snapshot, BenchError> {
        let logged = self.hsm_log.advance()?;
        Ok(Snapshot {
            client: sched(&[i32::try_from(std::process::id()).unwrap_or(0)]),
            kms: sched(&self.kms_pids),
            proxy: sched(&self.proxy_pids),
            hsm: sched(&self.hsm_pids),
            decrypts: logged.decrypts,
            encrypts: logged.encrypts,
        })
    }

    fn conns(&mut self, series: Series) -> Option<&mut Vec<Connection>> {
        match series {
            Series::Direct | Series::Proxy => None,
            Series::Cold => Some(&mut self.cold_conns),
            Series::Warm => Some(&mut self.warm_conns),
        }
    }

    /// `workers` long-lived connections of a node series, opened on first
    /// use; none for the direct series.
    async fn take_conns(
        &mut self,
        series: Series,
        workers: usize,
    ) -> Result<Vec<Connection>, BenchError> {
        let Some(target) = self.target(series).cloned() else {
            return Ok(Vec::new());
        };
        let mut conns = self.conns(series).map(std::mem::take).unwrap_or_default();
        while conns.len() < workers.max(1) {
            conns.push(Connection::open(&target).await?);
        }
        Ok(conns)
    }

    /// `n` requests of `series` by `workers` workers, each on its own
    /// long-lived connection (node series).
    async fn measure(
        &mut self,
        series: Series,
        n: usize,
        workers: usize,
    ) -> Result<Phase, BenchError> {
        let client = match series {
            Series::Direct => Some(Arc::clone(&self.backend)),
            Series::Proxy => self.proxied.clone(),
            Series::Cold | Series::Warm => None,
        };
        let mut conns = self.take_conns(series, workers).await?;
        let before = self.snapshot()?;
        let start = Instant::now();
        let mut set = JoinSet::new();
        for (i, share) in shares(n, workers).into_iter().enumerate() {
            let Some(chain) = self.chains.get(i % self.chains.len().max(1)) else {
                continue;
            };
            match &client {
                Some(b) => {
                    let (b, w, a) = (
                        Arc::clone(b),
                        Arc::clone(&chain.wrapped),
                        Arc::clone(&chain.aad),
                    );
                    set.spawn(async move { (run_direct(b, w, a, share).await, None) });
                }
                None => {
                    let (Some(conn), Some(t)) = (conns.pop(), self.target(series).cloned()) else {
                        continue;
                    };
                    let body = chain.body.clone();
                    set.spawn(async move {
                        let (w, c) = run_http(conn, t, body, share).await;
                        (w, Some(c))
                    });
                }
            }
        }
        let mut all = Worker::default();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((w, c)) => {
                    all.merge(w);
                    conns.extend(c);
                }
                Err(e) => all.error(format!("worker failed: {e}")),
            }
        }
        let wall = start.elapsed();
        let after = self.snapshot()?;
        if let Some(kept) = self.conns(series) {
            *kept = conns;
        }
        Ok(Phase {
            samples: all.samples,
            errors: all.errors,
            first_error: all.first_error,
            wall,
            client: after.client.since(before.client),
            kms: after.kms.since(before.kms),
            proxy: after.proxy.since(before.proxy),
            hsm: after.hsm.since(before.hsm),
            hsm_decrypts: after.decrypts.saturating_sub(before.decrypts),
            hsm_encrypts: after.encrypts.saturating_sub(before.encrypts),
        })
    }
}

/// `requests` of each series by `workers` workers, spread over `rounds`
/// rounds in which every series runs once, in an order that rotates: each
/// series meets the same drift of PyKMIP's pace.
async fn in_rounds(
    bench: &mut Bench,
    series: &[Series],
    requests: usize,
    rounds: usize,
    workers: usize,
) -> Result<Vec<KmipResult>, BenchError> {
    let rounds = rounds.clamp(1, MAX_ROUNDS);
    let per_round = shares(requests.max(rounds), rounds);
    let mut phases: Vec<Vec<Phase>> = series.iter().map(|_| Vec::new()).collect();
    for (r, n) in per_round.iter().enumerate() {
        for i in 0..series.len() {
            let k = (i + r) % series.len();
            if let (Some(s), Some(out)) = (series.get(k), phases.get_mut(k)) {
                out.push(bench.measure(*s, *n, workers).await?);
            }
        }
    }
    Ok(series
        .iter()
        .zip(phases)
        .map(|(s, p)| KmipResult::from_phases(s.label(), workers, &p))
        .collect())
}

/// Runs the comparison and appends one result per series (and concurrency).
pub async fn run(a: KmipArgs) -> Result<Vec<KmipResult>, BenchError> {
    let mut bench = setup::setup(&a).await?;
    let mut series = vec![Series::Direct, Series::Cold];
    if bench.warm.is_some() {
        series.push(Series::Warm);
    }
    if bench.proxied.is_some() {
        series.push(Series::Proxy);
    }
    for s in &series {
        let w = bench.measure(*s, a.warmup, 1).await?;
        if let Some(e) = w.first_error {
            return Err(BenchError::Request(format!("{} warm-up: {e}", s.label())));
        }
    }
    let mut results = in_rounds(&mut bench, &series, a.requests, a.rounds, 1).await?;
    if a.concurrency > 1 {
        let c = a.concurrency.min(MAX_WORKERS);
        for s in &series {
            // Unmeasured first: both KMIP pools grow to C connections here.
            bench.measure(*s, a.warmup.max(c * 5), c).await?;
        }
        // A round's share of each worker what a sequential round sends (C
        // times as many requests per round, C times fewer rounds).
        let rounds = (a.rounds / c).max(1);
        results.extend(in_rounds(&mut bench, &series, a.requests, rounds, c).await?);
    }
    for r in &results {
        crate::results::append(&a.out, r)?;
    }
    Ok(results)
}
