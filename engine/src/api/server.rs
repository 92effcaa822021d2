//! The accept loop: HTTP/1.1 connections with a header-read timeout (hyper's timer),
//! an idle timeout (a watchdog per connection), a cap on connections and a bounded
//! graceful shutdown. The body-read timeout is the handlers' (`body` in `mod.rs`).

use super::{Api, router};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

/// Largest request head (request line and headers) a connection may buffer: with
/// thousands of connections, hyper's default would allow a lot of memory.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// How often a full accept loop, waiting for a slot, looks again for a connection
/// that has become idle (and so may be closed for the new one).
const SLOT_RETRY: Duration = Duration::from_millis(50);

/// What a connection's watchdog and the eviction pick know about it.
#[derive(Debug)]
struct Track {
    id: u64,
    /// Requests being handled.
    busy: AtomicUsize,
    /// When it last began waiting for a request (accepted, or its last handler
    /// finished), in ms since the server started.
    waiting_since: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
}

#[derive(Debug)]
struct Conns {
    epoch: Instant,
    slots: Arc<Semaphore>,
    live: Mutex<HashMap<u64, Arc<Track>>>,
    next: AtomicU64,
}

impl Conns {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn register(&self) -> Arc<Track> {
        let t = Arc::new(Track {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            busy: AtomicUsize::new(0),
            waiting_since: AtomicU64::new(self.now()),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(t.id, t.clone());
        t
    }

    fn remove(&self, id: u64) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Asks the connection that has waited longest for a request, among those handling
    /// none, to close. A legitimate client sends its request as soon as it connects, so
    /// the one picked is almost always a connection held open doing nothing.
    fn evict_oldest_idle(&self) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let victim = live
            .values()
            .filter(|t| t.busy.load(Ordering::Acquire) == 0 && !t.evicted.load(Ordering::Relaxed))
            .min_by_key(|t| t.waiting_since.load(Ordering::Relaxed));
        match victim {
            Some(t) => {
                t.evicted.store(true, Ordering::Relaxed);
                t.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Counts a request as being handled for as long as its handler runs.
#[derive(Debug)]
struct Busy {
    track: Arc<Track>,
    conns: Arc<Conns>,
}

impl Busy {
    fn enter(track: &Arc<Track>, conns: &Arc<Conns>) -> Busy {
        track.busy.fetch_add(1, Ordering::AcqRel);
        Busy {
            track: track.clone(),
            conns: conns.clone(),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.track
            .waiting_since
            .store(self.conns.now(), Ordering::Relaxed);
        self.track.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router for one connection: it knows the peer (for `ConnectInfo`) and counts
/// its requests.
#[derive(Clone, Debug)]
struct Handler {
    router: Router,
    peer: SocketAddr,
    track: Arc<Track>,
    conns: Arc<Conns>,
}

type Answer = Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Handler {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Answer {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let busy = Busy::enter(&self.track, &self.conns);
        let mut router = self.router.clone();
        Box::pin(async move {
            let r = tower_service::Service::call(&mut router, req).await;
            drop(busy);
            r
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Timeouts {
    idle: Duration,
}

/// Pending connections the kernel may queue before the accept loop takes them; the
/// system caps it (`net.core.somaxconn`). A burst of connections must not overflow a
/// short queue: the overflow is dropped, legitimate clients' with the rest.
const BACKLOG: u32 = 4096;

/// Binds `listen` (`host:port`) with a backlog sized for bursts of connections.
pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{listen} names no address"),
        )
    }))
}

/// Serves until `shutdown` completes, then lets requests in progress finish (at most
/// `shutdown_timeout`) and returns.
pub async fn serve(
    listener: TcpListener,
    api: Arc<Api>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cfg = api.cfg.clone();
    let router = router(api);
    let conns = Arc::new(Conns {
        epoch: Instant::now(),
        slots: Arc::new(Semaphore::new(
            cfg.max_connections.clamp(1, Semaphore::MAX_PERMITS),
        )),
        live: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let timeouts = Timeouts {
        idle: cfg.idle_timeout,
    };
    let (stop, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    'accept: loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) if per_connection(&e) => continue,
                Err(e) => {
                    // Out of file descriptors (or the like): free one by closing the
                    // connection idle the longest, and give the system a moment.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    conns.evict_oldest_idle();
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(SLOT_RETRY) => continue,
                    }
                }
            },
        };
        // A slot: a free one, or one freed by closing the connection idle the longest;
        // with every connection handling a request, wait for one to finish.
        let permit = match conns.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => loop {
                conns.evict_oldest_idle();
                tokio::select! {
                    p = conns.slots.clone().acquire_owned() => match p {
                        Ok(p) => break p,
                        Err(_) => break 'accept,
                    },
                    () = &mut shutdown => break 'accept,
                    () = tokio::time::sleep(SLOT_RETRY) => {}
                }
            },
        };
        let track = conns.register();
        let handler = Handler {
            router: router.clone(),
            peer,
            track: track.clone(),
            conns: conns.clone(),
        };
        tasks.spawn(connection(
            http.clone(),
            stream,
            handler,
            permit,
            stopping.clone(),
            timeouts,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(cfg.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "requests still in progress after the shutdown timeout are dropped"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

/// Errors that concern only the connection being accepted.
fn per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

async fn connection(
    http: http1::Builder,
    stream: TcpStream,
    handler: Handler,
    permit: OwnedSemaphorePermit,
    mut stopping: watch::Receiver<bool>,
    timeouts: Timeouts,
) {
    let _ = stream.set_nodelay(true);
    let track = handler.track.clone();
    let conns = handler.conns.clone();
    let conn = http.serve_connection(TokioIo::new(stream), handler);
    let mut conn = pin!(conn);
    let mut graceful = false;
    let mut check = tokio::time::Instant::now() + timeouts.idle;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended");
                }
                break;
            }
            () = track.evict.notified() => break,
            () = tokio::time::sleep_until(check) => {
                // Closed once it has gone `idle` without handling a request: hyper's
                // header timer covers waiting for a request, this a client that does
                // not read its response.
                let now = tokio::time::Instant::now();
                if track.busy.load(Ordering::Acquire) > 0 {
                    check = now + timeouts.idle;
                } else {
                    let since = conns.now().saturating_sub(track.waiting_since.load(Ordering::Relaxed));
                    let since = Duration::from_millis(since);
                    if since >= timeouts.idle {
                        tracing::debug!("closing a connection idle too long");
                        break;
                    }
                    check = now + (timeouts.idle - since);
                }
            }
            r = stopping.changed(), if !graceful => {
                // Also when the sender is gone: the server is stopping either way.
                let _ = r;
                graceful = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    conns.remove(track.id);
    drop(permit);
}
