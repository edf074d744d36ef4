//! The peer protocol's frames, inside the peer TLS channel.
//!
//! A frame is a 4-byte big-endian length, then that many bytes: a 1-byte
//! type and the type's fields (fixed-size integers big-endian, byte strings
//! with a 2-byte length). Frames are at most [`MAX_FRAME`] bytes; anything
//! malformed ends the connection. Both ends send [`Frame::Hello`] first,
//! which carries [`MAGIC`] and [`VERSION`]: a peer that speaks another
//! version (or no version at all: a JGroups node of the legacy cluster) is
//! left out of the cluster, with one warning.
//!
//! Frame buffers are [`Zeroizing`]: a [`Frame::Key`] carries a customer key
//! in plaintext, and these buffers are the only place it sits outside the
//! cache besides rustls' own record buffers.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::envelope::SecretKey;

/// The first bytes of every Hello: "cmx-kms peer".
pub const MAGIC: [u8; 8] = *b"CMXKMSP\0";
/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Largest frame accepted (a wrapped customer key is well under 1 KiB).
pub const MAX_FRAME: usize = 16 * 1024;

/// Why a peer could not be served a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailCode {
    /// The blob is not a customer envelope, or the backend refused it.
    Refused = 1,
    /// The owner's backend is unavailable (or busy): ask elsewhere or unwrap locally.
    Unavailable = 2,
}

/// One message.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// First frame each way: version, the sender's cluster address as the
    /// members list it (`ip:port`), and the SHA-256 of its `kmsserver` certificate.
    Hello {
        version: u16,
        node: String,
        fingerprint: [u8; 32],
    },
    Ping(u64),
    Pong(u64),
    /// Unwrap this wrapped customer key (its exact blob) for me.
    Get {
        id: u64,
        blob: Vec<u8>,
    },
    /// The key, and how long the owner keeps it cached (0: do not cache it).
    Key {
        id: u64,
        ttl_ms: u64,
        key: SecretKeyBytes,
    },
    Fail {
        id: u64,
        code: FailCode,
    },
    /// Forget the customer key `key` (its id), or every key: an operator's
    /// `cmx-kms cache flush`, numbered by the node that started it.
    Flush {
        id: u64,
        generation: u64,
        key: Option<[u8; 16]>,
    },
    /// Done: how many entries went.
    Flushed {
        id: u64,
        removed: u64,
    },
}

/// A key's bytes in a frame (zeroized on drop, never printed).
#[derive(PartialEq, Eq)]
pub struct SecretKeyBytes(pub Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SecretKeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKeyBytes(..)")
    }
}

impl SecretKeyBytes {
    pub fn from_key(key: &SecretKey) -> Self {
        Self(Zeroizing::new(key.expose().to_vec()))
    }
}

/// A malformed frame or a failed read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed frame ({0})")]
    Malformed(&'static str),
}

const T_HELLO: u8 = 1;
const T_PING: u8 = 2;
const T_PONG: u8 = 3;
const T_GET: u8 = 4;
const T_KEY: u8 = 5;
const T_FAIL: u8 = 6;
const T_FLUSH: u8 = 7;
const T_FLUSHED: u8 = 8;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Callers keep byte strings far below 64 KiB (MAX_FRAME).
    out.extend_from_slice(&u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(b.get(..usize::from(u16::MAX)).unwrap_or(b));
}

