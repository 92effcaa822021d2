//! vigil beside a real Alertmanager, on the same machine, in one run (issue 31).
//!
//! Both servers are started here, on free 127.0.0.1 ports with their own temp
//! directories, and killed at the end (also on a panic). One load generator (std
//! threads, one keep-alive `ureq` agent per client) sends the same alerts to each in
//! its native format: vigil `POST /api/v1/alerts` (Alertmanager's webhook v4 body, a
//! bearer token; vigil has no v2-style array endpoint), Alertmanager
//! `POST /api/v2/alerts` (a JSON array of postable alerts). Bodies are serialised
//! before the clock starts.
//!
//! - (a) 1 alert per request, (b) 100 alerts per request, 8 clients each: alerts/s and
//!   p50/p99 request latency; rounds interleaved (vigil, Alertmanager, vigil, …), each
//!   round on freshly started servers; median and range, and the ratio vigil/AM.
//! - (c) with `VIGIL_BENCH_MILLION=1` (or `=N` alerts): N distinct alerts (100 per
//!   request, 8 clients) to each server in turn: ingest rate, peak RSS, then, once
//!   every alert has resolved and its group been flushed, idle CPU % and RSS over 30 s.
//!
//! vigil acknowledges after its store is flushed (fsync); Alertmanager keeps alerts in
//! memory. Both run with the same grouping settings. Figures go to stdout, each beside
//! its target, and to `target/bench-extra/ingest_vs_alertmanager.json`, which
//! `scripts/bench_report.py` adds to its table.
//!
//! Settings: `VIGIL_BENCH_ROUNDS` (3), `VIGIL_BENCH_SECS` (5, per case and server),
//! `VIGIL_BENCH_IDLE_SECS` (30), `VIGIL_BENCH_SETTLE_SECS` (110: resolve_timeout +
//! group_interval + 20 s), `VIGIL_BENCH_MILLION_MAX_SECS` (900, per server).

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";
const CLIENTS: usize = 8;
/// Distinct alerts cycled through in cases (a) and (b).
const POOL: usize = 10_000;
/// Same grouping for both servers.
const GROUP_WAIT: &str = "10s";
const GROUP_INTERVAL: &str = "30s";
const REPEAT_INTERVAL: &str = "4h";
/// Alerts are sent without `endsAt`: each server resolves an alert this long after it
/// last received it (Alertmanager's and vigil's `resolve_timeout`).
const RESOLVE_TIMEOUT_S: u64 = 60;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------- processes

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Vigil,
    Alertmanager,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Vigil => "vigil",
            Kind::Alertmanager => "alertmanager",
        }
    }
}

/// A running server, killed on drop.
struct Server {
    kind: Kind,
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{} exited during the benchmark ({st})", self.kind.name());
        }
    }
}

