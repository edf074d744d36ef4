//! Opening a connection to one endpoint: connect, TLS, version
//! negotiation; the Query `hsm check` and the background trial of a suspect
//! endpoint send on a fresh connection.

use std::sync::Arc;

use rustls::ClientConfig;

use super::conn::{self, ConnError, Connection};
use super::endpoint::Endpoint;
use super::messages::{self, ProtocolVersion};
use super::pool::{DISCOVERY_HEADER_VERSION, OUR_VERSIONS};
use super::response;
use super::settings::KmipSettings;
use super::tags::{self, operation as op};
use crate::sync::lock;

/// Connects and settles the protocol version of the new connection.
pub(super) async fn open(
    ep: &Endpoint,
    tls: &Arc<ClientConfig>,
    s: &KmipSettings,
) -> Result<Connection, ConnError> {
    let stream = conn::connect(&ep.host, ep.port, Arc::clone(tls), s.connect_timeout).await?;
    if let Some((major, minor)) = s.version {
        let version = ProtocolVersion::new(major, minor);
        lock(&ep.health).version = Some(version);
        return Ok(Connection::new(stream, version));
    }
    let mut conn = Connection::new(stream, DISCOVERY_HEADER_VERSION);
    let resp = conn
        .exchange(
            DISCOVERY_HEADER_VERSION,
            op::DISCOVER_VERSIONS,
            messages::discover_versions(&OUR_VERSIONS),
            s.max_response_bytes,
            s.request_timeout,
        )
        .await?;
    let offered = match resp.result {
        Ok(payload) => response::discover_versions(payload.as_ref())?,
        Err(f) => {
            return Err(ConnError::Unsupported(format!(
                "the HSM does not answer Discover Versions ({f}): pin the KMIP version \
                 (1.2, 1.3 or 1.4) in the configuration"
            )));
        }
    };
    let Some(version) = offered.into_iter().find(|v| OUR_VERSIONS.contains(v)) else {
        return Err(ConnError::Unsupported(
            "the HSM speaks none of KMIP 1.2, 1.3 and 1.4 (Encrypt and Decrypt need 1.2 or later)"
                .into(),
        ));
    };
    conn.version = version;
    lock(&ep.health).version = Some(version);
    Ok(conn)
}

/// A fresh connection, negotiated, and one Query: the negotiated version and
/// the vendor identification.
pub(super) async fn check(
    ep: &Endpoint,
    tls: &Arc<ClientConfig>,
    s: &KmipSettings,
) -> Result<(ProtocolVersion, Option<String>), ConnError> {
    let mut conn = open(ep, tls, s).await?;
    let resp = conn
        .exchange(
            conn.version,
            op::QUERY,
            messages::query(&[tags::QUERY_OPERATIONS, tags::QUERY_SERVER_INFORMATION]),
            s.max_response_bytes,
            s.request_timeout,
        )
        .await?;
    let vendor = match resp.result {
        Ok(payload) => response::query(payload.as_ref())?.vendor,
        Err(_) => None,
    };
    Ok((conn.version, vendor))
}

/// Tries a suspect endpoint in the background (a connection and a Query,
/// bounded by the timeouts) and records the outcome: a success puts it back
/// in its configured place for the next calls. No request waits for it.
pub(super) fn spawn_trial(ep: Arc<Endpoint>, tls: Arc<ClientConfig>, settings: &KmipSettings) {
    let settings = settings.clone();
    tokio::spawn(async move {
        match check(&ep, &tls, &settings).await {
            Ok(_) => {
                tracing::info!(endpoint = %ep.label, "KMIP endpoint answers again");
                ep.record_success();
            }
            Err(e) => {
                tracing::debug!(endpoint = %ep.label, error = %e, "KMIP endpoint still failing");
                ep.record_failure(&e, &settings);
            }
        }
    });
}
