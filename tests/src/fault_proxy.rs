//! A TCP proxy on loopback that the test turns into a bad network between
//! a builder and the control node: a partition (nothing gets through
//! either way, connections stay open, and what was sent is delivered when
//! it heals, as TCP's retransmissions would), latency (each chunk held
//! back a fixed time, in both directions, without limiting throughput), or
//! a cut (every connection closed at once). Network namespaces with `tc
//! netem` would be the other way, but this machine's kernel has no netem
//! (`CONFIG_NET_SCH_NETEM` is not set); packet loss is made with nftables
//! in a namespace of the test's (`crate::netns`), the proxy listening there
//! ([`FaultProxy::start_on`]).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Shared {
    partitioned: AtomicBool,
    delay_ms: AtomicU64,
    stop: AtomicBool,
    /// Both ends of every connection, for a cut.
    conns: Mutex<Vec<TcpStream>>,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: &str) -> FaultProxy {
        FaultProxy::start_on(
            TcpListener::bind("127.0.0.1:0").expect("bind the proxy"),
            upstream,
        )
    }

    /// Forwards what comes to `listener` (which may be in another network
    /// namespace, `crate::listen_in`) to `upstream` (from this one).
    pub fn start_on(listener: TcpListener, upstream: &str) -> FaultProxy {
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let (s, up) = (shared.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (s, up) = (s.clone(), up.clone());
                std::thread::spawn(move || connect(client, &up, &s));
            }
        });
        FaultProxy { addr, shared }
    }

    /// `http://127.0.0.1:PORT`, for `--control`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Nothing gets through until [`FaultProxy::heal`].
    pub fn partition(&self) {
        self.shared.partitioned.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.shared.partitioned.store(false, Ordering::SeqCst);
    }

    /// Every chunk is delivered `d` after it was read, each way.
    pub fn delay(&self, d: Duration) {
        self.shared
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Closes every connection now (new ones are accepted as usual).
    pub fn cut(&self) -> usize {
        let conns: Vec<TcpStream> =
            std::mem::take(&mut *self.shared.conns.lock().unwrap_or_else(|p| p.into_inner()));
        for c in &conns {
            let _ = c.shutdown(Shutdown::Both);
        }
        conns.len() / 2
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.heal();
        self.cut();
        // Wakes the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn wait_healed(s: &Shared) {
    while s.partitioned.load(Ordering::SeqCst) && !s.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn connect(client: TcpStream, upstream: &str, s: &Arc<Shared>) {
    // A partition holds new connections too, as an unanswered SYN would.
    wait_healed(s);
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    if let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) {
        s.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([c3, s3]);
    }
    let s1 = s.clone();
    std::thread::spawn(move || pump(client, s2, &s1));
    pump(server, c2, s);
}

/// Copies `from` to `to`, each chunk after the delay and never during a
/// partition; ends both when either end closes.
fn pump(mut from: TcpStream, to: TcpStream, s: &Arc<Shared>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let s2 = s.clone();
    let writer = std::thread::spawn(move || {
        let mut to = to;
        for (due, bytes) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            wait_healed(&s2);
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let due = Instant::now() + Duration::from_millis(s.delay_ms.load(Ordering::SeqCst));
                if tx.send((due, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Both);
}