fn find_alertmanager() -> Option<PathBuf> {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin", "/bin"] {
        let p = Path::new(dir).join("prometheus-alertmanager");
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

fn start_vigil() -> Server {
    let dir = tempfile::tempdir().expect("temp dir for vigil");
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(bundle.join("runbooks")).expect("bundle dir");
    std::fs::write(
        bundle.join("vigil.yaml"),
        format!(
            "apiVersion: vigil/v1\nkind: Config\nalerting:\n  group_by: [alertname, cluster, service]\n  group_wait: {GROUP_WAIT}\n  group_interval: {GROUP_INTERVAL}\n  repeat_interval: {REPEAT_INTERVAL}\n  resolve_timeout: {RESOLVE_TIMEOUT_S}s\n  runbooks: off\napi:\n  max_body_bytes: 16000000\n  rate_limit: 10000000\n"
        ),
    )
    .expect("write vigil.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--config")
        .arg(bundle.join("vigil.yaml"))
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-detectors"])
        .env("VIGIL_TOKEN", TOKEN)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vigil serve");
    let mut out = BufReader::new(child.stdout.take().expect("vigil's stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("vigil's listening line");
    // Keep reading whatever else it prints, so that it never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in vigil's first line {line:?}"))
        .to_string();
    let mut s = Server {
        kind: Kind::Vigil,
        child,
        url: format!("{base}/api/v1/alerts"),
        _dir: dir,
    };
    wait_ready(&mut s, &format!("{base}/readyz"));
    s
}

fn start_alertmanager(bin: &Path) -> Server {
    let dir = tempfile::tempdir().expect("temp dir for alertmanager");
    let d = dir.path();
    std::fs::write(
        d.join("alertmanager.yml"),
        format!(
            "global:\n  resolve_timeout: {RESOLVE_TIMEOUT_S}s\nroute:\n  receiver: blackhole\n  group_by: [alertname, cluster, service]\n  group_wait: {GROUP_WAIT}\n  group_interval: {GROUP_INTERVAL}\n  repeat_interval: {REPEAT_INTERVAL}\nreceivers:\n  - name: blackhole\n"
        ),
    )
    .expect("write alertmanager.yml");
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!(
            "--config.file={}",
            d.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", d.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus-alertmanager");
    let base = format!("http://127.0.0.1:{port}");
    let mut s = Server {
        kind: Kind::Alertmanager,
        child,
        url: format!("{base}/api/v2/alerts"),
        _dir: dir,
    };
    wait_ready(&mut s, &format!("{base}/-/ready"));
    s
}

fn wait_ready(s: &mut Server, url: &str) {
    let a = agent();
    let start = Instant::now();
    loop {
        s.alive();
        if let Ok(r) = a.get(url).call()
            && r.status().as_u16() == 200
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} not ready after 30 s",
            s.kind.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(kind: Kind, am: &Path) -> Server {
    match kind {
        Kind::Vigil => start_vigil(),
        Kind::Alertmanager => start_alertmanager(am),
    }
}

// ---------------------------------------------------------------- /proc

/// (utime + stime) in clock ticks, from `/proc/<pid>/stat` (or a task's).
fn cpu_ticks(stat_path: &str) -> Option<(String, u64)> {
    let s = std::fs::read_to_string(stat_path).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
    // Fields after the comm start at field 3 (state); utime is field 14, stime 15.
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some((comm, ut + st))
}

fn proc_cpu(pid: u32) -> u64 {
    cpu_ticks(&format!("/proc/{pid}/stat"))
        .map(|(_, t)| t)
        .unwrap_or(0)
}

/// Per live thread: tid → (name, ticks).
fn thread_cpu(pid: u32) -> std::collections::HashMap<String, (String, u64)> {
    let mut out = std::collections::HashMap::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            let tid = e.file_name().to_string_lossy().to_string();
            if let Some(v) = cpu_ticks(&format!("/proc/{pid}/task/{tid}/stat")) {
                out.insert(tid, v);
            }
        }
    }
    out
}

/// CPU ticks spent between two snapshots, by thread name (threads alive at the end).
fn thread_delta(
    before: &std::collections::HashMap<String, (String, u64)>,
    after: &std::collections::HashMap<String, (String, u64)>,
) -> Vec<(String, u64, usize)> {
    let mut by: std::collections::BTreeMap<String, (u64, usize)> = Default::default();
    for (tid, (name, t)) in after {
        let b = before.get(tid).map_or(0, |(_, t)| *t);
        let e = by.entry(name.clone()).or_default();
        e.0 += t.saturating_sub(b);
        e.1 += 1;
    }
    let mut v: Vec<_> = by.into_iter().map(|(n, (t, c))| (n, t, c)).collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    v
}

/// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------- alerts and bodies

/// The labels of alert `i`: 100 alert names × 1,000 services (1,000 groups of
/// alertname × cluster × service), one instance per alert.
fn labels(i: usize) -> Value {
    json!({
        "alertname": format!("BenchAlert{}", i % 100),
        "service": format!("svc{}", i % 1000),
        "cluster": "bench",
        "instance": format!("host{i}:9100"),
        "job": "node",
        "severity": if i.is_multiple_of(7) { "critical" } else { "warning" },
    })
}

fn alert_json(i: usize, starts_at: &str, with_status: bool) -> Value {
    let mut a = json!({
        "labels": labels(i),
        "annotations": {"summary": format!("bench alert {i}"), "runbook": "none"},
        "startsAt": starts_at,
        "generatorURL": "http://prometheus.bench:9090/graph?g0.expr=up",
    });
    if with_status {
        a["status"] = json!("firing");
    }
    a
}

/// One request's body carrying alerts `ids`, in `kind`'s native format.
fn body(kind: Kind, ids: std::ops::Range<usize>, starts_at: &str) -> Vec<u8> {
    let v = match kind {
        Kind::Alertmanager => Value::Array(ids.map(|i| alert_json(i, starts_at, false)).collect()),
        Kind::Vigil => json!({
            "version": "4", "status": "firing", "receiver": "bench", "groupKey": "{}:{}",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager.bench:9093", "truncatedAlerts": 0,
            "alerts": ids.map(|i| alert_json(i, starts_at, true)).collect::<Vec<_>>(),
        }),
    };
    serde_json::to_vec(&v).expect("serialise a body")
}

// ---------------------------------------------------------------- load generator

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .max_idle_connections_per_host(4)
        .build()
        .into()
}

struct Load {
    alerts: usize,
    requests: usize,
    elapsed: Duration,
    /// Per request, microseconds, sorted.
    lat_us: Vec<u32>,
    server_cpu_ticks: u64,
    client_cpu_ticks: u64,
}

impl Load {
    fn rate(&self) -> f64 {
        self.alerts as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat_us.len() as f64 * p) as usize).min(self.lat_us.len() - 1);
        self.lat_us[i] as f64 / 1000.0
    }
}

