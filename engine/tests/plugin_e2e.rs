//! Real plugins against real local targets: the `prometheus` connector and
//! `prometheus/query` action against a real Prometheus server (started here on
//! 127.0.0.1), and the `http` action against a local receiver that records what
//! it got. A dry-run (plan only) must make zero side-effecting requests.

mod common;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vigil_core::action::{ActionCall, ActionCatalog};
use vigil_plugin_host::{
    Connector, HostOptions, InstanceConfig, PluginCatalog, PluginHost, TimeRange,
};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// A Prometheus server on a free port, scraping itself every second; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn start_prometheus() -> Prometheus {
    let dir = tempfile::tempdir().expect("tmp");
    let port = common::free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .expect("write config");
    let child = Command::new("/usr/bin/prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start /usr/bin/prometheus (apt-get install prometheus)");
    let p = Prometheus {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // Ready, and the first self-scrape stored.
    loop {
        assert!(
            Instant::now() < deadline,
            "prometheus did not become ready with data in 60 s"
        );
        if let Some((200, body)) = http_get(port, "/api/v1/query?query=up")
            && body.contains("\"value\"")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    p
}

#[derive(Clone, Debug)]
struct Received {
    method: String,
    path: String,
    body: String,
}

/// A tiny HTTP receiver on 127.0.0.1 that records every request.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let rec = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let path = parts.next().unwrap_or_default().to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                rec.lock().expect("lock").push(Received {
                    method,
                    path: path.clone(),
                    body: String::from_utf8_lossy(&body).into(),
                });
                let (status, reply) = if path.contains("pagerduty") {
                    ("202 Accepted", r#"{"status":"success","dedup_key":"k1"}"#)
                } else {
                    ("200 OK", r#"{"ok":true}"#)
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        Receiver { port, got }
    }

    fn requests(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    fn side_effects(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method != "GET" && r.method != "HEAD")
            .count()
    }
}

fn catalog(prom_port: u16, recv_port: u16, cache: PathBuf) -> PluginCatalog {
    let host = PluginHost::new(HostOptions {
        cache_dir: Some(cache),
        ..HostOptions::default()
    })
    .expect("host");
    let prom: InstanceConfig = serde_json::from_value(json!({
        "name": "prometheus",
        "config": { "url": format!("http://127.0.0.1:{prom_port}") },
        "grants": { "clock": true, "http": [{ "url": format!("http://127.0.0.1:{prom_port}/api/v1/*"), "methods": ["GET"] }] },
    }))
    .expect("prometheus instance");
    let http: InstanceConfig = serde_json::from_value(json!({
        "name": "notify",
        "plugin": "http",
        "config": { "slack_url": format!("http://127.0.0.1:{recv_port}/slack"), "pagerduty_url": format!("http://127.0.0.1:{recv_port}/pagerduty") },
        "grants": { "http": [{ "url": format!("http://127.0.0.1:{recv_port}/*"), "methods": ["GET", "POST"] }] },
    }))
    .expect("http instance");
    PluginCatalog::load(&host, &[common::plugin_dir().to_path_buf()], &[prom, http])
        .expect("catalog")
}

/// One step of a runbook-shaped flow: resolve `uses`, validate, plan; execute only live.
fn step(
    rt: &tokio::runtime::Runtime,
    cat: &PluginCatalog,
    uses: &str,
    input: Value,
    live: bool,
) -> (Value, Option<Value>) {
    let action = cat
        .resolve(uses)
        .unwrap_or_else(|| panic!("{uses} resolves"));
    action
        .validate(&input)
        .unwrap_or_else(|e| panic!("{uses} validate: {e}"));
    let plan = rt
        .block_on(action.plan(&input))
        .unwrap_or_else(|e| panic!("{uses} plan: {e}"));
    let plan_json = serde_json::to_value(&plan).expect("plan json");
    if !live {
        return (plan_json, plan.preview.clone());
    }
    let out = rt
        .block_on(action.execute(ActionCall {
            execution_id: "x1".into(),
            step_id: uses.into(),
            attempt: 1,
            input,
            plan,
            deadline: None,
        }))
        .unwrap_or_else(|e| panic!("{uses} execute: {e}"));
    (plan_json, Some(out))
}

#[test]
fn prometheus_and_http_plugins_against_real_servers() {
    let prom = start_prometheus();
    let recv = Receiver::start();
    let cache = tempfile::tempdir().expect("cache dir");
    let cat = catalog(prom.port, recv.port, cache.path().to_path_buf());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");

    // Connector: instant and range queries.
    let conn = cat.connector("prometheus").expect("prometheus connector");
    let now = now_ms();
    let b = conn
        .fetch("up{job=\"prometheus\"}", TimeRange::instant(now))
        .expect("instant query");
    assert_eq!(b.series.len(), 1, "{b:?}");
    assert_eq!(
        b.series[0].labels.get("job").map(String::as_str),
        Some("prometheus")
    );
    assert_eq!(b.series[0].samples[0].value, 1.0);
    std::thread::sleep(Duration::from_secs(2));
    let now = now_ms();
    let r = conn
        .fetch(
            "prometheus_build_info",
            TimeRange::range(now - 5_000, now, 1_000),
        )
        .expect("range query");
    assert!(r.series[0].samples.len() >= 2, "range has samples: {r:?}");
    assert!(
        r.series[0]
            .samples
            .windows(2)
            .all(|w| w[1].timestamp - w[0].timestamp == 1_000)
    );
    let err = conn
        .fetch("up{", TimeRange::instant(now))
        .expect_err("bad PromQL");
    assert!(
        err.to_string().contains("parse error") || err.to_string().contains("bad_data"),
        "{err}"
    );
    let async_batch = rt
        .block_on(conn.fetch_async("up".into(), TimeRange::instant(now)))
        .expect("async fetch");
    assert!(!async_batch.series.is_empty());
    weeks_of_history_through_the_runner(&rt, &conn);

    // A runbook-shaped flow: measure → notify (Slack) → page (PagerDuty) → webhook.
    let flow = |live: bool| -> Vec<(Value, Option<Value>)> {
        let (measure_plan, measure) = step(
            &rt,
            &cat,
            "prometheus/query",
            json!({ "query": "up{job=\"prometheus\"}" }),
            live,
        );
        let value = measure
            .as_ref()
            .and_then(|m| m["value"].as_f64())
            .expect("measure has a value (preview in dry-run)");
        assert_eq!(value, 1.0);
        let text = format!("prometheus up = {value}");
        vec![
            (measure_plan, measure),
            step(
                &rt,
                &cat,
                "notify/slack",
                json!({ "text": text, "channel": "#ops" }),
                live,
            ),
            step(
                &rt,
                &cat,
                "notify/pagerduty",
                json!({ "routing_key": "R0UT1NG", "summary": text, "source": "vigil-test", "severity": "warning", "dedup_key": "k1" }),
                live,
            ),
            step(
                &rt,
                &cat,
                "notify/webhook",
                json!({ "url": format!("http://127.0.0.1:{}/hook", recv.port), "payload": { "value": value } }),
                live,
            ),
        ]
    };

    // Dry-run: plans only. Zero side-effecting requests reach the receiver.
    let dry = flow(false);
    assert_eq!(
        recv.side_effects(),
        0,
        "dry-run reached the receiver: {:?}",
        recv.requests()
    );
    assert!(recv.requests().is_empty());
    assert_eq!(
        dry[1].0["steps"][0]["effects"],
        json!([format!("http:POST http://127.0.0.1:{}/slack", recv.port)])
    );
    assert_eq!(dry[2].0["steps"][0]["risk"], json!("medium"));
    assert!(
        dry[0].0["summary"]
            .as_str()
            .expect("summary")
            .contains("read-only PromQL query")
    );

    // Live run: exactly the planned requests, with the right shapes.
    let live = flow(true);
    let got = recv.requests();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str()),
        ("POST", "/slack")
    );
    let slack: Value = serde_json::from_str(&got[0].body).expect("slack json");
    assert_eq!(
        slack,
        json!({ "text": "prometheus up = 1", "channel": "#ops" })
    );
    let pd: Value = serde_json::from_str(&got[1].body).expect("pd json");
    assert_eq!(got[1].path, "/pagerduty");
    assert_eq!(pd["routing_key"], "R0UT1NG");
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["payload"]["severity"], "warning");
    assert_eq!(pd["payload"]["source"], "vigil-test");
    assert_eq!(live[2].1.as_ref().expect("pd output")["status"], json!(202));
    let hook: Value = serde_json::from_str(&got[2].body).expect("hook json");
    assert_eq!(hook, json!({ "value": 1.0 }));

    // The notify instance may not reach Prometheus: not granted.
    let action = cat.resolve("notify/request").expect("request action");
    let err = rt
        .block_on(action.plan(
            &json!({ "url": format!("http://127.0.0.1:{}/api/v1/query?query=up", prom.port) }),
        ))
        .map(|_| ());
    assert!(err.is_ok(), "a GET request plans without contacting anyone");
    let err = rt
        .block_on(action.execute(ActionCall {
            execution_id: "x".into(),
            step_id: "s".into(),
            attempt: 1,
            input: json!({ "url": format!("http://127.0.0.1:{}/api/v1/query?query=up", prom.port) }),
            plan: Default::default(),
            deadline: None,
        }))
        .expect_err("not granted");
    assert!(
        err.to_string().contains("grants: { http: [{ url: "),
        "{err}"
    );

    runbook_through_the_cli(prom.port, &recv);
}

