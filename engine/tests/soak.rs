//! Soak: `vigil serve` on a compressed clock (600×) with a detector over 200
//! simulated services, ~60–70k alerts over HTTP from a bounded local load generator
//! and ~900–1,200 live executions (load-dependent), SIGKILLed at seeded points seven times and
//! restarted. Afterwards, from the store itself:
//! - every acknowledged alert is there;
//! - no execution's side effect happened twice (each writes its incident id once,
//!   with a non-idempotent append: an interrupted one must stop in doubt, not repeat);
//! - no execution is left running: each finished, or says why it stopped (in doubt);
//! - memory stays bounded (peak RSS of every server process, reported).
//!
//! Bounded: 127.0.0.1 only, a fixed number of rounds and batches, and every wait has
//! a deadline.

mod common;

use common::{Server, agent};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_alert::store::AlertStore;
use vigil_exec::record::ExecStatus;
use vigil_exec::record::ExecutionStore;
use vigil_store::Store;

const TOKEN: &str = "soak-token";
const SERVICES: usize = 200;
const ROUNDS: usize = 7;
const BATCH: usize = 500;
const BATCHES_PER_ROUND: usize = 24; // 7 × 24 × 500 = 84,000 firing alerts at most

/// Peak resident memory of a server so far (VmHWM), in KiB.
fn peak_rss_kib(server: &Server) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn bundle(dir: &Path) -> (PathBuf, PathBuf) {
    let b = dir.join("bundle");
    std::fs::create_dir_all(b.join("runbooks")).unwrap();
    std::fs::create_dir_all(b.join("detectors")).unwrap();
    let effects = dir.join("effects.log");
    // Times are on the server's clock, which runs 600× the wall: 30 s of it is 50 ms.
    std::fs::write(
        b.join("vigil.yaml"),
        format!(
            "apiVersion: vigil/v1\nkind: Config\nplugins: {{ dirs: [{:?}] }}\nsources:\n  - {{ name: sim, config: {{ seed: 7 }} }}\n\
             alerting:\n  group_by: [alertname, service, wave]\n  group_wait: 30s\n  group_interval: 1m\n  repeat_interval: 1h\n  resolve_timeout: 1h\n\
             \x20 correlation: {{ window: 1s, labels: [key] }}\n  runbooks: live\n\
             api:\n  max_body_bytes: 8000000\n  rate_limit: 1000000\nexecutor:\n  max_concurrency: 4\n",
            common::plugin_dir()
        ),
    )
    .unwrap();
    std::fs::write(
        b.join("runbooks/remediate.yaml"),
        format!(
            "apiVersion: vigil/v1\nkind: Runbook\nname: remediate\ntrigger:\n  match: {{ alertname: SoakAlert }}\n\
             params:\n  service: {{ type: string, required: true, from: \"${{{{ incident.labels.service }}}}\" }}\n\
             steps:\n  - id: note\n    uses: core/set\n    with: {{ service: \"${{{{ params.service }}}}\" }}\n\
             \x20 - id: mark\n    uses: core/write\n    needs: [note]\n    with: {{ path: {:?}, content: \"${{{{ incident.id }}}}\\n\", append: true }}\n\
             \x20 - id: done\n    uses: core/set\n    needs: [mark]\n    with: {{ ok: true }}\n",
            effects.display().to_string()
        ),
    )
    .unwrap();
    // 200 simulated services with spikes: the detector side of the load.
    let specs: Vec<Value> = (0..SERVICES)
        .map(|i| {
            json!({ "name": "soak_latency", "labels": { "service": format!("svc-{i}") },
                    "base": 0.1, "noise": 0.01, "spikes": { "rate": 0.01, "amplitude": 1.0 } })
        })
        .collect();
    std::fs::write(
        b.join("detectors/latency.yaml"),
        format!(
            "apiVersion: vigil/v1\nkind: Detector\nname: soak-latency\nschedule: \"*/30 * * * * *\"\nsource: sim\nquery: {:?}\n\
             model: {{ anomaly: {{ method: robust }}, threshold: 0.95, direction: up }}\nalert: {{ name: SoakSpike, severity: info }}\n",
            serde_json::to_string(&specs).unwrap()
        ),
    )
    .unwrap();
    (b.join("vigil.yaml"), effects)
}

fn start(config: &Path, store: &Path) -> Server {
    common::serve(config, store, TOKEN, &["--speed", "600"])
}

fn labels(round: usize, batch: usize, i: usize) -> BTreeMap<String, String> {
    let n = batch * BATCH + i;
    BTreeMap::from([
        ("alertname".to_string(), "SoakAlert".to_string()),
        ("service".to_string(), format!("svc-{}", n % SERVICES)),
        ("instance".to_string(), format!("r{round}-{n}")),
        // Each wave of a service is its own incident (and its own remediation).
        ("wave".to_string(), format!("w{round}")),
        ("key".to_string(), format!("svc-{}/w{round}", n % SERVICES)),
    ])
}

