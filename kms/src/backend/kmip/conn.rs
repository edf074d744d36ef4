//! One TLS connection to one HSM endpoint: connect with a deadline, send a
//! request, read one response with a size cap and a deadline.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zeroize::Zeroizing;

use super::messages::{self, MessageError, ProtocolVersion};
use super::response::{Response, parse_response};
use super::tls::{self, TlsProblem};
use super::ttlv::{self, Item, TtlvError};

/// Why talking to an endpoint failed at the transport level.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
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
            Self::Tls { .. } | Self::BadHost(_) | Self::Unsupported(_)
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
    let attempt = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(ConnError::Connect)?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(
                |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(tls_error) => {
                        let (problem, message) = tls::describe(tls_error);
                        ConnError::Tls { problem, message }
                    }
                    None => ConnError::Io(e),
                },
            )
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnError::ConnectTimeout(timeout))?
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
        self.stream
            .write_all(request)
            .await
            .map_err(ConnError::Io)?;
        self.stream.flush().await.map_err(ConnError::Io)?;
        read_message(&mut self.stream, max_bytes).await
    }

    /// Cheap liveness check of an idle connection: it must have nothing to
    /// read and must not be closed. Does not wait.
    pub async fn looks_alive(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::ZERO, self.stream.read(&mut byte)).await {
            Err(_elapsed) => true,
            Ok(_eof_data_or_error) => false,
        }
    }
}

/// Reads one TTLV message: the 8-byte header, then the announced length.
async fn read_message(
    stream: &mut TlsStream<TcpStream>,
    max_bytes: u32,
) -> Result<Zeroizing<Vec<u8>>, ConnError> {
    let mut header = [0u8; ttlv::HEADER_LEN];
    stream
        .read_exact(&mut header)
        .await
        .map_err(ConnError::Io)?;
    let (_, _, len) = ttlv::read_header(&header).ok_or(TtlvError::Truncated { offset: 0 })?;
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
        stream.read_exact(body).await.map_err(ConnError::Io)?;
    }
    Ok(buf)
}
