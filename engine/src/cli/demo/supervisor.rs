//! The demo's target: a small service supervisor on 127.0.0.1 that the bundled
//! remediations call through the `http` plugin, so their effects are real (and
//! printed): restarts, heap snapshots, a database failover, chat messages.
//!
//! HTTP/1.1, one request per connection, JSON bodies. Plain `std::net`: it is a
//! fixture of the demo, not part of vigil's API.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct ServiceState {
    pub restarts: u32,
    pub heap_snapshots: u32,
    pub failovers: u32,
    /// On the demo's (compressed) clock, which the simulated fleet reads.
    pub restarted_at_ms: Option<i64>,
    pub failed_over_at_ms: Option<i64>,
    pub drains: u32,
    pub drained_at_ms: Option<i64>,
}

/// What the supervisor was asked to do, in order, for the demo's summary.
#[derive(Debug, Default)]
pub struct Log {
    pub services: BTreeMap<String, ServiceState>,
    pub chat: Vec<String>,
    pub effects: Vec<String>,
}

pub type Shared = Arc<Mutex<Log>>;

/// Binds `addr` and serves on a thread until the process ends. Each effect is
/// also sent to `tell` (the demo prints it in its timeline).
pub fn start(
    addr: &str,
    now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
    tell: Arc<dyn Fn(String) + Send + Sync>,
) -> std::io::Result<Shared> {
    let listener = TcpListener::bind(addr)?;
    let log: Shared = Arc::default();
    let shared = log.clone();
    std::thread::Builder::new()
        .name("demo-supervisor".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = handle(stream, &shared, now_ms(), tell.as_ref());
            }
        })?;
    Ok(log)
}

fn handle(
    mut stream: TcpStream,
    log: &Shared,
    now_ms: i64,
    tell: &dyn Fn(String),
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0).min(1 << 20);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let (status, answer) = route(&method, &path, &body, log, now_ms, tell);
    let text = answer.to_string();
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        if status < 400 { "OK" } else { "Error" },
        text.len()
    )?;
    stream.flush()
}

fn route(
    method: &str,
    path: &str,
    body: &[u8],
    log: &Shared,
    now_ms: i64,
    tell: &dyn Fn(String),
) -> (u16, Value) {
    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["chat"]) => {
            let msg: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let text = msg["text"].as_str().unwrap_or("").to_string();
            tell(format!("#sre-chat: {text}"));
            log.chat.push(text);
            (200, json!({ "ok": true }))
        }
        ("GET", ["services", name]) => {
            let s = log.services.get(*name).cloned().unwrap_or_default();
            (
                200,
                json!({ "service": name, "healthy": true, "restarts": s.restarts,
                        "heap_snapshots": s.heap_snapshots, "failovers": s.failovers,
                        "restarted_at_ms": s.restarted_at_ms, "failed_over_at_ms": s.failed_over_at_ms,
                        "drained": s.drained_at_ms.is_some(), "drained_at_ms": s.drained_at_ms }),
            )
        }
        ("GET", ["services", name, "slow-queries"]) => (
            200,
            json!({ "service": name, "slow_queries": [
                { "query": "SELECT … FROM orders WHERE customer_id = $1", "mean_ms": 412, "calls": 9120 },
                { "query": "UPDATE inventory SET reserved = …", "mean_ms": 238, "calls": 2210 }
            ]}),
        ),
        (
            "POST",
            [
                "services",
                name,
                what @ ("restart" | "heap-snapshot" | "failover" | "drain"),
            ],
        ) => {
            let s = log.services.entry(name.to_string()).or_default();
            let n = match *what {
                "restart" => {
                    s.restarts += 1;
                    s.restarted_at_ms = Some(now_ms);
                    s.restarts
                }
                "heap-snapshot" => {
                    s.heap_snapshots += 1;
                    s.heap_snapshots
                }
                "drain" => {
                    s.drains += 1;
                    s.drained_at_ms = Some(now_ms);
                    s.drains
                }
                _ => {
                    s.failovers += 1;
                    s.failed_over_at_ms = Some(now_ms);
                    s.failovers
                }
            };
            let effect = format!("{what} of {name} (#{n})");
            tell(format!("supervisor: {effect}"));
            log.effects.push(effect);
            (200, json!({ "service": name, "done": what, "count": n }))
        }
        _ => (
            404,
            json!({ "error": "not_found", "detail": format!("{method} {path}") }),
        ),
    }
}
