//! One TLS connection to one HSM endpoint: connect with a deadline, send a
//! request, read one response with a size cap and a deadline.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zeroize::Zeroizing;

use super::messages::{self, MessageError, ProtocolVersion};
use super::response::{Response, parse_response};
use super::tags::RESPONSE_MESSAGE;
use super::tls::{self, TlsProblem};
use super::ttlv::{self, Item, TtlvError};

/// The TTLV type of a structure: every KMIP message is one.
const STRUCTURE: u8 = 0x01;

/// Why talking to an endpoint failed at the transport level.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error(
        "TLS handshake not completed within {0:?} (the port accepted the connection, but \
         nothing answered the handshake)"
    )]
    HandshakeTimeout(Duration),
    #[error(
        "not a KMIP response (it starts with {0}): is something other than the HSM listening \
         at this port?"
    )]
    NotKmip(String),
    #[error("{message}")]
    Tls {
        problem: TlsProblem,
        message: String,
    },
    #[error("connection broken: {0}")]
    Io(io::Error),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("response of {got} bytes exceeds the cap of {cap} bytes")]
    TooLarge { got: u64, cap: u32 },
    #[error("undecodable response: {0}")]
    Decode(#[from] TtlvError),
    #[error("unexpected response: {0}")]
    Message(#[from] MessageError),
    #[error("the host name {0:?} is neither a DNS name nor an IP address")]
    BadHost(String),
    #[error("{0}")]
    Unsupported(String),
}

impl ConnError {
    /// Whether an operator must fix configuration (retrying will not help).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Tls { .. } | Self::BadHost(_) | Self::Unsupported(_) | Self::NotKmip(_)
        )
    }
}

/// An established connection.
pub struct Connection {
    stream: TlsStream<TcpStream>,
    /// The version this connection speaks (pinned or negotiated).
    pub version: ProtocolVersion,
    pub created: Instant,
    pub last_used: Instant,
}

