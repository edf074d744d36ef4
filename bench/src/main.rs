//! `cmx-kms-bench`: the load generator and probes behind `scripts/bench`.
//!
//! Subcommands append one JSON object per line to a results file; `report`
//! reads it back and prints the comparison against the targets (one report
//! for every script: each part prints when the file holds its kinds).

// A command-line tool: its output is its report.
#![allow(clippy::print_stdout)]

mod chain;
mod cluster_report;
mod cpu;
mod handshake;
mod hop;
mod http;
mod kmip;
mod kmip_added;
mod kmip_log;
mod kmip_report;
mod kmip_worker;
mod load;
mod report;
mod results;
mod startup;
mod stats;
mod tls;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use rustls_pki_types::ServerName;

use crate::http::Target;
use crate::results::append;
use crate::tls::ClientFiles;

/// Why a benchmark step failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path}: not usable PEM: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("TLS client setup: {0}")]
    Tls(String),
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("start-up probe: {0}")]
    Startup(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
}

impl BenchError {
    /// For `map_err`: an I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |e| Self::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        }
    }

    /// For `map_err`: `path` is not usable PEM.
    pub fn pem(path: &Path) -> impl FnOnce(rustls_pki_types::pem::Error) -> Self + '_ {
        move |e| Self::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        }
    }
}

#[derive(Parser)]
#[command(
    name = "cmx-kms-bench",
    about = "Load generator and probes for scripts/bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a key chain on a running dev node; write decrypt-request.json and decrypt-response.json.
    Chain {
        /// The `cmx-kms dev` folder (ca.crt, cmxBackend.*, cmxDevice.*).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        addr: SocketAddr,
        /// Folder for the two JSON files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create N key chains (backend identity), each with its own customer
    /// key; write their decrypt requests to --out, one a line.
    Chains {
        /// The `cmx-kms dev` folder (ca.crt, cmxBackend.*).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Keep N mutual-TLS connections busy with the same POST; append the result.
    Load(load::LoadArgs),
    /// Open N keep-alive connections (one request on each), then append the
    /// servers' summed resident memory while they sit idle.
    Idle {
        #[arg(long)]
        label: String,
        #[arg(long)]
        addr: SocketAddr,
        #[command(flatten)]
        client: ClientFiles,
        #[arg(long, default_value = "/v1/workspace-keys/decrypt")]
        path: String,
        #[arg(long)]
        body: PathBuf,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Connections being opened at once.
        #[arg(long, default_value_t = 16)]
        parallel: usize,
        #[arg(long = "server-pid", required = true)]
        server_pids: Vec<i32>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Start and stop `cmx-kms serve` several times; append start/stop times and idle memory.
    Startup {
        #[arg(long)]
        bin: PathBuf,
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 10)]
        runs: usize,
        #[arg(long)]
        notify_socket: PathBuf,
        #[arg(long, default_value = "warn")]
        log: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Append the summed resident memory of some processes.
    Rss {
        #[arg(long)]
        label: String,
        #[arg(long)]
        when: String,
        #[arg(long = "pid", required = true)]
        pids: Vec<i32>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Wait until a TCP port accepts connections (at most --timeout-s).
    Wait {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 20.0)]
        timeout_s: f64,
    },
    /// Cold-cache decrypt through cmx-kms against the same KMIP Decrypt sent directly to PyKMIP.
    Kmip(kmip::KmipArgs),
    /// Cold customer keys in a cluster: through their owner against through a non-owner.
    Hop(hop::HopArgs),
    /// Print the comparison from a results file.
    Report {
        results: PathBuf,
        #[arg(long, default_value = "nginx")]
        baseline: String,
        #[arg(long, default_value = "cmx-kms")]
        subject: String,
    },
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| BenchError::Runtime(e.to_string()))
}

fn target(addr: SocketAddr, files: &ClientFiles) -> Result<Target, BenchError> {
    Ok(Target {
        addr,
        server_name: ServerName::IpAddress(addr.ip().into()),
        tls: tls::client_config(files)?,
    })
}

fn read_body(path: &Path) -> Result<Vec<u8>, BenchError> {
    std::fs::read(path).map_err(BenchError::io(path))
}

