//! `cmx-kms cache flush`: forget a customer key (or every key) on every node
//! of the cluster now, through the running node's control socket
//! (`crate::node::control`). Prints for people.

#![allow(clippy::print_stdout)] // The command's report is its output.

use std::path::Path;

use serde_json::{Value, json};

use super::{CommandError, Status, load_config};
use crate::node::control::{ask, socket_of};

/// Send `request` to the node that runs with `config`; its answer.
pub(super) fn ask_node(config: &Path, request: &Value) -> Result<Value, CommandError> {
    let config = load_config(config)?;
    let answer = ask(&socket_of(&config), request).map_err(CommandError::Unavailable)?;
    if let Some(e) = answer["error"].as_str() {
        return Err(CommandError::Usage(e.to_owned()));
    }
    Ok(answer)
}

/// `cmx-kms cache flush [--key-id ID]`: 0 when every member acknowledged,
/// 1 when some did not.
pub fn flush(config: &Path, key_id: Option<&str>) -> Result<(), CommandError> {
    let answer = ask_node(config, &json!({"op": "flush", "key_id": key_id}))?;
    println!(
        "flush generation {}: {}",
        answer["generation"],
        answer["scope"].as_str().unwrap_or("")
    );
    let mut all = true;
    for n in answer["nodes"].as_array().into_iter().flatten() {
        let name = n["node"].as_str().unwrap_or("?");
        if n["acked"] == true {
            let noun = if n["removed"].as_u64() == Some(1) {
                "entry"
            } else {
                "entries"
            };
            println!("  {name}: acknowledged ({} {noun} removed)", n["removed"]);
        } else {
            all = false;
            println!(
                "  {name}: NOT acknowledged ({})",
                n["why"].as_str().unwrap_or("?")
            );
        }
    }
    if all {
        return Ok(());
    }
    println!(
        "members that did not acknowledge keep their copy until its TTL ends; run the flush again when they are back"
    );
    Err(CommandError::Reported(Status::Incomplete))
}
