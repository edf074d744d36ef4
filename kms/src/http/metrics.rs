//! The metrics listener: plain HTTP, `GET /metrics` and `GET /v1/ready` (the
//! detailed canary report, which devices do not get), on a loopback address
//! by default (see `crate::metrics` for who may read it).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::App;
use super::respond::ready_response;

/// Serve `/metrics` and the detailed `/v1/ready` forever.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = Arc::clone(&app);
                async move {
                    let mut resp = if req.method() == Method::GET && req.uri().path() == "/metrics"
                    {
                        let keys = app.keys.load();
                        let cache = keys.cache_counters();
                        if let Some(ttl) = keys.backend().credential_ttl() {
                            let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
                            app.metrics
                                .vault_token_ttl_seconds
                                .store(secs, std::sync::atomic::Ordering::Relaxed);
                        }
                        let ready = app.readiness.current().state.gauge();
                        Response::new(Full::new(Bytes::from(app.metrics.render(cache, ready))))
                    } else if req.method() == Method::GET && req.uri().path() == "/v1/ready" {
                        let (status, v) = ready_response(
                            &app.readiness.current(),
                            app.readiness.is_draining(),
                            true,
                        );
                        let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
                        *r.status_mut() = status;
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        return Ok::<_, Infallible>(r);
                    } else {
                        let mut r = Response::new(Full::new(Bytes::from_static(
                            b"only GET /metrics and GET /v1/ready here\n",
                        )));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    };
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