impl Frame {
    /// The frame's bytes, length prefix included.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(vec![0u8; 4]);
        match self {
            Frame::Hello {
                version,
                node,
                fingerprint,
            } => {
                b.push(T_HELLO);
                b.extend_from_slice(&MAGIC);
                b.extend_from_slice(&version.to_be_bytes());
                put_bytes(&mut b, node.as_bytes());
                b.extend_from_slice(fingerprint);
            }
            Frame::Ping(n) | Frame::Pong(n) => {
                b.push(if matches!(self, Frame::Ping(_)) {
                    T_PING
                } else {
                    T_PONG
                });
                b.extend_from_slice(&n.to_be_bytes());
            }
            Frame::Get { id, blob } => {
                b.push(T_GET);
                b.extend_from_slice(&id.to_be_bytes());
                put_bytes(&mut b, blob);
            }
            Frame::Key { id, ttl_ms, key } => {
                b.push(T_KEY);
                b.extend_from_slice(&id.to_be_bytes());
                b.extend_from_slice(&ttl_ms.to_be_bytes());
                put_bytes(&mut b, &key.0);
            }
            Frame::Fail { id, code } => {
                b.push(T_FAIL);
                b.extend_from_slice(&id.to_be_bytes());
                b.push(*code as u8);
            }
            Frame::Flush {
                id,
                generation,
                key,
            } => {
                b.push(T_FLUSH);
                b.extend_from_slice(&id.to_be_bytes());
                b.extend_from_slice(&generation.to_be_bytes());
                b.push(u8::from(key.is_some()));
                b.extend_from_slice(&key.unwrap_or_default());
            }
            Frame::Flushed { id, removed } => {
                b.push(T_FLUSHED);
                b.extend_from_slice(&id.to_be_bytes());
                b.extend_from_slice(&removed.to_be_bytes());
            }
        }
        let len = u32::try_from(b.len() - 4).unwrap_or(u32::MAX);
        b[..4].copy_from_slice(&len.to_be_bytes());
        b
    }

    /// Decodes one frame body (without its length prefix).
    pub fn decode(body: &[u8]) -> Result<Frame, WireError> {
        let mut r = Reader(body);
        let frame = match r.u8()? {
            T_HELLO => {
                if r.take(8)? != MAGIC {
                    return Err(WireError::Malformed("not a cmx-kms peer"));
                }
                let version = r.u16()?;
                let node = String::from_utf8(r.bytes()?.to_vec())
                    .map_err(|_| WireError::Malformed("node name"))?;
                let mut fingerprint = [0u8; 32];
                fingerprint.copy_from_slice(r.take(32)?);
                Frame::Hello {
                    version,
                    node,
                    fingerprint,
                }
            }
            T_PING => Frame::Ping(r.u64()?),
            T_PONG => Frame::Pong(r.u64()?),
            T_GET => Frame::Get {
                id: r.u64()?,
                blob: r.bytes()?.to_vec(),
            },
            T_KEY => Frame::Key {
                id: r.u64()?,
                ttl_ms: r.u64()?,
                key: SecretKeyBytes(Zeroizing::new(r.bytes()?.to_vec())),
            },
            T_FAIL => Frame::Fail {
                id: r.u64()?,
                code: match r.u8()? {
                    1 => FailCode::Refused,
                    _ => FailCode::Unavailable,
                },
            },
            T_FLUSH => {
                let (id, generation) = (r.u64()?, r.u64()?);
                let some = r.u8()? == 1;
                let mut k = [0u8; 16];
                k.copy_from_slice(r.take(16)?);
                Frame::Flush {
                    id,
                    generation,
                    key: some.then_some(k),
                }
            }
            T_FLUSHED => Frame::Flushed {
                id: r.u64()?,
                removed: r.u64()?,
            },
            _ => return Err(WireError::Malformed("unknown frame type")),
        };
        if !r.0.is_empty() {
            return Err(WireError::Malformed("trailing bytes"));
        }
        Ok(frame)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, tail) = self
            .0
            .split_at_checked(n)
            .ok_or(WireError::Malformed("truncated"))?;
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Reads one frame.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, WireError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len == 0 || len > MAX_FRAME {
        return Err(WireError::Malformed("frame length"));
    }
    let mut body = Zeroizing::new(vec![0u8; len]);
    r.read_exact(&mut body).await?;
    Frame::decode(&body)
}

/// Encoded frames on their way to the connection's writer task.
pub type Outbox = tokio::sync::mpsc::Sender<Zeroizing<Vec<u8>>>;

/// Spawns the task that writes the frames sent to the returned [`Outbox`]
/// to `wr`, in order, until the connection fails or the outbox is dropped.
/// Abort the task when the connection ends.
pub fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(
    mut wr: W,
) -> (Outbox, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Zeroizing<Vec<u8>>>(1024);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
    });
    (tx, writer)
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame) -> std::io::Result<()> {
    w.write_all(&f.encode()).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let bytes = f.encode();
        assert_eq!(Frame::decode(&bytes[4..]).unwrap(), f);
    }

    #[test]
    fn frames_round_trip() {
        round_trip(Frame::Hello {
            version: VERSION,
            node: "127.0.0.1:7800".into(),
            fingerprint: [7; 32],
        });
        round_trip(Frame::Ping(3));
        round_trip(Frame::Pong(u64::MAX));
        round_trip(Frame::Get {
            id: 9,
            blob: vec![1, 2, 3],
        });
        round_trip(Frame::Key {
            id: 1,
            ttl_ms: 5000,
            key: SecretKeyBytes(Zeroizing::new(vec![0xAB; 32])),
        });
        round_trip(Frame::Fail {
            id: 2,
            code: FailCode::Unavailable,
        });
        round_trip(Frame::Flush {
            id: 3,
            generation: 77,
            key: Some([4; 16]),
        });
        round_trip(Frame::Flush {
            id: 3,
            generation: 77,
            key: None,
        });
        round_trip(Frame::Flushed { id: 3, removed: 2 });
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        for body in [
            &[][..],
            &[T_HELLO, b'X'],
            &[T_GET, 0, 0, 0, 0, 0, 0, 0, 1, 0, 5, 1],
            &[99],
            &[T_PING, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        ] {
            assert!(Frame::decode(body).is_err(), "{body:?}");
        }
        let mut hello = Frame::Hello {
            version: 1,
            node: "n".into(),
            fingerprint: [0; 32],
        }
        .encode();
        hello[5] = b'J'; // a JGroups or other speaker
        assert!(Frame::decode(&hello[4..]).is_err());
    }

    #[test]
    fn a_key_frame_does_not_print_its_key() {
        let f = Frame::Key {
            id: 1,
            ttl_ms: 1,
            key: SecretKeyBytes(Zeroizing::new(vec![0x5A; 32])),
        };
        assert!(!format!("{f:?}").contains("90"));
    }
}