/// What the clients send: bodies taken in turn (`Cycle`, for a time) or each once
/// (`Once`, until all are sent or a deadline).
#[derive(Clone, Copy)]
enum Plan {
    Cycle(Duration),
    Once(Duration),
}

/// `CLIENTS` threads, each with its own keep-alive connection, posting `bodies`.
fn load(s: &mut Server, bodies: &Arc<Vec<Vec<u8>>>, per_body: usize, plan: Plan) -> Load {
    s.alive();
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let server = Arc::new((s.url.clone(), s.kind));
    let cpu0 = proc_cpu(s.pid());
    let me0 = proc_cpu(std::process::id());
    let start = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (bodies, next, stop, server) =
                (bodies.clone(), next.clone(), stop.clone(), server.clone());
            std::thread::spawn(move || {
                let a = agent();
                let target = Server0 {
                    url: server.0.clone(),
                    kind: server.1,
                };
                let mut lat = Vec::new();
                let mut n = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let b = match plan {
                        Plan::Cycle(d) => {
                            if start.elapsed() >= d {
                                break;
                            }
                            &bodies[i % bodies.len()]
                        }
                        Plan::Once(d) => {
                            if i >= bodies.len() || start.elapsed() >= d {
                                break;
                            }
                            &bodies[i]
                        }
                    };
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let t = Instant::now();
                    target.send(&a, b);
                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    n += 1;
                }
                (n, lat)
            })
        })
        .collect();
    let mut requests = 0;
    let mut lat_us = Vec::new();
    for t in threads {
        match t.join() {
            Ok((n, l)) => {
                requests += n;
                lat_us.extend(l);
            }
            Err(p) => {
                stop.store(true, Ordering::Relaxed);
                std::panic::resume_unwind(p);
            }
        }
    }
    let elapsed = start.elapsed();
    lat_us.sort_unstable();
    Load {
        alerts: requests * per_body,
        requests,
        elapsed,
        lat_us,
        server_cpu_ticks: proc_cpu(s.pid()).saturating_sub(cpu0),
        client_cpu_ticks: proc_cpu(std::process::id()).saturating_sub(me0),
    }
}

/// What a client thread needs of a [`Server`] (which is not `Send`-shareable).
struct Server0 {
    url: String,
    kind: Kind,
}

impl Server0 {
    fn send(&self, a: &ureq::Agent, b: &[u8]) {
        let mut req = a.post(&self.url).content_type("application/json");
        if self.kind == Kind::Vigil {
            req = req.header("Authorization", &format!("Bearer {TOKEN}"));
        }
        let r = req
            .send(b)
            .unwrap_or_else(|e| panic!("POST to {}: {e}", self.kind.name()));
        let code = r.status().as_u16();
        let mut text = Vec::new();
        let _ = r.into_body().into_reader().read_to_end(&mut text);
        assert!(
            code == 200,
            "{} answered {code}: {}",
            self.kind.name(),
            String::from_utf8_lossy(&text)
        );
    }
}