/// TCP connect plus TLS handshake, both within `timeout`.
pub async fn connect(
    host: &str,
    port: u16,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, ConnError> {
    let name =
        ServerName::try_from(host.to_owned()).map_err(|_| ConnError::BadHost(host.into()))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let tcp = tokio::time::timeout_at(deadline, TcpStream::connect((host, port)))
        .await
        .map_err(|_| ConnError::ConnectTimeout(timeout))?
        .map_err(ConnError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let handshake = TlsConnector::from(config).connect(name, tcp);
    tokio::time::timeout_at(deadline, handshake)
        .await
        .map_err(|_| ConnError::HandshakeTimeout(timeout))?
        .map_err(
            |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(tls_error) => {
                    let (problem, message) = tls::describe(tls_error);
                    ConnError::Tls { problem, message }
                }
                None => io_error(e),
            },
        )
}

/// An I/O error in plain words: rustls' "peer closed connection without
/// sending TLS close_notify" carries a documentation URL meant for
/// developers, which an operator's log does not need.
fn io_error(e: io::Error) -> ConnError {
    let text = e.to_string();
    match text.find(": https://") {
        Some(at) => ConnError::Io(io::Error::new(
            e.kind(),
            text.get(..at).unwrap_or("connection closed").to_owned(),
        )),
        None => ConnError::Io(e),
    }
}

impl Connection {
    /// Wraps a fresh stream that speaks `version`.
    pub fn new(stream: TlsStream<TcpStream>, version: ProtocolVersion) -> Self {
        let now = Instant::now();
        Self {
            stream,
            version,
            created: now,
            last_used: now,
        }
    }

    /// Sends one request and reads its response, all within `timeout`.
    ///
    /// On any error the connection must be dropped: its state is unknown.
    pub async fn exchange(
        &mut self,
        version: ProtocolVersion,
        operation: u32,
        payload: Item,
        max_bytes: u32,
        timeout: Duration,
    ) -> Result<Response, ConnError> {
        let request = messages::request_message(version, operation, payload).encode()?;
        let raw = tokio::time::timeout(timeout, self.round_trip(&request, max_bytes))
            .await
            .map_err(|_| ConnError::Timeout(timeout))??;
        self.last_used = Instant::now();
        let item = Item::decode(&raw)?;
        Ok(parse_response(&item, operation)?)
    }

    async fn round_trip(
        &mut self,
        request: &[u8],
        max_bytes: u32,
    ) -> Result<Zeroizing<Vec<u8>>, ConnError> {
        self.stream.write_all(request).await.map_err(io_error)?;
        self.stream.flush().await.map_err(io_error)?;
        read_message(&mut self.stream, max_bytes).await
    }

    /// Cheap liveness check of an idle connection: it must have nothing to
    /// read and must not be closed. Polls the read once and never waits.
    ///
    /// Not `timeout(Duration::ZERO, read)`: that arms a timer, and every
    /// pooled request waited for the timer wheel's next tick (1 ms) before
    /// it went out: about 1.5 ms per cold decrypt with the wake-ups around
    /// it (docs/design/performance.md, "The pool's liveness check").
    pub fn looks_alive(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        // A waker that does nothing: nobody waits on an idle connection, and
        // the next exchange polls it again with its own task's waker.
        let mut cx = Context::from_waker(Waker::noop());
        // Ready means data out of turn, the end of the stream, or an error.
        Pin::new(&mut self.stream)
            .poll_read(&mut cx, &mut buf)
            .is_pending()
    }
}

/// Reads one TTLV message: the 8-byte header, then the announced length.
async fn read_message(
    stream: &mut TlsStream<TcpStream>,
    max_bytes: u32,
) -> Result<Zeroizing<Vec<u8>>, ConnError> {
    let mut header = [0u8; ttlv::HEADER_LEN];
    stream.read_exact(&mut header).await.map_err(io_error)?;
    let (tag, item_type, len) =
        ttlv::read_header(&header).ok_or(TtlvError::Truncated { offset: 0 })?;
    if tag != RESPONSE_MESSAGE || item_type != STRUCTURE {
        let shown: Vec<String> = header.iter().map(|b| format!("{b:02X}")).collect();
        return Err(ConnError::NotKmip(shown.join(" ")));
    }
    let total = u64::from(len) + ttlv::HEADER_LEN as u64;
    if total > u64::from(max_bytes) {
        return Err(ConnError::TooLarge {
            got: total,
            cap: max_bytes,
        });
    }
    let body_len = usize::try_from(len).map_err(|_| ConnError::TooLarge {
        got: total,
        cap: max_bytes,
    })?;
    let mut buf = Zeroizing::new(vec![0u8; ttlv::HEADER_LEN + body_len]);
    if let Some(head) = buf.get_mut(..ttlv::HEADER_LEN) {
        head.copy_from_slice(&header);
    }
    if let Some(body) = buf.get_mut(ttlv::HEADER_LEN..) {
        stream.read_exact(body).await.map_err(io_error)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::kmip::settings::DEFAULT_MAX_RESPONSE_BYTES;
    use crate::backend::kmip::tags;
    use tokio::net::TcpListener;

    /// A throwaway server identity and a client that trusts it.
    fn configs() -> (Arc<rustls::ServerConfig>, Arc<ClientConfig>) {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = ck.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// A connection to a local TLS server, and the server's end of it.
    async fn pair() -> (Connection, tokio_rustls::server::TlsStream<TcpStream>) {
        let (server, client) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio_rustls::TlsAcceptor::from(server)
                .accept(tcp)
                .await
                .unwrap()
        });
        let stream = connect("127.0.0.1", port, client, Duration::from_secs(30))
            .await
            .unwrap();
        let conn = Connection::new(stream, ProtocolVersion::new(1, 4));
        (conn, accept.await.unwrap())
    }

    /// Polls `looks_alive` until it says `want`, letting the runtime read
    /// the socket in between; false if it never does within 30 s.
    async fn comes_to(conn: &mut Connection, want: bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while conn.looks_alive() != want {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    #[tokio::test]
    async fn a_silent_hsm_times_the_exchange_out_and_not_before_its_timeout() {
        let (mut conn, mut server) = pair().await;
        let timeout = Duration::from_millis(300);
        let payload = Item::structure(tags::REQUEST_PAYLOAD, vec![]);
        let version = ProtocolVersion::new(1, 4);
        let started = Instant::now();
        let result = conn
            .exchange(
                version,
                tags::operation::QUERY,
                payload,
                DEFAULT_MAX_RESPONSE_BYTES,
                timeout,
            )
            .await;
        assert!(
            matches!(result, Err(ConnError::Timeout(t)) if t == timeout),
            "{:?}",
            result.err()
        );
        assert!(started.elapsed() >= timeout, "gave up early");
        // The request did go out.
        let mut header = [0u8; ttlv::HEADER_LEN];
        server.read_exact(&mut header).await.unwrap();
        let (_, _, len) = ttlv::read_header(&header).unwrap();
        let mut body = vec![0u8; len as usize];
        server.read_exact(&mut body).await.unwrap();
    }

    #[tokio::test]
    async fn bytes_that_are_no_kmip_message_are_named_so_not_a_size() {
        let (mut conn, mut server) = pair().await;
        let answer = async move {
            let mut buf = [0u8; 256];
            let _ = server.read(&mut buf).await;
            server
                .write_all(b"\xe7\xed\x19\x1fHTTP/1.1 400 Bad Request\r\n\r\n")
                .await
                .unwrap();
            server.flush().await.unwrap();
            server
        };
        let payload = Item::structure(tags::REQUEST_PAYLOAD, vec![]);
        let (result, _server) = tokio::join!(
            conn.exchange(
                ProtocolVersion::new(1, 4),
                tags::operation::QUERY,
                payload,
                DEFAULT_MAX_RESPONSE_BYTES,
                Duration::from_secs(30),
            ),
            answer
        );
        let err = result.expect_err("garbage");
        assert!(matches!(err, ConnError::NotKmip(_)), "{err:?}");
        assert!(err.is_config(), "persistent: configuration class");
        assert!(err.to_string().starts_with("not a KMIP response"), "{err}");
        let url = io_error(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: \
             https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
        ));
        assert_eq!(
            url.to_string(),
            "connection broken: peer closed connection without sending TLS close_notify"
        );
    }

    #[tokio::test]
    async fn a_quiet_connection_looks_alive_a_closed_or_chatty_one_does_not() {
        let (mut conn, mut server) = pair().await;
        assert!(conn.looks_alive(), "fresh and quiet");
        // Still alive once the runtime has read whatever the server sent
        // after the handshake (TLS 1.3 session tickets are not data).
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(conn.looks_alive(), "quiet after the handshake's tail");

        // Closed by the server (an HSM restart, its idle timeout).
        server.shutdown().await.unwrap();
        drop(server);
        assert!(
            comes_to(&mut conn, false).await,
            "a closed connection still looks alive"
        );

        // Bytes nobody asked for: the stream is out of step.
        let (mut conn, mut server) = pair().await;
        server.write_all(b"unasked").await.unwrap();
        server.flush().await.unwrap();
        assert!(
            comes_to(&mut conn, false).await,
            "a connection with unasked data still looks alive"
        );
        drop(server);
    }
}
