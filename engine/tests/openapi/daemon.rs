//! The bundle the tests serve (principals of every role, a policy naming the
//! approver, the sim source) and the daemon, killed when dropped.

use super::*;

pub(crate) struct Setup {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
    pub(crate) store: PathBuf,
    pub(crate) out: PathBuf,
}

pub(crate) fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bundle");
    std::fs::create_dir_all(root.join("runbooks")).unwrap();
    std::fs::create_dir_all(root.join("policies")).unwrap();
    std::fs::create_dir_all(root.join("detectors")).unwrap();
    // The failure model learns from the `sim` plugin's fleet, as in the default bundle.
    let detector = common::workspace_root().join("runbooks/detectors/host-failure.yaml");
    std::fs::copy(detector, root.join("detectors/host-failure.yaml")).unwrap();
    std::fs::write(
        root.join("vigil.yaml"),
        format!(
            "apiVersion: vigil/v1\nkind: Config\n\
             plugins:\n  dirs: [\"{}\"]\n\
             sources:\n  - {{ name: sim, config: {{ seed: 42 }} }}\n",
            common::plugin_dir().display()
        ) + "alerting:\n  group_wait: 100ms\n  group_interval: 200ms\n\
         api:\n  max_body_bytes: 65536\n  body_read_timeout: 1s\n  principals:\n\
         \x20   - { name: vera, role: viewer, token_env: VERA_TOKEN }\n\
         \x20   - { name: sam, role: sender, token_env: SAM_TOKEN }\n\
         \x20   - { name: alice, role: operator, token_env: ALICE_TOKEN }\n\
         \x20   - { name: bob, role: operator, token_env: BOB_TOKEN }\n\
         \x20   - { name: ada, role: admin, token_env: ADA_TOKEN }\n\
         \x20   - { name: olga, role: admin, token_env: OLGA_TOKEN, expires: \"2020-01-01\" }\n\
         guardrails:\n  runbooks:\n    careful: { dry_run_first: 1 }\n\
         oncall:\n  sre: { members: [alice], shift: 7d, start: \"2026-01-05T09:00:00Z\" }\n",
    )
    .unwrap();
    std::fs::write(
        root.join("policies/gate.rhai"),
        "fn decide(incident, plan) {\n\
         \x20 let mode = if \"labels\" in incident && \"mode\" in incident.labels { incident.labels.mode } else { \"\" };\n\
         \x20 if mode == \"approve\" {\n\
         \x20   return #{ action: \"approve\", reason: \"a human must look\", notify: [oncall(\"sre\")], approvers: [oncall(\"sre\")] };\n\
         \x20 }\n\
         \x20 if mode == \"page\" { return #{ action: \"page\", reason: \"a human decides\", notify: [oncall(\"sre\")] }; }\n\
         \x20 if mode == \"ignore\" { return #{ action: \"ignore\", reason: \"nothing to do\" }; }\n\
         \x20 #{ action: \"auto\", reason: \"safe\" }\n\
         }\n",
    )
    .unwrap();
    let out = dir.path().join("out.txt");
    std::fs::write(
        root.join("runbooks/fix.yaml"),
        format!(
            "apiVersion: vigil/v1\nkind: Runbook\nname: fix\npolicy: gate\ntrigger:\n  match: {{ alertname: Broken }}\nparams:\n  content: {{ type: string, from: \"${{{{ incident.labels.content }}}}\", default: none }}\nsteps:\n  - id: act\n    uses: core/write\n    with: {{ path: \"{}\", content: \"${{{{ params.content }}}}\" }}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("runbooks/slow.yaml"),
        "apiVersion: vigil/v1\nkind: Runbook\nname: slow\nsteps:\n  - id: wait\n    uses: core/sleep\n    with: { duration: 60s }\n",
    )
    .unwrap();
    std::fs::write(
        root.join("runbooks/careful.yaml"),
        "apiVersion: vigil/v1\nkind: Runbook\nname: careful\ntrigger:\n  match: { alertname: Careful }\nsteps:\n  - id: say\n    uses: core/log\n    with: { message: hello }\n",
    )
    .unwrap();
    Setup {
        config: root.join("vigil.yaml"),
        store: dir.path().join("store"),
        out,
        _dir: dir,
    }
}

/// The daemon, killed when dropped (also when the test fails).
pub(crate) struct Daemon {
    pub(crate) child: std::process::Child,
    pub(crate) base: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(s: &Setup) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--config")
        .arg(&s.config)
        .arg("--store")
        .arg(&s.store)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("VERA_TOKEN", VERA)
        .env("SAM_TOKEN", SAM)
        .env("ALICE_TOKEN", ALICE)
        .env("BOB_TOKEN", BOB)
        .env("ADA_TOKEN", ADA)
        .env("OLGA_TOKEN", OLGA)
        .env_remove("VIGIL_TOKEN")
        .env_remove("VIGIL_SERVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    Daemon { child, base }
}

/// Polls `GET path` (unchecked) until `done` holds, for at most 10 s.
pub(crate) fn wait_for(base: &str, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let r = send(base, Some(VERA), "GET", path, None);
        let v: Value = serde_json::from_str(&r.text).unwrap_or(Value::Null);
        if done(&v) {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "waiting for {what}: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