// ---------------------------------------------------------------- reporting

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

fn range(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v >= 100_000.0 {
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Rows for `scripts/bench_report.py`: id, what, figure, target, result.
#[derive(Default)]
struct Rows(Vec<Value>);

impl Rows {
    fn add(&mut self, id: &str, what: &str, figure: String, target: &str, result: &str) {
        println!("vs-am {id}: {figure}   (target {target}: {result})");
        self.0.push(
            json!({"id": id, "what": what, "figure": figure, "target": target, "result": result}),
        );
    }

    fn write(&self, note: &str) {
        let dir = target_dir().join("bench-extra");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("ingest_vs_alertmanager.json");
        let v = json!({"note": note, "rows": self.0});
        match std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap_or_default()) {
            Ok(()) => println!("vs-am: figures written to {}", path.display()),
            Err(e) => println!("vs-am: could not write {}: {e}", path.display()),
        }
    }
}

/// `target/` (the vigil binary is `target/release/vigil`).
fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_vigil"));
    bin.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "pass" } else { "SHORT" }
}

// ---------------------------------------------------------------- cases

fn starts_at() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn per_request_cases(am: &Path, rows: &mut Rows) {
    let rounds = env_num("VIGIL_BENCH_ROUNDS", 3).max(1) as usize;
    let secs = env_num("VIGIL_BENCH_SECS", 5).max(1);
    let at = starts_at();
    let cases: [(usize, &str); 2] = [(1, "1_per_request"), (100, "100_per_request")];
    // bodies[kind][case]
    let mk = |kind: Kind, per: usize| -> Arc<Vec<Vec<u8>>> {
        Arc::new(
            (0..POOL / per)
                .map(|j| body(kind, j * per..(j + 1) * per, &at))
                .collect(),
        )
    };
    let bodies = [
        [mk(Kind::Vigil, 1), mk(Kind::Vigil, 100)],
        [mk(Kind::Alertmanager, 1), mk(Kind::Alertmanager, 100)],
    ];
    // results[kind][case] = per round (alerts/s, p50 ms, p99 ms, server CPU-s per 1k alerts)
    let mut results = vec![vec![Vec::<(f64, f64, f64, f64)>::new(); 2]; 2];
    let hz = clock_ticks();
    println!(
        "vs-am: {rounds} interleaved rounds, {secs} s per case and server after a 1 s warm-up, {CLIENTS} keep-alive clients, {POOL} distinct alerts cycled"
    );
    for round in 0..rounds {
        for (k, kind) in [Kind::Vigil, Kind::Alertmanager].into_iter().enumerate() {
            let mut s = start(kind, am);
            for (c, (per, name)) in cases.iter().enumerate() {
                let b = &bodies[k][c];
                load(&mut s, b, *per, Plan::Cycle(Duration::from_secs(1)));
                let l = load(&mut s, b, *per, Plan::Cycle(Duration::from_secs(secs)));
                let cpu_per_k = l.server_cpu_ticks as f64 / hz / (l.alerts as f64 / 1000.0);
                println!(
                    "vs-am: round {} {:<12} {name:<16} {:>9} alerts/s  p50 {:>7.3} ms  p99 {:>7.3} ms  ({} requests; server CPU {:.1} s = {:.1} ms per 1k alerts; load generator CPU {:.1} s)",
                    round + 1,
                    kind.name(),
                    num(l.rate()),
                    l.pct(0.50),
                    l.pct(0.99),
                    l.requests,
                    l.server_cpu_ticks as f64 / hz,
                    cpu_per_k * 1000.0,
                    l.client_cpu_ticks as f64 / hz,
                );
                results[k][c].push((l.rate(), l.pct(0.50), l.pct(0.99), cpu_per_k * 1000.0));
            }
        }
    }
    for (c, (per, name)) in cases.iter().enumerate() {
        let col = |k: usize, f: fn(&(f64, f64, f64, f64)) -> f64| -> Vec<f64> {
            results[k][c].iter().map(f).collect()
        };
        let (vr, ar) = (col(0, |r| r.0), col(1, |r| r.0));
        let ratios: Vec<f64> = vr.iter().zip(&ar).map(|(v, a)| v / a).collect();
        let ratio = median(&vr) / median(&ar);
        let fmt_range = |v: &[f64], unit: &str| {
            let (lo, hi) = range(v);
            format!("{} {unit} ({}–{})", num(median(v)), num(lo), num(hi))
        };
        let what = format!("{per} alert(s) per request, {CLIENTS} clients");
        rows.add(
            &format!("vs_am/{name}/vigil_alerts_per_s"),
            &format!("vigil ingest (durable, fsync), {what}"),
            fmt_range(&vr, "alerts/s"),
            "—",
            "measured",
        );
        rows.add(
            &format!("vs_am/{name}/alertmanager_alerts_per_s"),
            &format!("Alertmanager ingest (in memory), {what}"),
            fmt_range(&ar, "alerts/s"),
            "—",
            "measured",
        );
        for (k, who) in [(0, "vigil"), (1, "alertmanager")] {
            rows.add(
                &format!("vs_am/{name}/{who}_latency_ms"),
                &format!("{who} request latency p50 / p99, {what}"),
                format!(
                    "p50 {} ms ({}–{}), p99 {} ms ({}–{})",
                    num(median(&col(k, |r| r.1))),
                    num(range(&col(k, |r| r.1)).0),
                    num(range(&col(k, |r| r.1)).1),
                    num(median(&col(k, |r| r.2))),
                    num(range(&col(k, |r| r.2)).0),
                    num(range(&col(k, |r| r.2)).1),
                ),
                "—",
                "measured",
            );
            rows.add(
                &format!("vs_am/{name}/{who}_cpu_ms_per_1k_alerts"),
                &format!("{who} server CPU per 1,000 alerts, {what}"),
                fmt_range(&col(k, |r| r.3), "ms"),
                "—",
                "measured",
            );
        }
        let (lo, hi) = range(&ratios);
        rows.add(
            &format!("vs_am/{name}/ratio"),
            &format!("ratio vigil / Alertmanager, alerts/s, {what}"),
            format!("{ratio:.2} (per round {lo:.2}–{hi:.2})"),
            "≥ 1.00",
            verdict(ratio >= 1.0),
        );
    }
}

