//! The API under hostile clients, all on 127.0.0.1: half-open and slow connections,
//! an unauthenticated flood, the connection cap, malformed and oversized requests,
//! a client that stops reading its responses, and a shutdown with connections still
//! open. Each test stops by itself within
//! seconds; they run one at a time so their timings do not mix.
//!
//! The slow-client test holds about a thousand connections open, and both their ends
//! live in this process: it raises the soft file-descriptor limit with `prlimit` when
//! it can, and otherwise holds as many as the limit allows (and says so).
#![allow(clippy::unwrap_used)]

mod common;

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use vigil::api::{Api, ApiConfig, Principals};
use vigil_alert::trigger::Trigger;
use vigil_alert::{AlertService, Engine};
use vigil_bundle::model::{Alerting, TriggerMode};
use vigil_exec::core::Catalog;
use vigil_store::Store;
use vigil_telemetry::Metrics;

const TOKEN: &str = "hardening-token-0123456789";

/// One test at a time: they measure latencies and hold many sockets.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// An in-process server on its own two-thread runtime (like `vigil serve` on two cores).
struct Srv {
    addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Srv {
    fn start(tweak: impl FnOnce(&mut ApiConfig)) -> Srv {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut cfg = ApiConfig {
            principals: Principals::shared(["another-token", TOKEN]),
            ..Default::default()
        };
        tweak(&mut cfg);
        let (addr, stop, served) = rt.block_on(async {
            let catalog = Arc::new(Catalog::with_core());
            let trigger = Trigger::new(Vec::new(), catalog, None, TriggerMode::DryRun);
            let svc = AlertService::open(
                store,
                Engine::new(Alerting::default(), &Default::default()),
                trigger,
                Arc::new(Metrics::new()),
            )
            .unwrap();
            svc.spawn_ticker(Duration::from_millis(200));
            let listener = vigil::api::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let served = tokio::spawn(vigil::api::serve(listener, Api::new(svc, cfg), async {
                let _ = rx.await;
            }));
            (addr, tx, served)
        });
        Srv {
            addr,
            rt: Some(rt),
            stop: Some(stop),
            served: Some(served),
            _dir: dir,
        }
    }

    /// Stops it and waits for `serve` to return; how long that took.
    fn shutdown(&mut self) -> Duration {
        let t = Instant::now();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let (Some(rt), Some(h)) = (self.rt.as_ref(), self.served.take()) else {
            return t.elapsed();
        };
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), h).await })
            .expect("serve returns after shutdown")
            .expect("serve task")
            .expect("serve");
        t.elapsed()
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The client side: its own runtime.
fn client_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A JSON error as the API writes them.
    fn assert_error(&self, status: u16, error: &str) {
        let v = self.json();
        assert_eq!(self.status, status, "{v}");
        assert_eq!(v["error"], error, "{v}");
        assert!(v["detail"].is_string(), "{v}");
    }
}

async fn read_response<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Resp> {
    use std::io::{Error, ErrorKind};
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Err(Error::new(
            ErrorKind::UnexpectedEof,
            "closed before a response",
        ));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, format!("status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "closed in the headers",
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// One request on a fresh connection. It is written while the answer is read, so
/// that a server refusing a request early is heard even if it stops reading.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Resp> {
    let s = TcpStream::connect(addr).await?;
    let (rd, mut wr) = s.into_split();
    let raw = raw.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&raw).await;
        wr
    });
    let r = read_response(&mut BufReader::new(rd)).await;
    writer.abort();
    r
}

fn get(path: &str, token: Option<&str>) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: vigil\r\n{auth}Connection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, token: Option<&str>, body: &[u8]) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: vigil\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn webhook(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": "4", "status": "firing", "receiver": "vigil", "groupKey": "k",
        "alerts": [{"status": "firing", "labels": {"alertname": name, "service": "api"}}]
    }))
    .unwrap()
}

