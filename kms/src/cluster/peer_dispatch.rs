//! The reading side of a peer connection: answers routed to their waiters,
//! and the heartbeat (ping every [`PING_EVERY`], suspect after
//! [`SUSPECT_AFTER`] of silence, down after [`CONFIRM_AFTER`]).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::{Answer, CONFIRM_AFTER, Conn, PING_EVERY, Peer, PeerFail, SUSPECT_AFTER, Status, lock};
use crate::cluster::wire::{self, FailCode, Frame};
use crate::envelope::SecretKey;

impl Peer {
    pub(super) async fn read_loop<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
        &self,
        mut rd: R,
        conn: &Conn,
        tx: &mpsc::Sender<Zeroizing<Vec<u8>>>,
    ) -> String {
        // Reading is not cancel-safe: it runs in its own task.
        let (ftx, mut frx) = mpsc::channel(64);
        let reader = tokio::spawn(async move {
            loop {
                let f = wire::read_frame(&mut rd).await;
                let end = f.is_err();
                if ftx.send(f).await.is_err() || end {
                    break;
                }
            }
        });
        let end = self.dispatch(&mut frx, conn, tx).await;
        reader.abort();
        end
    }

    async fn dispatch(
        &self,
        frx: &mut mpsc::Receiver<Result<Frame, wire::WireError>>,
        conn: &Conn,
        tx: &mpsc::Sender<Zeroizing<Vec<u8>>>,
    ) -> String {
        let mut last_rx = Instant::now();
        let mut seq = 0u64;
        let mut tick = tokio::time::interval(PING_EVERY);
        loop {
            tokio::select! {
                frame = frx.recv() => {
                    last_rx = Instant::now();
                    match frame {
                        Some(Ok(Frame::Pong(_))) => self.set_status(Status::Up),
                        Some(Ok(Frame::Key { id, ttl_ms, key })) => {
                            let reply = SecretKey::from_slice(&key.0)
                                .map_or(Answer::Fail(PeerFail::Lost), |k| {
                                    Answer::Key(k, Duration::from_millis(ttl_ms))
                                });
                            if let Some(w) = lock(&conn.pending).remove(&id) {
                                let _ = w.send(reply);
                            }
                        }
                        Some(Ok(Frame::Fail { id, code })) => {
                            let f = if code == FailCode::Refused {
                                PeerFail::Refused
                            } else {
                                PeerFail::Unavailable
                            };
                            if let Some(w) = lock(&conn.pending).remove(&id) {
                                let _ = w.send(Answer::Fail(f));
                            }
                        }
                        Some(Ok(Frame::Flushed { id, removed })) => {
                            if let Some(w) = lock(&conn.pending).remove(&id) {
                                let _ = w.send(Answer::Flushed(removed));
                            }
                        }
                        Some(Ok(_)) => return "unexpected frame".into(),
                        Some(Err(e)) => return reason(&e),
                        None => return "connection closed".into(),
                    }
                }
                _ = tick.tick() => {
                    let quiet = last_rx.elapsed();
                    if quiet >= CONFIRM_AFTER {
                        return format!("no heartbeat answer for {} s", quiet.as_secs());
                    }
                    if quiet >= SUSPECT_AFTER {
                        self.set_status(Status::Suspect);
                    }
                    seq += 1;
                    if tx.try_send(Frame::Ping(seq).encode()).is_err() {
                        return "send queue full".into();
                    }
                }
            }
        }
    }
}

/// Why a connection ended, for people: without the TLS library's URLs.
fn reason(e: &wire::WireError) -> String {
    let text = e.to_string();
    if text.contains("close_notify") {
        return "connection closed without TLS close_notify: the peer crashed or was killed".into();
    }
    match text.find(": http") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_carry_no_library_url() {
        let eof = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/x",
        );
        let r = reason(&wire::WireError::Io(eof));
        assert!(
            !r.contains("https://") && r.contains("crashed or was killed"),
            "{r}"
        );
        let other = std::io::Error::other("reset: https://example.invalid/x");
        assert_eq!(reason(&wire::WireError::Io(other)), "connection: reset");
    }
}