/// A detector with `history: 8w` against the real Prometheus: eight weeks at the
/// connector's 60 s step are 80,640 points, which Prometheus refuses in one query
/// ("exceeded maximum resolution of 11,000 points per timeseries"; the runner's first
/// run fails that way when its fetch span is longer than the history), so the runner
/// reads them a day at a time (57 queries) and gets the seconds of data this
/// Prometheus holds, with no error and no alert.
fn weeks_of_history_through_the_runner(rt: &tokio::runtime::Runtime, conn: &Connector) {
    use std::collections::HashMap;
    use vigil::daemon::ConnectorSource;
    use vigil_core::Clock;
    use vigil_runtime::runner::{RunnerConfig, RunnerStats, run};

    let now = now_ms();
    let weeks = 8 * 7 * 86_400_000i64;
    let err = conn
        .fetch("up", TimeRange::range(now - weeks, now, 60_000))
        .expect_err("more points than Prometheus gives in one query");
    assert!(
        err.to_string().contains("11,000") || err.to_string().contains("maximum resolution"),
        "{err}"
    );
    let text = "apiVersion: vigil/v1\nkind: Detector\nname: weeks\nschedule: \"* * * * * *\"\nsource: prom\nquery: 'up{job=\"prometheus\"}'\nhistory: 8w\nmodel: { anomaly: { method: ensemble } }\nalert: { name: Weeks }\n";
    let bundle = vigil_bundle::Bundle::from_source(std::path::Path::new("weeks.yaml"), text);
    assert!(!bundle.has_errors(), "{:?}", bundle.diagnostics);
    let mut sources: vigil_runtime::runner::Sources = HashMap::new();
    sources.insert("prom".into(), Arc::new(ConnectorSource(conn.clone())));
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runner = rt.spawn(run(
        bundle.detectors.clone(),
        sources,
        Clock::scaled(now, 1.0),
        RunnerConfig::default(),
        tx,
        stop_rx,
        Arc::new(RunnerStats::default()),
    ));
    // A timer is made inside the runtime (`block_on(async { … })`), not before it.
    let first = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), rx.recv()).await })
        .expect("a first run within a minute")
        .expect("a report");
    assert_eq!(first.error, None, "{first:?}");
    assert_eq!(first.series, 1, "{first:?}");
    assert!(first.points >= 1, "{first:?}");
    assert!(
        first.detections.is_empty(),
        "history never alerts: {first:?}"
    );
    stop_tx.send(true).expect("stop");
    drop(rx);
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), runner).await })
        .expect("the runner stops")
        .expect("no panic");
}

