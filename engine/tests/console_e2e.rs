//! The web console on a real `vigil serve` (127.0.0.1 only): what the server
//! refuses without a browser — a page without a session goes to the login page, a
//! viewer's session cannot act whatever it posts, a form without its CSRF token or
//! from another site is refused, every answer has the CSP — and then the console
//! driven in headless Chromium by `tests/console/console_test.py` (Playwright for
//! Python, Debian's `chromium`: see `.ci/run`), which fails this test with its output.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789ab";
const VERA: &str = "vera-token-0123456789a";
const ADA: &str = "ada-token-0123456789abc";
const SAM: &str = "sam-token-0123456789abc";

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    store: PathBuf,
    out: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bundle");
    std::fs::create_dir_all(root.join("runbooks")).unwrap();
    std::fs::create_dir_all(root.join("policies")).unwrap();
    std::fs::write(
        root.join("vigil.yaml"),
        "apiVersion: vigil/v1\nkind: Config\n\
         services:\n  checkout: { depends_on: [payments] }\n  payments: { depends_on: [postgres] }\n  postgres: {}\n\
         alerting:\n  runbooks: live\n  group_wait: 100ms\n  group_interval: 200ms\n\
         api:\n  rate_limit: 100000\n  principals:\n\
         \x20   - { name: alice, role: operator, token_env: ALICE_TOKEN }\n\
         \x20   - { name: bob, role: operator, token_env: BOB_TOKEN }\n\
         \x20   - { name: vera, role: viewer, token_env: VERA_TOKEN }\n\
         \x20   - { name: ada, role: admin, token_env: ADA_TOKEN }\n\
         \x20   - { name: sam, role: sender, token_env: SAM_TOKEN }\n\
         guardrails:\n  defaults: { max_per_hour: 100 }\n\
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
         \x20 #{ action: \"auto\", reason: \"safe to run\" }\n\
         }\n",
    )
    .unwrap();
    // Its steps with effects are journaled as they start and end (pure steps only in
    // batches), so the console sees each one live; `wait` sleeps while we look.
    let work = dir.path().join("work");
    std::fs::write(
        root.join("runbooks/slowfix.yaml"),
        format!(
            "apiVersion: vigil/v1\nkind: Runbook\nname: slowfix\npolicy: gate\n\
             trigger:\n  match: {{ alertname: SlowFix }}\n\
             steps:\n\
             \x20 - id: prepare\n    uses: core/write\n    with: {{ path: \"{w}.prepare\", content: ready }}\n\
             \x20 - id: wait\n    uses: core/sleep\n    needs: [prepare]\n    with: {{ duration: 4s }}\n\
             \x20 - id: check\n    uses: core/write\n    needs: [prepare]\n    with: {{ path: \"{w}.check\", content: checked }}\n\
             \x20 - id: finish\n    uses: core/log\n    needs: [wait, check]\n    with: {{ message: done }}\n",
            w = work.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("approved.txt");
    std::fs::write(
        root.join("runbooks/gated.yaml"),
        format!(
            "apiVersion: vigil/v1\nkind: Runbook\nname: gated\npolicy: gate\n\
             trigger:\n  match: {{ alertname: NeedsHuman }}\n\
             steps:\n\
             \x20 - id: look\n    uses: core/log\n    with: {{ message: looking }}\n\
             \x20 - id: act\n    uses: core/write\n    needs: [look]\n    with: {{ path: \"{}\", content: approved }}\n\
             \x20 - id: report\n    uses: core/log\n    needs: [act]\n    with: {{ message: reported }}\n",
            out.display()
        ),
    )
    .unwrap();
    Setup {
        config: root.join("vigil.yaml"),
        store: dir.path().join("store"),
        out,
        _dir: dir,
    }
}

/// Detections and forecasts of a `latency` detector, as a detector run leaves them,
/// for the detector page (the test daemon runs no detectors).
fn seed_detector_records(store: &std::path::Path) {
    use std::collections::BTreeMap;
    use vigil_runtime::detectors::{Detection, ForecastRecord};
    use vigil_runtime::store::DetectorStore;
    let s = vigil_store::Store::open(store).unwrap();
    let t0 = 1_780_000_000i64;
    let labels: BTreeMap<String, String> = [("service".to_string(), "checkout".to_string())]
        .into_iter()
        .collect();
    let found: Vec<Detection> = (0..40)
        .map(|i| Detection {
            detector: "latency".into(),
            alertname: "LatencyAnomaly".into(),
            severity: "warning".into(),
            labels: labels.clone(),
            annotations: BTreeMap::new(),
            score: if i % 10 == 9 { 0.95 } else { 0.5 },
            value: 100.0 + (i as f64 * 0.7).sin() * 20.0 + if i % 10 == 9 { 80.0 } else { 0.0 },
            at: t0 + i * 60,
            resolved: i % 10 != 9,
        })
        .collect();
    s.put_predictions(&found).unwrap();
    let made: Vec<ForecastRecord> = (0..10)
        .map(|i| ForecastRecord {
            detector: "latency".into(),
            labels: labels.clone(),
            made_at: t0 + 39 * 60,
            horizon_secs: 600,
            t: t0 + 40 * 60 + i * 60,
            value: 110.0 + i as f64,
            low: 95.0 + i as f64 * 0.5,
            high: 125.0 + i as f64 * 1.5,
        })
        .collect();
    s.put_forecasts(&made).unwrap();
    s.sync_blocking().unwrap();
}

/// The daemon, killed when dropped (also when the test fails).
struct Daemon {
    child: std::process::Child,
    base: String,
    addr: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(s: &Setup) -> Daemon {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--config")
        .arg(&s.config)
        .arg("--store")
        .arg(&s.store)
        .args(["serve", "--listen", "127.0.0.1:0", "--no-detectors"])
        .env("ALICE_TOKEN", ALICE)
        .env("BOB_TOKEN", BOB)
        .env("VERA_TOKEN", VERA)
        .env("ADA_TOKEN", ADA)
        .env("SAM_TOKEN", SAM)
        .env_remove("VIGIL_TOKEN")
        .env_remove("VIGIL_SERVER")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
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
        .to_string();
    let addr = base.trim_start_matches("http://").to_string();
    Daemon { child, base, addr }
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of a `Set-Cookie` named `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.all("set-cookie").into_iter().find_map(|c| {
            c.split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }
}

/// A raw request (no redirects followed, no cookies kept: the test says what it sends).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A logged-in console session: its cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

fn login(d: &Daemon, token: &str) -> Browser {
    let page = http(&d.addr, "GET", "/console/login", &[], "");
    assert_eq!(page.status, 200, "{page:?}");
    let nonce = page.cookie("vigil_login").expect("a login cookie");
    let form = format!("login_csrf={nonce}&next=%2Fconsole%2Fincidents&token={token}");
    let cookie = format!("vigil_login={nonce}");
    let a = http(
        &d.addr,
        "POST",
        "/console/login",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", &d.base),
        ],
        &form,
    );
    assert_eq!(a.status, 303, "{a:?}");
    assert_eq!(a.header("location"), Some("/console/incidents"));
    let set = a
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("vigil_session="))
        .expect("a session cookie")
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let id = a.cookie("vigil_session").unwrap();
    let cookie = format!("vigil_session={id}");
    let page = http(
        &d.addr,
        "GET",
        "/console/incidents",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(page.status, 200, "{page:?}");
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF token in the page")
        .to_string();
    Browser { cookie, csrf }
}

fn post(d: &Daemon, b: &Browser, path: &str, form: &str, extra: &[(&str, &str)]) -> Answer {
    let mut headers = vec![
        ("Cookie", b.cookie.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    headers.extend_from_slice(extra);
    http(&d.addr, "POST", path, &headers, form)
}

fn paused(d: &Daemon) -> bool {
    let a = http(
        &d.addr,
        "GET",
        "/api/v1/status",
        &[("Authorization", &format!("Bearer {VERA}"))],
        "",
    );
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    !v["paused"].is_null()
}

const PAGES: [&str; 7] = [
    "/console/incidents",
    "/console/executions",
    "/console/approvals",
    "/console/automation",
    "/console/silences",
    "/console/detectors",
    "/console/detectors/latency",
];

#[test]
fn without_a_session_every_page_leads_to_the_login_and_every_answer_has_the_csp() {
    let s = setup();
    seed_detector_records(&s.store);
    let d = serve(&s);
    let root = http(&d.addr, "GET", "/", &[], "");
    assert_eq!(root.status, 303, "{root:?}");
    assert_eq!(root.header("location"), Some("/console/incidents"));
    for p in PAGES {
        let a = http(&d.addr, "GET", p, &[], "");
        assert_eq!(a.status, 303, "{p}: {a:?}");
        let to = a.header("location").unwrap();
        assert!(to.starts_with("/console/login?next="), "{p}: {to}");
        assert!(a.header("content-security-policy").is_some(), "{p}");
    }
    // A form without a session is refused, not acted on.
    let a = http(&d.addr, "POST", "/console/pause", &[], "reason=x");
    assert_eq!(a.status, 401, "{a:?}");
    assert!(!paused(&d));
    // The API is unchanged: bearer tokens, JSON errors; a session cookie is no token.
    let b = login(&d, ALICE);
    let a = http(
        &d.addr,
        "POST",
        "/api/v1/pause",
        &[("Cookie", &b.cookie)],
        "",
    );
    assert_eq!(a.status, 401, "{a:?}");
    assert!(a.body.contains("\"unauthorized\""), "{}", a.body);
    // Logged in, every page answers with the security headers and no inline script.
    let mut all: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    all.push("/console/login".into());
    for p in &all {
        let a = http(&d.addr, "GET", p, &[("Cookie", &b.cookie)], "");
        let want = if p == "/console/login" { 303 } else { 200 };
        assert_eq!(a.status, want, "{p}: {}", a.body);
        let csp = a.header("content-security-policy").unwrap_or_default();
        for part in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{p}: CSP {csp:?} lacks {part}");
        }
        assert!(!csp.contains("unsafe-inline"), "{p}: {csp}");
        assert_eq!(a.header("x-frame-options"), Some("DENY"), "{p}");
        assert_eq!(a.header("cache-control"), Some("no-store"), "{p}");
        assert!(
            !a.body.contains("<script>") && !a.body.contains("style="),
            "{p}: inline script or style"
        );
    }
    // A page the console does not have is an HTML 404; a form it does not take is
    // closed by default (admin), as an API route the role table does not name.
    for (m, p, code) in [
        ("GET", "/console/nope", 404),
        ("POST", "/console/incidents", 403),
    ] {
        let form = format!("csrf={}", b.csrf);
        let a = http(&d.addr, m, p, &[("Cookie", &b.cookie)], &form);
        assert_eq!(a.status, code, "{m} {p}: {a:?}");
        assert!(
            a.header("content-type")
                .unwrap_or_default()
                .starts_with("text/html"),
            "{m} {p}"
        );
    }
    // Assets are in the binary and may be cached when versioned.
    let js = http(&d.addr, "GET", "/console/app.js", &[], "");
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.header("content-security-policy").is_some());
    // Over TLS (as a proxy in front says), the cookie is Secure.
    let page = http(
        &d.addr,
        "GET",
        "/console/login",
        &[("X-Forwarded-Proto", "https")],
        "",
    );
    let set = page.all("set-cookie").join(" | ");
    assert!(set.contains("Secure"), "{set}");
    // Logged out, the session is gone.
    let a = post(&d, &b, "/console/logout", &format!("csrf={}", b.csrf), &[]);
    assert_eq!(a.status, 303, "{a:?}");
    let a = http(
        &d.addr,
        "GET",
        "/console/incidents",
        &[("Cookie", &b.cookie)],
        "",
    );
    assert_eq!(a.status, 303, "{a:?}");
}

#[test]
fn a_viewer_cannot_act_and_forms_without_their_csrf_token_or_from_another_site_are_refused() {
    let s = setup();
    let d = serve(&s);
    // A sender may deliver alerts only: no console.
    let page = http(&d.addr, "GET", "/console/login", &[], "");
    let nonce = page.cookie("vigil_login").unwrap();
    let a = http(
        &d.addr,
        "POST",
        "/console/login",
        &[("Cookie", &format!("vigil_login={nonce}"))],
        &format!("login_csrf={nonce}&token={SAM}"),
    );
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.body.contains("may only deliver alerts"), "{}", a.body);
    // A login form needs the nonce of the login page (no login CSRF).
    let a = http(
        &d.addr,
        "POST",
        "/console/login",
        &[],
        &format!("login_csrf=x&token={ALICE}"),
    );
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.cookie("vigil_session").is_none());

    // A viewer crafting an operator's form, with a valid session and CSRF token: 403.
    let vera = login(&d, VERA);
    let a = post(
        &d,
        &vera,
        "/console/pause",
        &format!("csrf={}&reason=mine", vera.csrf),
        &[],
    );
    assert_eq!(a.status, 403, "{a:?}");
    assert!(a.body.contains("role `viewer`"), "{}", a.body);
    assert!(!paused(&d), "a viewer paused automation");
    for path in [
        "/console/resume",
        "/console/silences",
        "/console/silences/1/expire",
        "/console/incidents/i1/acknowledge",
        "/console/executions/e1/approve",
        "/console/executions/e1/reject",
    ] {
        let a = post(
            &d,
            &vera,
            path,
            &format!("csrf={}&matchers=a%3Db&duration=1h", vera.csrf),
            &[],
        );
        assert_eq!(a.status, 403, "{path}: {a:?}");
    }
    let list = http(
        &d.addr,
        "GET",
        "/api/v1/silences",
        &[("Authorization", &format!("Bearer {VERA}"))],
        "",
    );
    assert_eq!(list.body.trim(), "[]", "a viewer added a silence");
    // The viewer's pages show no operator's buttons.
    let page = http(
        &d.addr,
        "GET",
        "/console/automation",
        &[("Cookie", &vera.cookie)],
        "",
    );
    assert!(
        !page.body.contains("action=\"/console/pause\""),
        "{}",
        page.body
    );

    // An operator's form without the CSRF token, with another session's, or sent
    // from another site: refused, nothing changes.
    let alice = login(&d, ALICE);
    let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("reason=x".into(), vec![]),
        (format!("csrf={}&reason=x", vera.csrf), vec![]),
        (
            format!("csrf={}&reason=x", alice.csrf),
            vec![("Origin", "http://evil.example")],
        ),
        (
            format!("csrf={}&reason=x", alice.csrf),
            vec![("Sec-Fetch-Site", "cross-site")],
        ),
    ];
    for (form, extra) in &cases {
        let a = post(&d, &alice, "/console/pause", form, extra);
        assert_eq!(a.status, 403, "{form} {extra:?}: {a:?}");
        assert!(!paused(&d), "{form} {extra:?} paused automation");
    }
    // The same form from the console's own page acts, as alice.
    let a = post(
        &d,
        &alice,
        "/console/pause",
        &format!("csrf={}&reason=checking", alice.csrf),
        &[("Origin", &d.base), ("Sec-Fetch-Site", "same-origin")],
    );
    assert_eq!(a.status, 303, "{a:?}");
    assert_eq!(a.header("location"), Some("/console/automation"));
    assert!(paused(&d));
    let audit = http(
        &d.addr,
        "GET",
        "/api/v1/audit?action=pause",
        &[("Authorization", &format!("Bearer {VERA}"))],
        "",
    );
    assert!(audit.body.contains("\"user:alice\""), "{}", audit.body);
    let a = post(
        &d,
        &alice,
        "/console/resume",
        &format!("csrf={}", alice.csrf),
        &[],
    );
    assert_eq!(a.status, 303, "{a:?}");
    assert!(!paused(&d));
    // An action the API refuses is refused the same way, as a page.
    let a = post(
        &d,
        &alice,
        "/console/silences",
        &format!("csrf={}&matchers=service%3Ddb&duration=forever", alice.csrf),
        &[],
    );
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.body.contains("duration"), "{}", a.body);
}

/// Whether the browser tests can run here; they need what `.ci/run` installs.
fn browser_tools() -> (PathBuf, PathBuf) {
    let chromium = PathBuf::from("/usr/bin/chromium");
    assert!(
        chromium.is_file(),
        "Debian's chromium is not installed: apt-get install chromium chromium-driver (see .ci/run)"
    );
    let script = common::workspace_root().join("tests/console/console_test.py");
    let ok = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "Playwright for Python is not installed: pip install playwright (see .ci/run)"
    );
    (chromium, script)
}

#[test]
fn the_console_works_in_a_real_browser() {
    let (chromium, script) = browser_tools();
    let s = setup();
    seed_detector_records(&s.store);
    let d = serve(&s);
    let keep = std::env::temp_dir().join(format!("vigil-console-shots-{}", std::process::id()));
    let mut child = Command::new("python3")
        .arg(&script)
        .env("CONSOLE_BASE", &d.base)
        .env("CONSOLE_CHROMIUM", &chromium)
        .env("CONSOLE_SCREENSHOTS", &keep)
        .env("CONSOLE_APPROVED_FILE", &s.out)
        .env("ALICE_TOKEN", ALICE)
        .env("BOB_TOKEN", BOB)
        .env("VERA_TOKEN", VERA)
        .env("ADA_TOKEN", ADA)
        .env("SAM_TOKEN", SAM)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes on threads so a chatty script never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(420);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (stdout, stderr) = (t_out.join().unwrap(), t_err.join().unwrap());
    println!("{stdout}");
    match status {
        Some(st) if st.success() => {}
        Some(st) => panic!(
            "the browser tests failed (exit {:?}); screenshots in {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            st.code(),
            keep.display()
        ),
        None => panic!(
            "the browser tests took longer than 7 minutes\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        ),
    }
}