/// Waits for the peer to close: `Some(elapsed)` on EOF or reset, `None` if it is
/// still open after `within`. Whatever the server sends first is read and ignored.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(t.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The soft limit on open files, raised towards `want` with `prlimit` when it is lower.
fn fd_limit(want: u64) -> u64 {
    let read = || -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    };
    let Some(soft) = read() else {
        return want;
    };
    if soft >= want {
        return soft;
    }
    let _ = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={want}:"))
        .status();
    read().unwrap_or(soft)
}

#[test]
fn slow_and_half_open_clients_do_not_starve_health_or_ingest() {
    let _serial = serial();
    const IDLE: usize = 1000;
    const DRIPPING: usize = 50;
    // Both ends of every connection are in this process, plus the store and slack.
    let limit = fd_limit(2 * (IDLE + DRIPPING) as u64 + 512);
    let idle = IDLE.min((limit.saturating_sub(512) / 2) as usize - DRIPPING);
    if idle < IDLE {
        eprintln!("file-descriptor limit {limit}: holding {idle} idle connections, not {IDLE}");
    }
    let header_timeout = Duration::from_secs(1);
    let srv = Srv::start(|c| c.header_read_timeout = header_timeout);
    let addr = srv.addr;
    let rt = client_rt();
    let attack_for = Duration::from_secs(5);
    rt.block_on(async move {
        let until = Instant::now() + attack_for;
        // Connections that send nothing, reopened as soon as the server closes them.
        let mut attackers = Vec::new();
        for _ in 0..idle {
            attackers.push(tokio::spawn(async move {
                let mut closed = Vec::new();
                while Instant::now() < until {
                    let Ok(mut s) = TcpStream::connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    match closed_within(&mut s, Duration::from_secs(10)).await {
                        Some(d) => closed.push(d),
                        None => panic!("an idle connection was still open after 10 s"),
                    }
                }
                closed
            }));
        }
        // Connections that send a request line a byte at a time.
        let mut drippers = Vec::new();
        for _ in 0..DRIPPING {
            drippers.push(tokio::spawn(async move {
                let mut closed = Vec::new();
                let line = b"GET /api/v1/incidents HTTP/1.1\r\nHost: vigil\r\nX-Slow: ";
                while Instant::now() < until {
                    let Ok(mut s) = TcpStream::connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let t = Instant::now();
                    let mut i = 0;
                    let mut buf = [0u8; 1024];
                    loop {
                        assert!(t.elapsed() < Duration::from_secs(10), "a dripping connection was still open after 10 s");
                        if s.write_all(&line[i % line.len()..i % line.len() + 1]).await.is_err() {
                            break;
                        }
                        i += 1;
                        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
                            Err(_) => {}
                            Ok(Ok(0)) | Ok(Err(_)) => break,
                            Ok(Ok(_)) => {}
                        }
                    }
                    closed.push(t.elapsed());
                }
                closed
            }));
        }
        // The attack's connections are open before the legitimate client starts.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut health = Vec::new();
        let mut ingest = Vec::new();
        let mut n = 0;
        while Instant::now() < until {
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(5), exchange(addr, &get("/healthz", None)))
                .await
                .expect("/healthz answered within 5 s")
                .expect("/healthz");
            assert_eq!(r.status, 200, "{:?}", r.json());
            health.push(t.elapsed());
            let t = Instant::now();
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                exchange(addr, &post("/api/v1/alerts", Some(TOKEN), &webhook(&format!("Slow{n}")))),
            )
            .await
            .expect("the POST answered within 5 s")
            .expect("POST /api/v1/alerts");
            assert_eq!(r.status, 200, "{:?}", r.json());
            ingest.push(t.elapsed());
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut idle_closed = Vec::new();
        for a in attackers {
            idle_closed.extend(a.await.unwrap());
        }
        let mut drip_closed = Vec::new();
        for d in drippers {
            drip_closed.extend(d.await.unwrap());
        }
        health.sort();
        ingest.sort();
        idle_closed.sort();
        drip_closed.sort();
        println!(
            "{idle} idle + {DRIPPING} dripping connections for {attack_for:?}: /healthz p50 {:?} p99 {:?} max {:?} ({} requests); POST alerts p50 {:?} p99 {:?} max {:?}",
            percentile(&health, 0.5),
            percentile(&health, 0.99),
            health.last().copied().unwrap_or_default(),
            health.len(),
            percentile(&ingest, 0.5),
            percentile(&ingest, 0.99),
            ingest.last().copied().unwrap_or_default(),
        );
        println!(
            "idle connections closed by the server: {} after {:?}..{:?} (p50 {:?}); dripping: {} after {:?}..{:?}",
            idle_closed.len(),
            idle_closed.first().copied().unwrap_or_default(),
            idle_closed.last().copied().unwrap_or_default(),
            percentile(&idle_closed, 0.5),
            drip_closed.len(),
            drip_closed.first().copied().unwrap_or_default(),
            drip_closed.last().copied().unwrap_or_default(),
        );
        assert!(health.len() >= 10 && ingest.len() >= 10, "too few legitimate requests got through");
        assert!(percentile(&health, 0.99) < Duration::from_secs(2), "{health:?}");
        assert!(percentile(&ingest, 0.99) < Duration::from_secs(2), "{ingest:?}");
        // Every attacking connection was closed by the server, after the header timeout
        // and not long after it (a dripping one gains nothing by sending bytes).
        assert!(idle_closed.len() >= idle, "{} closed", idle_closed.len());
        assert!(drip_closed.len() >= DRIPPING, "{} closed", drip_closed.len());
        let floor = header_timeout - Duration::from_millis(100);
        let ceiling = header_timeout + Duration::from_secs(3);
        for d in idle_closed.iter().chain(&drip_closed) {
            assert!(*d >= floor && *d <= ceiling, "closed after {d:?}");
        }
    });
}