/// The same, as a user runs it: a bundle whose `sources:` configure the plugins,
/// a runbook whose steps use them, `vigil dry-run` then `vigil run`.
fn runbook_through_the_cli(prom_port: u16, recv: &Receiver) {
    let before = recv.requests().len();
    let dir = tempfile::tempdir().expect("bundle dir");
    std::fs::create_dir_all(dir.path().join("runbooks")).expect("mkdir");
    let plugin_dir = common::plugin_dir().display().to_string();
    std::fs::write(
        dir.path().join("vigil.yaml"),
        format!(
            r#"apiVersion: vigil/v1
kind: Config
store: store
plugins:
  dirs: ["{plugin_dir}"]
sources:
  - name: prometheus
    config: {{ url: "http://127.0.0.1:{prom_port}" }}
    grants:
      clock: true
      http: [{{ url: "http://127.0.0.1:{prom_port}/api/v1/*", methods: [GET] }}]
  - name: notify
    plugin: http
    config: {{ slack_url: "http://127.0.0.1:{rport}/slack" }}
    grants:
      http: [{{ url: "http://127.0.0.1:{rport}/*", methods: [POST] }}]
"#,
            rport = recv.port
        ),
    )
    .expect("write config");
    std::fs::write(
        dir.path().join("runbooks/check.yaml"),
        r##"apiVersion: vigil/v1
kind: Runbook
name: check-prometheus
description: Measure a target, then tell the team.
params:
  job: { type: string, default: prometheus }
steps:
  - id: measure
    uses: prometheus/query
    with: { query: 'up{job="${{ params.job }}"}' }
  - id: notify
    uses: notify/slack
    needs: [measure]
    when: "${{ steps.measure.output.value == 1 }}"
    with: { text: "${{ params.job }} is up", channel: "#ops" }
"##,
    )
    .expect("write runbook");
    let config = dir.path().join("vigil.yaml");
    let vigil = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("--config")
            .arg(&config)
            .args(["--output", "json"])
            .args(args)
            .output()
            .expect("run vigil");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stdout, stderr) = vigil(&["validate"]);
    assert!(ok, "validate: {stdout} {stderr}");

    let (ok, stdout, stderr) = vigil(&["dry-run", "check-prometheus"]);
    assert!(ok, "dry-run: {stdout} {stderr}");
    assert_eq!(
        recv.requests().len(),
        before,
        "the dry-run reached the receiver"
    );
    assert!(
        stdout.contains(&format!("http:POST http://127.0.0.1:{}/slack", recv.port)),
        "the plan is shown: {stdout}"
    );

    let (ok, stdout, stderr) = vigil(&["run", "check-prometheus"]);
    assert!(ok, "run: {stdout} {stderr}");
    let got = recv.requests();
    assert_eq!(got.len(), before + 1, "{got:?}");
    let last = got.last().expect("a request");
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("POST", "/slack")
    );
    let body: Value = serde_json::from_str(&last.body).expect("json");
    assert_eq!(
        body,
        json!({ "text": "prometheus is up", "channel": "#ops" })
    );
}
