//! The operator's way into a running node: `cmx-kms cache flush` and
//! `cmx-kms cluster status` talk to it over a local Unix socket
//! (`kms.control.socket`, `/run/cmx-kms/control.sock`).
//!
//! Why a Unix socket and not the loopback metrics port: the metrics port is
//! plain HTTP that any local user (and, with `kms.metrics.address` widened,
//! any host) can reach, and a flush is an action (it costs HSM calls); the
//! socket adds no network surface at all, its file mode (0660, the service's
//! user and group `kms`) says who may use it, and the node checks the
//! caller's credentials again (root, or the service's user or group).
//!
//! One JSON request line, one JSON answer line. A flush empties this node's
//! cache, then asks every member, twice: a node may fetch the old key from
//! a member the first round has not reached yet, and the second round
//! removes that copy. Loads in flight during a flush are not cached
//! (generation, see `crate::cache`).

use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixListener;

use crate::http::App;

const MAX_REQUEST: u64 = 4096;

/// Bind the control socket; `None` (with a warning) when it cannot be made.
pub fn bind(path: &Path) -> Option<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            tracing::warn!(path = %path.display(), "kms.control.socket names a file that is not a socket; cache flush and cluster status cannot reach this node");
            return None;
        }
        // A socket another running node answers on stays its own: taking it
        // over would cut that node off from `cache flush` without a word.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            tracing::warn!(path = %path.display(), "another running node answers on kms.control.socket; give this node its own path: cache flush and cluster status cannot reach this node");
            return None;
        }
        let _ = std::fs::remove_file(path);
    }
    match UnixListener::bind(path) {
        Ok(l) => {
            if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)) {
                tracing::warn!(path = %path.display(), error = %e, "cannot set the control socket's mode to 0660");
                return None;
            }
            Some(l)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot create the control socket; cache flush and cluster status cannot reach this node: set kms.control.socket to a path in a folder this user can write, shorter than 108 bytes");
            None
        }
    }
}

/// Serve operator requests forever.
pub async fn serve(listener: UnixListener, app: Arc<App>) {
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let allowed = stream
            .peer_cred()
            .is_ok_and(|c| c.uid() == 0 || c.uid() == uid || c.gid() == gid);
        if !allowed {
            tracing::warn!(
                "control socket: a caller that is neither root nor the service's user or group; refused"
            );
            continue;
        }
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), one(stream, app)).await;
        });
    }
}

async fn one(stream: tokio::net::UnixStream, app: Arc<App>) {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut rd = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(rd, MAX_REQUEST));
    if rd.read_line(&mut line).await.is_err() {
        return;
    }
    let req: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    let answer = match req["op"].as_str() {
        Some("flush") => match parse_key_id(req["key_id"].as_str()) {
            Ok(key) => flush(&app, key).await,
            Err(e) => json!({"error": e}),
        },
        Some("status") => status(&app),
        _ => json!({"error": "unknown request: expected op flush or status"}),
    };
    let _ = wr.write_all(format!("{answer}\n").as_bytes()).await;
}

fn parse_key_id(text: Option<&str>) -> Result<Option<[u8; 16]>, String> {
    let Some(t) = text else { return Ok(None) };
    let bytes = hex_decode(t.trim()).ok_or("--key-id: not hexadecimal")?;
    let id: [u8; 16] = bytes
        .try_into()
        .map_err(|_| "--key-id: expected 32 hexadecimal digits (a customer key id)".to_string())?;
    Ok(Some(id))
}

fn hex_decode(t: &str) -> Option<Vec<u8>> {
    if !t.len().is_multiple_of(2) {
        return None;
    }
    (0..t.len())
        .step_by(2)
        .map(|i| t.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

async fn flush(app: &App, key: Option<[u8; 16]>) -> Value {
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let keys = app.keys.load_full();
    let mut removed = keys.cache().flush(key.as_ref());
    let scope = key.map_or("every customer key".to_owned(), |k| crate::hex::encode(&k));
    tracing::info!(generation, scope = %scope, "cache flush requested on the control socket");
    let mut nodes = Vec::new();
    let local = keys.cluster().map_or("this node".to_owned(), |c| {
        format!("{} (this node)", c.local_id())
    });
    if let Some(cluster) = keys.cluster() {
        let first = cluster.flush_peers(generation, key).await;
        // Second round: copies fetched from members the first one reached late.
        removed += keys.cache().flush(key.as_ref());
        let second = cluster.flush_peers(generation, key).await;
        for ((name, a), (_, b)) in first.into_iter().zip(second) {
            nodes.push(match (a, b) {
                (Ok(x), Ok(y)) => json!({"node": name, "acked": true, "removed": x + y}),
                (Err(why), _) | (_, Err(why)) => json!({"node": name, "acked": false, "why": why}),
            });
        }
    }
    nodes.insert(0, json!({"node": local, "acked": true, "removed": removed}));
    json!({"generation": generation, "scope": scope, "nodes": nodes})
}

fn status(app: &App) -> Value {
    let keys = app.keys.load_full();
    let entries = keys.cache().len();
    let Some(c) = keys.cluster() else {
        return json!({"cluster": "off (kms.cache.type=none)", "cache_entries": entries});
    };
    let members: Vec<Value> = c
        .members()
        .into_iter()
        .map(|(name, st)| json!({"node": name, "state": st.label(), "detail": st.describe()}))
        .collect();
    let split: Vec<Value> = c
        .owner_split()
        .into_iter()
        .map(|(n, share)| json!({"node": n, "share": share}))
        .collect();
    json!({
        "cluster": "on",
        "this_node": c.local_id(),
        "kmsserver": crate::tls::pinning::fingerprint_hex(&c.identity.fingerprint),
        "members": members,
        "owner_split": split,
        "cache_entries": entries,
    })
}

/// The CLI side: send `request` to the node of `config`; its answer.
pub fn ask(socket: &Path, request: &Value) -> Result<Value, String> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach the running node at {} ({e}): is cmx-kms running, and are you root or in group kms?",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("{request}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&line).map_err(|_| "the node's answer is not JSON".to_string())
}

/// The socket path of a configuration.
pub fn socket_of(config: &crate::config::Config) -> PathBuf {
    config.cache.control_socket.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_a_live_node_answers_on_is_not_taken_over_and_a_stale_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let first = bind(&path).expect("the first node binds");
        assert!(bind(&path).is_none(), "a second node took the live socket");
        // Still the first node's: a client reaches it.
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        assert!(first.accept().await.is_ok());
        // A stale socket (its node gone) is replaced.
        drop(first);
        assert!(bind(&path).is_some(), "a stale socket was not replaced");
    }
}