#[test]
fn an_unauthenticated_flood_does_not_rate_limit_a_valid_token() {
    let _serial = serial();
    // `vigil serve` itself, with the rate limits it configures by default.
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("vigil.yaml"), "apiVersion: vigil/v1\nkind: Config\n").unwrap();
    let server = common::serve(&b.join("vigil.yaml"), &dir.path().join("store"), TOKEN, &[]);
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    const FLOOD: usize = 5000;
    const CONCURRENCY: usize = 64;
    let rt = client_rt();
    let (flood, authed, took) = rt.block_on(async move {
        let t = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = Vec::new();
        for w in 0..CONCURRENCY {
            let next = next.clone();
            workers.push(tokio::spawn(async move {
                let mut codes = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < FLOOD {
                    // Wrong tokens, no token and a token of the wrong scheme.
                    let req = match w % 3 {
                        0 => post(
                            "/api/v1/alerts",
                            Some("guess-0123456789"),
                            &webhook("Flood"),
                        ),
                        1 => post("/api/v1/alerts", None, &webhook("Flood")),
                        _ => get("/api/v1/incidents", Some("x")),
                    };
                    match exchange(addr, &req).await {
                        Ok(r) => codes.push(r.status),
                        Err(_) => codes.push(0),
                    }
                }
                codes
            }));
        }
        let authed = tokio::spawn(async move {
            let mut codes = Vec::new();
            let mut i = 0;
            while i < 20 || next.load(std::sync::atomic::Ordering::Relaxed) < FLOOD {
                let r = exchange(
                    addr,
                    &post(
                        "/api/v1/alerts",
                        Some(TOKEN),
                        &webhook(&format!("Legit{i}")),
                    ),
                )
                .await
                .expect("authenticated POST");
                codes.push(r.status);
                i += 1;
            }
            codes
        });
        let mut flood = Vec::new();
        for w in workers {
            flood.extend(w.await.unwrap());
        }
        (flood, authed.await.unwrap(), t.elapsed())
    });
    let count = |codes: &[u16], c: u16| codes.iter().filter(|x| **x == c).count();
    println!(
        "flood of {} unauthenticated requests ({CONCURRENCY} at once) in {took:?}: {} × 429, {} × 401, {} × 403, {} failed; authenticated client: {} POSTs, {} × 200, {} × 429",
        flood.len(),
        count(&flood, 429),
        count(&flood, 401),
        count(&flood, 403),
        count(&flood, 0),
        authed.len(),
        count(&authed, 200),
        count(&authed, 429),
    );
    assert_eq!(count(&authed, 429), 0, "{authed:?}");
    assert!(authed.iter().all(|c| *c == 200), "{authed:?}");
    assert_eq!(count(&flood, 0), 0, "every flood request was answered");
    assert!(
        count(&flood, 429) > FLOOD / 2,
        "the flood is limited on its own bucket"
    );
    assert_eq!(
        count(&flood, 429) + count(&flood, 401) + count(&flood, 403),
        flood.len()
    );
}