struct Million {
    rate: f64,
    sent: usize,
    complete: bool,
    p50: f64,
    p99: f64,
    hwm_after_ingest_kib: u64,
    rss_after_ingest_kib: u64,
    hwm_kib: u64,
    rss_idle_kib: u64,
    idle_cpu_pct: f64,
    ingest_cpu_s: f64,
}

fn million_one(kind: Kind, am: &Path, n: usize, idle: Duration) -> Million {
    const PER: usize = 100;
    let hz = clock_ticks();
    let at = starts_at();
    let t = Instant::now();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..n.div_ceil(PER))
            .map(|j| body(kind, j * PER..((j + 1) * PER).min(n), &at))
            .collect(),
    );
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "vs-am: million {}: {} bodies, {:.0} MB, built in {:.1} s",
        kind.name(),
        bodies.len(),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let mut s = start(kind, am);
    let pid = s.pid();
    println!(
        "vs-am: million {}: started, RSS {} MiB",
        kind.name(),
        status_kib(pid, "VmRSS") / 1024
    );
    let threads0 = thread_cpu(pid);
    let bound = Duration::from_secs(env_num("VIGIL_BENCH_MILLION_MAX_SECS", 900));
    let l = load(&mut s, &bodies, PER, Plan::Once(bound));
    let sent = l.requests * PER;
    let complete = l.requests == bodies.len();
    drop(bodies);
    let hwm1 = status_kib(pid, "VmHWM");
    let rss1 = status_kib(pid, "VmRSS");
    println!(
        "vs-am: million {}: {} alerts in {:.1} s = {} alerts/s{}; p50 {:.2} ms p99 {:.2} ms; server CPU {:.1} s, load generator CPU {:.1} s; VmHWM {} MiB, VmRSS {} MiB",
        kind.name(),
        sent,
        l.elapsed.as_secs_f64(),
        num(l.rate()),
        if complete {
            ""
        } else {
            " (stopped at the time bound)"
        },
        l.pct(0.5),
        l.pct(0.99),
        l.server_cpu_ticks as f64 / hz,
        l.client_cpu_ticks as f64 / hz,
        hwm1 / 1024,
        rss1 / 1024,
    );
    let threads1 = thread_cpu(pid);
    let by = thread_delta(&threads0, &threads1);
    let shown: Vec<String> = by
        .iter()
        .take(8)
        .map(|(name, t, c)| format!("{name}×{c} {:.1} s", *t as f64 / hz))
        .collect();
    println!(
        "vs-am: million {}: ingest CPU by thread name (live threads): {}",
        kind.name(),
        shown.join(", ")
    );
    // Every alert resolves RESOLVE_TIMEOUT_S after it was received; its group is
    // flushed (resolved notification) within group_interval after that. Wait for both
    // and a margin, watching memory, then measure the idle process.
    let settle = Duration::from_secs(env_num(
        "VIGIL_BENCH_SETTLE_SECS",
        RESOLVE_TIMEOUT_S + 30 + 20,
    ));
    let t = Instant::now();
    let cpu_settle0 = proc_cpu(pid);
    while t.elapsed() < settle {
        s.alive();
        std::thread::sleep(Duration::from_secs(5));
    }
    let settle_cpu = proc_cpu(pid).saturating_sub(cpu_settle0) as f64 / hz;
    println!(
        "vs-am: million {}: {:.0} s for the alerts to resolve and their groups to flush: server CPU {:.1} s, VmRSS {} MiB",
        kind.name(),
        settle.as_secs_f64(),
        settle_cpu,
        status_kib(pid, "VmRSS") / 1024,
    );
    let c0 = proc_cpu(pid);
    let t0 = Instant::now();
    let mut rss_max = 0;
    while t0.elapsed() < idle {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(status_kib(pid, "VmRSS"));
    }
    s.alive();
    let idle_ticks = proc_cpu(pid).saturating_sub(c0);
    let idle_cpu_pct = idle_ticks as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    let m = Million {
        rate: l.rate(),
        sent,
        complete,
        p50: l.pct(0.5),
        p99: l.pct(0.99),
        hwm_after_ingest_kib: hwm1,
        rss_after_ingest_kib: rss1,
        hwm_kib: status_kib(pid, "VmHWM"),
        rss_idle_kib: rss_max,
        idle_cpu_pct,
        ingest_cpu_s: l.server_cpu_ticks as f64 / hz,
    };
    println!(
        "vs-am: million {}: idle {:.0} s: CPU {:.2}% of one core, VmRSS {} MiB, VmHWM {} MiB",
        kind.name(),
        idle.as_secs_f64(),
        m.idle_cpu_pct,
        m.rss_idle_kib / 1024,
        m.hwm_kib / 1024
    );
    drop(s);
    m
}

