//! `cmx-kms cluster status`: the cluster as the running node sees it, through
//! its control socket. Prints for people.

#![allow(clippy::print_stdout)] // The command's report is its output.

use std::path::Path;

use serde_json::json;

use super::CommandError;
use super::cache::ask_node;

/// `cmx-kms cluster status`: members, reachable or not and why, the owner
/// split, and the kmsserver fingerprints.
pub fn status(config: &Path) -> Result<(), CommandError> {
    let a = ask_node(config, &json!({"op": "status"}))?;
    if a["cluster"] != "on" {
        println!(
            "cluster: {} ({} keys cached)",
            a["cluster"].as_str().unwrap_or("?"),
            a["cache_entries"]
        );
        return Ok(());
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
    Ok(())
}
