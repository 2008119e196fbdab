//! The gRPC listener's connections, each handed to tonic only once its
//! client has sent its first bytes: the HTTP/2 preface, or a TLS
//! ClientHello (longer than the preface). Before its handshake HTTP/2
//! has no keepalive, so a client that connected and sent nothing, or half
//! a preface, held a connection and a task as long as it liked.

use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tracing::debug;

/// How long a client has, from connecting, to send its first bytes.
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2's client preface (`PRI * HTTP/2.0…`) is 24 bytes.
const PREFACE_LEN: usize = 24;

/// `incoming`'s connections whose clients sent their first bytes in time,
/// in the order they did; the others are closed. Accepting stops at
/// `stop`.
pub fn guarded(
    mut incoming: TcpIncoming,
    stop: CancellationToken,
) -> ReceiverStream<std::io::Result<TcpStream>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = stop.cancelled() => return,
                c = incoming.next() => c,
            };
            match conn {
                Some(Ok(s)) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if first_bytes(&s).await {
                            let _ = tx.send(Ok(s)).await;
                        } else {
                            debug!(peer = ?s.peer_addr().ok(), "gRPC connection closed: no handshake in time");
                        }
                    });
                }
                Some(Err(e)) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                }
                None => return,
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Whether `s`'s client sent [`PREFACE_LEN`] bytes within
/// [`FIRST_BYTES_TIMEOUT`] (they stay unread, for tonic).
async fn first_bytes(s: &TcpStream) -> bool {
    let wait = async {
        let mut buf = [0u8; PREFACE_LEN];
        loop {
            match s.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n >= PREFACE_LEN => return true,
                // Part of it: the rest is on its way, or never comes.
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    tokio::time::timeout(FIRST_BYTES_TIMEOUT, wait)
        .await
        .unwrap_or(false)
}