fn million(am: &Path, n: usize, rows: &mut Rows) {
    let idle = Duration::from_secs(env_num("VIGIL_BENCH_IDLE_SECS", 30));
    println!(
        "vs-am: million: {n} distinct alerts (1,000 groups), 100 per request, {CLIENTS} clients, to vigil then Alertmanager; no endsAt: each resolves {RESOLVE_TIMEOUT_S} s after it arrived (resolve_timeout), then idle for {} s",
        idle.as_secs()
    );
    let v = million_one(Kind::Vigil, am, n, idle);
    let a = million_one(Kind::Alertmanager, am, n, idle);
    let mib = |k: u64| k as f64 / 1024.0;
    let what = format!(
        "{} distinct alerts, 100 per request, {CLIENTS} clients",
        num(n as f64)
    );
    for (who, m) in [("vigil", &v), ("alertmanager", &a)] {
        rows.add(
            &format!("vs_am/million/{who}_alerts_per_s"),
            &format!("{who} ingest rate, {what}"),
            format!(
                "{} alerts/s{} (p50 {} ms, p99 {} ms; server CPU {:.1} s)",
                num(m.rate),
                if m.complete {
                    String::new()
                } else {
                    format!(", only {} sent in the time bound", m.sent)
                },
                num(m.p50),
                num(m.p99),
                m.ingest_cpu_s
            ),
            "—",
            "measured",
        );
        rows.add(
            &format!("vs_am/million/{who}_rss_mib"),
            &format!("{who} memory, {what}"),
            format!(
                "peak {} MiB (VmHWM; {} MiB right after ingest, RSS then {} MiB), idle RSS {} MiB",
                num(mib(m.hwm_kib)),
                num(mib(m.hwm_after_ingest_kib)),
                num(mib(m.rss_after_ingest_kib)),
                num(mib(m.rss_idle_kib))
            ),
            "—",
            "measured",
        );
        rows.add(
            &format!("vs_am/million/{who}_idle_cpu_pct"),
            &format!("{who} idle CPU after the alerts resolved"),
            format!("{:.2} % of one core", m.idle_cpu_pct),
            "—",
            "measured",
        );
    }
    rows.add(
        "vs_am/million/ratio_rate",
        &format!("ratio vigil / Alertmanager, ingest rate, {what}"),
        format!("{:.2}", v.rate / a.rate),
        "≥ 1.00",
        verdict(v.rate >= a.rate && v.complete),
    );
    rows.add(
        "vs_am/million/ratio_peak_rss",
        "ratio vigil / Alertmanager, peak RSS (lower is better)",
        format!("{:.2}", v.hwm_kib as f64 / a.hwm_kib as f64),
        "≤ 1.00",
        verdict(v.hwm_kib <= a.hwm_kib),
    );
    rows.add(
        "vs_am/million/ratio_idle_rss",
        "ratio vigil / Alertmanager, idle RSS after resolve (lower is better)",
        format!("{:.2}", v.rss_idle_kib as f64 / a.rss_idle_kib as f64),
        "≤ 1.00",
        verdict(v.rss_idle_kib <= a.rss_idle_kib),
    );
    rows.add(
        "vs_am/million/idle_cpu",
        "idle CPU after resolve, vigil vs Alertmanager (lower is better)",
        format!("{:.2} % vs {:.2} %", v.idle_cpu_pct, a.idle_cpu_pct),
        "vigil ≤ Alertmanager",
        // Within one clock tick over the window counts as equal.
        verdict(v.idle_cpu_pct <= a.idle_cpu_pct + 100.0 / clock_ticks() / idle.as_secs_f64()),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument other than ours skips the run.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty()
        && !args
            .iter()
            .any(|a| "ingest_vs_alertmanager".contains(a.as_str()) || a.contains("vs_am"))
    {
        return;
    }
    let Some(am) = find_alertmanager() else {
        println!(
            "vs-am: SKIPPED: `prometheus-alertmanager` is not installed (apt-get install prometheus-alertmanager; .ci/run installs it)"
        );
        return;
    };
    let version = Command::new(&am)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).to_string();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").to_string()
        })
        .unwrap_or_default();
    let note = format!(
        "vigil acknowledges after its store is flushed (fsync); Alertmanager ({version}) keeps alerts in memory (snapshots only silences and the notification log). Same machine, 127.0.0.1, same alerts in each server's native format, same grouping (alertname, cluster, service; group_wait {GROUP_WAIT}, group_interval {GROUP_INTERVAL}), vigil's rate limit raised for the bench."
    );
    println!("vs-am: {note}");
    let mut rows = Rows::default();
    per_request_cases(&am, &mut rows);
    match std::env::var("VIGIL_BENCH_MILLION").ok().as_deref() {
        None | Some("") | Some("0") => println!(
            "vs-am: the 1,000,000-alert case is opt-in: VIGIL_BENCH_MILLION=1 (or =N alerts)"
        ),
        Some(v) => {
            let n = match v.trim().parse::<usize>() {
                Ok(n) if n > 1 => n,
                _ => 1_000_000,
            };
            million(&am, n, &mut rows);
        }
    }
    rows.write(&note);
}