#[test]
fn the_connection_cap_closes_idle_connections_for_new_ones_and_waits_for_busy_ones() {
    let _serial = serial();
    const CAP: usize = 32;
    let srv = Srv::start(|c| {
        c.max_connections = CAP;
        c.header_read_timeout = Duration::from_secs(30);
        c.body_read_timeout = Duration::from_secs(2);
    });
    let addr = srv.addr;
    client_rt().block_on(async move {
        // Far more idle connections than the cap: each one past it closes the oldest.
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let t = Instant::now();
        let r = exchange(addr, &get("/healthz", None)).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let mut closed = 0;
        for s in &mut idle {
            if closed_within(s, Duration::from_millis(20)).await.is_some() {
                closed += 1;
            }
        }
        println!("cap {CAP}: of 200 idle connections, {closed} were closed for newer ones");
        assert!(closed >= 200 - CAP, "{closed} closed");
        // The newest are still served.
        let last = idle.last_mut().unwrap();
        last.write_all(&get("/healthz", None)).await.unwrap();
        let r = read_response(&mut BufReader::new(last)).await.unwrap();
        assert_eq!(r.status, 200);
        drop(idle);

        // With every slot handling a request (bodies that never finish), a new client
        // waits for a slot instead of breaking anything: the body timeout frees them.
        let mut slow = Vec::new();
        for _ in 0..CAP {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let head = "POST /api/v1/alerts HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer hardening-token-0123456789\r\nContent-Length: 100\r\n\r\n{\"alerts\"";
            s.write_all(head.as_bytes()).await.unwrap();
            slow.push(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(8), exchange(addr, &get("/healthz", None)))
            .await
            .expect("a slot frees up")
            .unwrap();
        let waited = t.elapsed();
        println!("with {CAP} requests in progress, a new /healthz waited {waited:?}");
        assert_eq!(r.status, 200);
        assert!(waited >= Duration::from_millis(1000), "the cap held: {waited:?}");
        for s in slow {
            let r = read_response(&mut BufReader::new(s)).await.unwrap();
            r.assert_error(408, "body_timeout");
            assert_eq!(r.json()["field"], "(body)");
        }
        let r = exchange(addr, &get("/healthz", None)).await.unwrap();
        assert_eq!(r.status, 200);
    });
}

#[test]
fn hostile_requests_are_refused_and_the_server_stays_up() {
    let _serial = serial();
    let srv = Srv::start(|c| {
        c.header_read_timeout = Duration::from_secs(2);
        c.body_read_timeout = Duration::from_secs(1);
        c.max_body_bytes = 100_000;
    });
    let addr = srv.addr;
    client_rt().block_on(async move {
        let healthy = || async move {
            let r = exchange(addr, &get("/healthz", None)).await.unwrap();
            assert_eq!(r.status, 200);
        };

        // A huge header, and too many headers: refused before any handler runs.
        let big = format!(
            "GET /healthz HTTP/1.1\r\nHost: vigil\r\nX-Big: {}\r\n\r\n",
            "a".repeat(200_000)
        );
        let r = exchange(addr, big.as_bytes()).await.unwrap();
        assert_eq!(r.status, 431);
        let big_token = format!(
            "GET /api/v1/incidents HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer {}\r\n\r\n",
            "t".repeat(70_000)
        );
        let r = exchange(addr, big_token.as_bytes()).await.unwrap();
        assert_eq!(r.status, 431);
        let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: vigil\r\n");
        for i in 0..500 {
            many.push_str(&format!("X-H{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let r = exchange(addr, many.as_bytes()).await.unwrap();
        assert_eq!(r.status, 431);
        healthy().await;

        // Garbage, and an HTTP/2 preface to an HTTP/1 server.
        let r = exchange(addr, b"\x16\x03\x01 hello\r\n\r\n").await.unwrap();
        assert_eq!(r.status, 400);
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(5)).await.is_some());
        healthy().await;

        // The token counts only in the Authorization header, as a bearer token; one in
        // the URL is refused outright (even beside a good header), so it is not logged
        // into habit.
        for (path, header) in [
            (format!("/api/v1/incidents?token={TOKEN}"), None),
            (format!("/api/v1/incidents?access_token={TOKEN}"), None),
            (format!("/api/v1/incidents?limit=1&API_KEY={TOKEN}"), Some(TOKEN)),
        ] {
            let r = exchange(addr, &get(&path, header)).await.unwrap();
            r.assert_error(400, "token_in_url");
            assert!(r.json()["detail"].as_str().unwrap().contains("Authorization: Bearer"));
        }
        for token in ["tab\tinside-0123456789", "é-not-ascii-0123456789"] {
            exchange(addr, &get("/api/v1/incidents", Some(token)))
                .await
                .unwrap()
                .assert_error(401, "unauthorized");
        }
        let basic = format!(
            "GET /api/v1/incidents HTTP/1.1\r\nHost: vigil\r\nAuthorization: Basic {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        exchange(addr, basic.as_bytes())
            .await
            .unwrap()
            .assert_error(401, "unauthorized");
        exchange(addr, &get("/api/v1/incidents", Some(&TOKEN[..TOKEN.len() - 1])))
            .await
            .unwrap()
            .assert_error(403, "forbidden");
        let r = exchange(addr, &get("/api/v1/incidents", Some(TOKEN))).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.json());

        // A refused request is answered without waiting for its (never sent) body.
        let t = Instant::now();
        let r = exchange(
            addr,
            b"POST /api/v1/alerts HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer nope\r\nContent-Length: 50000\r\n\r\n",
        )
        .await
        .unwrap();
        r.assert_error(403, "forbidden");
        assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());

        // A body sent slowly after its headers, with a length and chunked: 408 once
        // the body timeout is up, and the connection is closed.
        for (head, piece) in [
            (
                format!("POST /api/v1/alerts HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n"),
                &b" "[..],
            ),
            (
                format!("POST /api/v1/alerts HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"),
                &b"1\r\n \r\n"[..],
            ),
        ] {
            let s = TcpStream::connect(addr).await.unwrap();
            let (rd, mut wr) = s.into_split();
            wr.write_all(head.as_bytes()).await.unwrap();
            let t = Instant::now();
            let drip = tokio::spawn(async move {
                for _ in 0..100 {
                    if wr.write_all(piece).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let mut rd = BufReader::new(rd);
            let r = read_response(&mut rd).await.unwrap();
            let took = t.elapsed();
            r.assert_error(408, "body_timeout");
            assert_eq!(r.json()["field"], "(body)");
            assert_eq!(r.header("connection"), Some("close"));
            assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "{took:?}");
            let mut rest = Vec::new();
            let eof = tokio::time::timeout(Duration::from_secs(3), rd.read_to_end(&mut rest)).await;
            assert!(eof.is_ok(), "the connection is closed after a 408");
            drip.abort();
        }

        // HTTP/1.0: answered, then closed.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut all))
            .await
            .expect("closed after the answer")
            .unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("\"ok\""), "{text}");

        // Pipelining: three requests in one write, three answers in order.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut three = Vec::new();
        three.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: vigil\r\n\r\n");
        three.extend_from_slice(
            format!("GET /api/v1/incidents HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
        );
        three.extend_from_slice(b"GET /nope HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer nope\r\n\r\n");
        s.write_all(&three).await.unwrap();
        let mut rd = BufReader::new(s);
        let a = read_response(&mut rd).await.unwrap();
        let b = read_response(&mut rd).await.unwrap();
        let c = read_response(&mut rd).await.unwrap();
        assert_eq!((a.status, b.status), (200, 200));
        c.assert_error(403, "forbidden");
        // The keep-alive connection left idle is closed after the header timeout.
        let mut s = rd.into_inner();
        let closed = closed_within(&mut s, Duration::from_secs(6)).await;
        assert!(closed.is_some_and(|d| d >= Duration::from_millis(1500)), "{closed:?}");

        // A body over the limit, announced: refused without reading it all.
        let r = exchange(addr, &post("/api/v1/alerts", Some(TOKEN), &vec![b' '; 200_000]))
            .await
            .unwrap();
        r.assert_error(413, "too_large");
        healthy().await;
    });
}

#[test]
fn shutdown_is_prompt_with_connections_still_open() {
    let _serial = serial();
    let mut srv = Srv::start(|c| {
        c.header_read_timeout = Duration::from_secs(30);
        c.body_read_timeout = Duration::from_secs(30);
        c.shutdown_timeout = Duration::from_secs(1);
    });
    let addr = srv.addr;
    let rt = client_rt();
    let (idle, slow) = rt.block_on(async move {
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // A request in progress whose body never comes.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(
            format!("POST /api/v1/alerts HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 10\r\n\r\n{{").as_bytes(),
        )
        .await
        .unwrap();
        let r = exchange(addr, &get("/healthz", None)).await.unwrap();
        assert_eq!(r.status, 200);
        (idle, slow)
    });
    let took = srv.shutdown();
    println!("shutdown with 200 idle connections and a stalled request took {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    rt.block_on(async move {
        for mut s in idle {
            assert!(
                closed_within(&mut s, Duration::from_secs(1))
                    .await
                    .is_some()
            );
        }
        let mut slow = slow;
        assert!(
            closed_within(&mut slow, Duration::from_secs(1))
                .await
                .is_some()
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "no longer listening"
        );
    });
}

#[test]
fn a_client_that_stops_reading_its_responses_is_closed_after_the_idle_timeout() {
    let _serial = serial();
    let idle = Duration::from_secs(1);
    let srv = Srv::start(|c| c.idle_timeout = idle);
    let addr = srv.addr;
    client_rt().block_on(async move {
        // Many pipelined requests and a small receive window that is never read: the
        // server's writes stall with no request in progress.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let s = socket.connect(addr).await.unwrap();
        let (_rd, mut wr) = s.into_split();
        let t = Instant::now();
        let writer = tokio::spawn(async move {
            let one = b"GET /healthz HTTP/1.1\r\nHost: vigil\r\n\r\n";
            let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
            for _ in 0..200 {
                if let Err(e) = wr.write_all(&batch).await {
                    return Some(e);
                }
            }
            None
        });
        let ended = tokio::time::timeout(idle + Duration::from_secs(5), writer)
            .await
            .expect("the server stopped the stalled connection")
            .unwrap();
        let took = t.elapsed();
        println!("a client not reading its responses was cut off after {took:?} ({ended:?})");
        assert!(ended.is_some(), "all 200,000 requests were taken");
        assert!(took >= idle, "{took:?}");
        // Others are served all along.
        let r = exchange(addr, &get("/healthz", None)).await.unwrap();
        assert_eq!(r.status, 200);
    });
}
