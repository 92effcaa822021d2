//! End-to-end with real servers: Prometheus evaluates a rule that fires, Alertmanager
//! sends it to `vigil serve` (its webhook receiver, with a bearer token); the alert
//! becomes an incident, the bundled `restart-leaking-service` runbook is dry-run for
//! it, and the incident resolves when the rule clears (rule file rewritten, Prometheus
//! reloaded). Every child is killed at the end, also on failure.
//!
//! Needs Debian's `prometheus` and `prometheus-alertmanager` (`.ci/run` installs them).

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "e2e-token";

/// Children killed on drop.
#[derive(Default)]
struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find(bin: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{bin}` is not installed: apt-get install prometheus prometheus-alertmanager (see .ci/run)"
    );
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

fn get_json(url: &str) -> Option<Value> {
    let mut r = agent()
        .get(url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()
}

fn wait_for<T>(
    what: &str,
    timeout: Duration,
    procs: &mut Procs,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        for (name, c) in &mut procs.0 {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("{name} exited early ({status}) while waiting for {what}");
            }
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

const FIRING_RULE: &str = "groups:\n  - name: vigil-e2e\n    interval: 1s\n    rules:\n      - alert: MemoryLeak\n        expr: vector(3000000000)\n        labels: { severity: warning, service: checkout }\n        annotations: { summary: checkout memory grows, value: \"{{ $value }}\" }\n";
const CLEARED_RULE: &str = "groups:\n  - name: vigil-e2e\n    interval: 1s\n    rules:\n      - alert: MemoryLeak\n        expr: vector(3000000000) < 0\n        labels: { severity: warning, service: checkout }\n        annotations: { summary: checkout memory grows, value: \"{{ $value }}\" }\n";

#[test]
fn prometheus_alertmanager_vigil_incident_runbook_resolve() {
    let prometheus = find("prometheus");
    let alertmanager = find("prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut procs = Procs::default();

    // vigil, with the bundled runbooks.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("runbooks");
    let bundle = d.join("bundle");
    copy_dir(&repo.join("runbooks"), &bundle.join("runbooks"));
    copy_dir(&repo.join("policies"), &bundle.join("policies"));
    std::fs::write(
        bundle.join("vigil.yaml"),
        format!(
            "apiVersion: vigil/v1\nkind: Config\nplugins: {{ dirs: [{:?}] }}\nsources:\n  - {{ name: http, grants: {{ http: [{{ url: \"http://127.0.0.1:9798/*\", methods: [GET, POST] }}] }} }}\nservices:\n  checkout: {{}}\nalerting:\n  group_wait: 200ms\n  group_interval: 500ms\n  runbooks: dry_run\n",
            std::env::var("VIGIL_PLUGIN_DIR").map(std::path::PathBuf::from).unwrap_or_else(
                |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
            )
        ),
    )
    .unwrap();
    let mut vigil = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--config")
        .arg(bundle.join("vigil.yaml"))
        .arg("--store")
        .arg(d.join("store"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("VIGIL_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(vigil.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    procs.0.push(("vigil".into(), vigil));
    let vigil_url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("vigil's address")
        .to_string();

    // Alertmanager, sending to vigil.
    let am_port = free_port();
    std::fs::write(
        d.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: vigil\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: vigil\n    webhook_configs:\n      - url: {vigil_url}/api/v1/alerts\n        send_resolved: true\n        http_config:\n          authorization: {{ type: Bearer, credentials: {TOKEN} }}\n"
        ),
    )
    .unwrap();
    let am = Command::new(&alertmanager)
        .arg(format!(
            "--config.file={}",
            d.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", d.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(("alertmanager".into(), am));

    // Prometheus, with a rule that fires at once.
    let prom_port = free_port();
    std::fs::write(d.join("rules.yml"), FIRING_RULE).unwrap();
    std::fs::write(
        d.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{}]\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n",
            d.join("rules.yml").display()
        ),
    )
    .unwrap();
    let prom = Command::new(&prometheus)
        .arg(format!(
            "--config.file={}",
            d.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            d.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .arg("--web.enable-lifecycle")
        .arg("--rules.alert.resend-delay=1s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(("prometheus".into(), prom));

    // The firing alert arrives, becomes an incident, and the runbook is dry-run for it.
    let incidents = format!("{vigil_url}/api/v1/incidents");
    let inc = wait_for(
        "an incident with a dry-run of restart-leaking-service",
        Duration::from_secs(90),
        &mut procs,
        || {
            let list = get_json(&incidents)?;
            list.as_array()?
                .iter()
                .find(|i| {
                    i["labels"]["alertname"] == "MemoryLeak"
                        && i["executions"].as_array().is_some_and(|e| {
                            e.iter().any(|x| {
                                x["runbook"] == "restart-leaking-service" && x["mode"] == "dry_run"
                            })
                        })
                })
                .cloned()
        },
    );
    let id = inc["id"].as_str().unwrap().to_string();
    println!("incident {id}: {}", inc["title"]);
    assert_eq!(inc["status"], "open");
    assert_eq!(inc["root_service"], "checkout");
    assert_eq!(inc["labels"]["service"], "checkout");
    let ex = &inc["executions"][0];
    assert_eq!(ex["status"], "succeeded", "the dry-run plans cleanly: {ex}");
    let steps = ex["report"]["steps"]
        .as_array()
        .expect("the dry-run report");
    assert!(
        steps.iter().any(|s| s["id"] == "restart"),
        "the plan includes the restart step"
    );
    assert_eq!(inc["value"], 3e9, "the rule's value reached the incident");

    // The rule clears; Prometheus resolves, Alertmanager tells vigil; the incident resolves.
    std::fs::write(d.join("rules.yml"), CLEARED_RULE).unwrap();
    let mut r = agent()
        .post(&format!("http://127.0.0.1:{prom_port}/-/reload"))
        .send_empty()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "reload: {}",
        r.body_mut().read_to_string().unwrap_or_default()
    );
    let resolved = wait_for(
        "the incident to resolve",
        Duration::from_secs(90),
        &mut procs,
        || {
            let v = get_json(&format!("{incidents}/{id}"))?;
            (v["incident"]["status"] == "resolved").then_some(v)
        },
    );
    let kinds: Vec<&str> = resolved["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    println!("journal: {kinds:?}");
    assert!(
        kinds.contains(&"opened") && kinds.contains(&"runbook") && kinds.contains(&"resolved"),
        "{kinds:?}"
    );
}
