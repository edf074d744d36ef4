//! The operator commands that talk to the running node over the control
//! socket ([`super::control`]): `cmx-kms cache flush` and `cmx-kms cluster
//! status`. They print for people.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::control::{ask, socket_of};

/// `cmx-kms cache ...`.
#[derive(clap::Subcommand)]
pub enum CacheCommand {
    /// Forget a customer key (or every key) on every node of the cluster now.
    Flush {
        #[arg(short, long, default_value = crate::cli::DEFAULT_CONFIG)]
        config: PathBuf,
        /// The customer key's id (32 hex digits, as in the audit trail); all keys when absent.
        #[arg(long)]
        key_id: Option<String>,
    },
}

/// `cmx-kms cluster ...`.
#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Members, reachable or not and why, the owner split, and the kmsserver fingerprints.
    Status {
        #[arg(short, long, default_value = crate::cli::DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

fn ask_node(config: &Path, request: &Value) -> Result<Value, u8> {
    let config = crate::cli::load_config(config)?;
    let answer = ask(&socket_of(&config), request).map_err(|e| {
        eprintln!("{e}");
        crate::cli::exit::UNAVAILABLE
    })?;
    if let Some(e) = answer["error"].as_str() {
        eprintln!("{e}");
        return Err(crate::cli::exit::USAGE);
    }
    Ok(answer)
}

/// Run `cmx-kms cache flush`: 0 when every member acknowledged, 1 when some did not.
pub fn run_cache(cmd: CacheCommand) -> u8 {
    let CacheCommand::Flush { config, key_id } = cmd;
    let answer = match ask_node(&config, &json!({"op": "flush", "key_id": key_id})) {
        Ok(a) => a,
        Err(code) => return code,
    };
    println!(
        "flush generation {}: {}",
        answer["generation"],
        answer["scope"].as_str().unwrap_or("")
    );
    let mut all = true;
    for n in answer["nodes"].as_array().into_iter().flatten() {
        let name = n["node"].as_str().unwrap_or("?");
        if n["acked"] == true {
            println!("  {name}: acknowledged ({} entries removed)", n["removed"]);
        } else {
            all = false;
            println!(
                "  {name}: NOT acknowledged ({})",
                n["why"].as_str().unwrap_or("?")
            );
        }
    }
    if !all {
        println!(
            "members that did not acknowledge keep their copy until its TTL ends; run the flush again when they are back"
        );
    }
    u8::from(!all)
}

/// Run `cmx-kms cluster status`.
pub fn run_cluster(cmd: ClusterCommand) -> u8 {
    let ClusterCommand::Status { config } = cmd;
    let a = match ask_node(&config, &json!({"op": "status"})) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if a["cluster"] != "on" {
        println!(
            "cluster: {} ({} keys cached)",
            a["cluster"].as_str().unwrap_or("?"),
            a["cache_entries"]
        );
        return crate::cli::exit::OK;
    }
    println!(
        "this node: {}  kmsserver {}",
        a["this_node"].as_str().unwrap_or("?"),
        a["kmsserver"].as_str().unwrap_or("?")
    );
    println!("cached customer keys: {}", a["cache_entries"]);
    println!("members:");
    for m in a["members"].as_array().into_iter().flatten() {
        println!(
            "  {:<32} {}",
            m["node"].as_str().unwrap_or("?"),
            m["detail"].as_str().unwrap_or("?")
        );
    }
    println!("owner split (this node's view):");
    for o in a["owner_split"].as_array().into_iter().flatten() {
        println!(
            "  {:<32} {:.0}%",
            o["node"].as_str().unwrap_or("?"),
            o["share"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    crate::cli::exit::OK
}
