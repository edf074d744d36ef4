//! One keep-alive HTTP/1.1 connection over mutual TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::BenchError;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
    pub tls: Arc<ClientConfig>,
}

/// An open connection: requests go one after another (keep-alive, no pipelining).
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

/// What came back.
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Connection {
    /// TCP connect (no Nagle), TLS handshake, HTTP/1.1 handshake.
    pub async fn open(target: &Target) -> Result<Self, BenchError> {
        let tcp = TcpStream::connect(target.addr)
            .await
            .map_err(|e| BenchError::Connect(target.addr, e.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|e| BenchError::Connect(target.addr, e.to_string()))?;
        let tls = TlsConnector::from(Arc::clone(&target.tls))
            .connect(target.server_name.clone(), tcp)
            .await
            .map_err(|e| BenchError::Connect(target.addr, format!("TLS: {e}")))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| BenchError::Connect(target.addr, format!("HTTP: {e}")))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes.
            let _ = conn.await;
        });
        let host = HeaderValue::from_str(&target.addr.to_string())
            .map_err(|e| BenchError::Connect(target.addr, e.to_string()))?;
        Ok(Self { sender, host })
    }

    /// POST `body` as JSON to `path` and read the whole answer.
    pub async fn post(&mut self, path: &str, body: Bytes) -> Result<Reply, BenchError> {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(body))
            .map_err(|e| BenchError::Request(e.to_string()))?;
        self.sender
            .ready()
            .await
            .map_err(|e| BenchError::Request(e.to_string()))?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| BenchError::Request(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| BenchError::Request(e.to_string()))?
            .to_bytes();
        Ok(Reply { status, body })
    }
}