/// A fixed-seed generator for the kill points (the same run every time).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn soak_with_sigkills_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (config, effects) = bundle(dir.path());
    let store_dir = dir.path().join("store");
    let acked: Arc<Mutex<Vec<BTreeMap<String, String>>>> = Arc::default();
    let mut peak_kib = 0u64;
    let mut rng = Lcg(0x5eed);
    let started = Instant::now();

    for round in 0..ROUNDS {
        let server = start(&config, &store_dir);
        let stop = Arc::new(AtomicBool::new(false));
        // The kill comes after a pseudo-random number of acknowledged batches, a
        // pseudo-random moment later: mid-request, mid-flush or mid-execution.
        let kill_after = (BATCHES_PER_ROUND * 2 / 3
            + rng.next(BATCHES_PER_ROUND as u64 / 3) as usize)
            .min(BATCHES_PER_ROUND);
        let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
        let sender = {
            let (base, acked, stop) = (server.base.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                for batch in 0..BATCHES_PER_ROUND {
                    if batch == kill_after {
                        let _ = kill_tx.send(());
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let batch_labels: Vec<_> =
                        (0..BATCH).map(|i| labels(round, batch, i)).collect();
                    let alerts: Vec<Value> = batch_labels
                        .iter()
                        .map(|l| json!({ "status": "firing", "labels": l, "annotations": { "value": "1" } }))
                        .collect();
                    let body = json!({ "version": "4", "status": "firing", "receiver": "vigil",
                                       "groupKey": "soak", "alerts": alerts });
                    let resp = agent
                        .post(&format!("{base}/api/v1/alerts"))
                        .header("Authorization", &format!("Bearer {TOKEN}"))
                        .content_type("application/json")
                        .send(serde_json::to_vec(&body).unwrap());
                    match resp {
                        // Acknowledged: durable, so it must survive the kill.
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().extend(batch_labels)
                        }
                        _ => return, // the server died mid-request: not acknowledged
                    }
                }
                let _ = kill_tx.send(());
            })
        };
        let _ = kill_rx.recv_timeout(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(rng.next(80)));
        peak_kib = peak_kib.max(peak_rss_kib(&server));
        drop(server); // SIGKILL
        stop.store(true, Ordering::Relaxed);
        sender.join().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "soak is bounded in time"
        );
    }

    // The last start: resume what was cut off, let the pipeline settle, stop cleanly.
    let server = start(&config, &store_dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    let agent = agent();
    loop {
        let mut resp = agent
            .get(&format!("{}/api/v1/executions?limit=100000", server.base))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap();
        let list: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        let running = list
            .as_array()
            .map_or(0, |a| a.iter().filter(|e| e["status"] == "running").count());
        if running == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    peak_kib = peak_kib.max(peak_rss_kib(&server));
    let pid = server.child.id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let mut server = server;
    let exit_deadline = Instant::now() + Duration::from_secs(30);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < exit_deadline, "SIGTERM stops the server");
        std::thread::sleep(Duration::from_millis(50));
    }

    let store = Store::open(&store_dir).unwrap();
    // No acknowledged alert lost.
    let stored: HashSet<BTreeMap<String, String>> = store
        .alerts()
        .unwrap()
        .into_iter()
        .map(|a| a.labels)
        .collect();
    let acked = acked.lock().unwrap();
    eprintln!(
        "soak: {} alerts acknowledged, {} stored, {} executions",
        acked.len(),
        stored.len(),
        store.executions().map(|e| e.len()).unwrap_or(0)
    );
    let incidents = store.incidents().unwrap();
    let mut triggers: BTreeMap<String, usize> = BTreeMap::new();
    for i in &incidents {
        for t in &i.executions {
            *triggers.entry(t.status.to_string()).or_default() += 1;
        }
        if i.executions.is_empty() {
            *triggers
                .entry(format!("none ({})", i.status.as_str()))
                .or_default() += 1;
        }
    }
    eprintln!(
        "soak: {} incidents, runbooks per incident: {triggers:?}",
        incidents.len()
    );
    let lost = acked.iter().filter(|l| !stored.contains(*l)).count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged alerts lost",
        acked.len()
    );
    assert!(
        acked.len() >= 50_000,
        "load reached the server: {}",
        acked.len()
    );

    // No side effect twice.
    let text = std::fs::read_to_string(&effects).unwrap_or_default();
    let mut seen = HashSet::new();
    let dup: Vec<&str> = text.lines().filter(|l| !seen.insert(*l)).collect();
    assert!(dup.is_empty(), "effects repeated: {dup:?}");

    // Nothing left running without a reason.
    let execs = store.executions().unwrap();
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &execs {
        *by_status.entry(e.status.as_str()).or_default() += 1;
        assert_ne!(e.status, ExecStatus::Running, "{} left running", e.id);
        if e.status == ExecStatus::InDoubt {
            assert!(
                e.reason.as_deref().is_some_and(|r| !r.is_empty()),
                "{} in doubt without a reason",
                e.id
            );
        }
    }
    assert!(execs.len() >= 600, "executions ran: {by_status:?}");
    eprintln!(
        "soak: {} alerts acknowledged, {} executions {by_status:?}, {} effects, {ROUNDS} SIGKILLs, peak RSS {} MiB, {:.1} s",
        acked.len(),
        execs.len(),
        seen.len(),
        peak_kib / 1024,
        started.elapsed().as_secs_f64()
    );
    assert!(peak_kib < 1024 * 1024, "peak RSS {} MiB", peak_kib / 1024);
}