fn run(cli: Cli) -> Result<(), BenchError> {
    match cli.command {
        Command::Chain { dir, addr, out } => {
            let files = |name: &str| ClientFiles {
                ca: dir.join("ca.crt"),
                cert: dir.join(format!("{name}.crt")),
                key: dir.join(format!("{name}.key")),
            };
            let backend = target(addr, &files("cmxBackend"))?;
            let device = target(addr, &files("cmxDevice"))?;
            let p = runtime(1)?.block_on(chain::prepare(&backend, &device, &out))?;
            println!(
                "key chain created; decrypt request {} bytes, answer {} bytes",
                p.request_bytes, p.response_bytes
            );
        }
        Command::Chains {
            dir,
            addr,
            count,
            out,
        } => {
            let backend = target(
                addr,
                &ClientFiles {
                    ca: dir.join("ca.crt"),
                    cert: dir.join("cmxBackend.crt"),
                    key: dir.join("cmxBackend.key"),
                },
            )?;
            runtime(1)?.block_on(chain::many(&backend, count, &out))?;
            println!("{count} key chains created: {}", out.display());
        }
        Command::Load(args) => {
            let (threads, handshakes, out) = (args.threads, args.handshakes, args.out.clone());
            let spec = args.spec()?;
            let r = if handshakes {
                runtime(threads)?.block_on(handshake::run(spec))
            } else {
                runtime(threads)?.block_on(load::run(spec))
            };
            println!("{}", load::line(&r));
            append(&out, &r)?;
        }
        Command::Idle {
            label,
            addr,
            client,
            path,
            body,
            connections,
            parallel,
            server_pids,
            out,
        } => {
            let t = target(addr, &client)?;
            let data = Bytes::from(read_body(&body)?);
            let i = runtime(1)?.block_on(handshake::idle(
                &t,
                &path,
                data,
                connections,
                parallel,
                Duration::from_secs(2),
                &server_pids,
            ));
            println!(
                "{label} resident memory with {} idle keep-alive connections: {:.1} MiB ({} failed{})",
                i.opened,
                i.kib as f64 / 1024.0,
                i.failed,
                i.first_error
                    .as_deref()
                    .map(|e| format!("; first error: {e}"))
                    .unwrap_or_default()
            );
            append(
                &out,
                &report::RssResult {
                    kind: "rss".into(),
                    label,
                    when: format!("with {} idle keep-alive connections", i.opened),
                    kib: i.kib,
                    idle_connections: Some(i.opened),
                    asked_connections: Some(connections),
                },
            )?;
        }
        Command::Startup {
            bin,
            config,
            addr,
            runs,
            notify_socket,
            log,
            out,
        } => {
            let r = startup::measure(&startup::StartupSpec {
                bin,
                config,
                addr,
                runs: runs.clamp(1, 100),
                notify_socket,
                log,
            })?;
            println!(
                "start to listening: median {:.1} ms; to READY=1: median {:.1} ms; SIGTERM to exit: {:.1} ms; idle RSS {:.1} MiB ({} runs)",
                r.median_listen_ms,
                r.median_ready_ms,
                r.median_stop_ms,
                r.median_rss_idle_kib / 1024.0,
                r.runs
            );
            append(&out, &r)?;
        }
        Command::Rss {
            label,
            when,
            pids,
            out,
        } => {
            let kib = pids.iter().filter_map(|p| cpu::rss_kib(*p)).sum();
            println!(
                "{label} resident memory {when}: {:.1} MiB",
                kib as f64 / 1024.0
            );
            append(
                &out,
                &report::RssResult {
                    kind: "rss".into(),
                    label,
                    when,
                    kib,
                    idle_connections: None,
                    asked_connections: None,
                },
            )?;
        }
        Command::Wait { addr, timeout_s } => {
            let deadline = Instant::now() + Duration::from_secs_f64(timeout_s.clamp(0.1, 600.0));
            while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
                if Instant::now() > deadline {
                    return Err(BenchError::Connect(
                        addr,
                        format!("nothing listening after {timeout_s} s"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Command::Kmip(args) => {
            for r in runtime(1)?.block_on(kmip::run(args))? {
                println!(
                    "{:<20} workers {:>2}  {:>5} requests  p50 {:>6} µs  p90 {:>6} µs  p99 {:>6} µs  errors {}",
                    r.label, r.concurrency, r.requests, r.p50_us, r.p90_us, r.p99_us, r.errors
                );
            }
        }
        Command::Hop(args) => {
            let out = args.out.clone();
            let (series, check) = runtime(1)?.block_on(hop::run(args))?;
            for r in &series {
                println!(
                    "{:<48} {:>5} requests  p50 {:>6} µs  p90 {:>6} µs  p99 {:>6} µs  errors {}",
                    r.label, r.requests, r.p50_us, r.p90_us, r.p99_us, r.errors
                );
                append(&out, r)?;
            }
            append(&out, &check)?;
        }
        Command::Report {
            results,
            baseline,
            subject,
        } => print!("{}", results::render(&results, &baseline, &subject)?),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cmx-kms-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
