//! Host services behind the capability imports: HTTP, process, kv, secrets.

use super::grants::check_url_shape;
use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A key-value store with one namespace per plugin grant. The default is in
/// memory; the engine can plug its durable store in here.
pub trait KvStore: Send + Sync + fmt::Debug {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<String>, String>;
    fn set(&self, namespace: &str, key: &str, value: &str) -> Result<(), String>;
    fn delete(&self, namespace: &str, key: &str) -> Result<(), String>;
}

/// In-memory [`KvStore`], bounded in entries per namespace.
#[derive(Debug, Default)]
pub struct MemoryKv {
    data: Mutex<HashMap<String, HashMap<String, String>>>,
}

const KV_MAX_KEY: usize = 1024;
const KV_MAX_VALUE: usize = 1 << 20;
const KV_MAX_ENTRIES: usize = 10_000;

impl KvStore for MemoryKv {
    fn get(&self, ns: &str, key: &str) -> Result<Option<String>, String> {
        let data = self
            .data
            .lock()
            .map_err(|_| "kv store poisoned".to_string())?;
        Ok(data.get(ns).and_then(|m| m.get(key)).cloned())
    }
    fn set(&self, ns: &str, key: &str, value: &str) -> Result<(), String> {
        if key.len() > KV_MAX_KEY || value.len() > KV_MAX_VALUE {
            return Err(format!(
                "kv: key ≤ {KV_MAX_KEY} bytes and value ≤ {KV_MAX_VALUE} bytes"
            ));
        }
        let mut data = self
            .data
            .lock()
            .map_err(|_| "kv store poisoned".to_string())?;
        let m = data.entry(ns.to_string()).or_default();
        if m.len() >= KV_MAX_ENTRIES && !m.contains_key(key) {
            return Err(format!(
                "kv: namespace {ns:?} is full ({KV_MAX_ENTRIES} entries)"
            ));
        }
        m.insert(key.to_string(), value.to_string());
        Ok(())
    }
    fn delete(&self, ns: &str, key: &str) -> Result<(), String> {
        let mut data = self
            .data
            .lock()
            .map_err(|_| "kv store poisoned".to_string())?;
        if let Some(m) = data.get_mut(ns) {
            m.remove(key);
        }
        Ok(())
    }
}

/// Where named secrets come from.
pub trait SecretSource: Send + Sync + fmt::Debug {
    fn get(&self, name: &str) -> Option<String>;
}

/// Secrets from environment variables: `slack-token` → `VIGIL_SECRET_SLACK_TOKEN`.
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvSecrets;

impl EnvSecrets {
    pub fn var_name(name: &str) -> String {
        let up: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("VIGIL_SECRET_{up}")
    }
}

impl SecretSource for EnvSecrets {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(Self::var_name(name)).ok()
    }
}

/// Secrets given explicitly (tests, embedding).
#[derive(Debug, Default, Clone)]
pub struct StaticSecrets(pub HashMap<String, String>);

impl SecretSource for StaticSecrets {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// An HTTP request as the plugin asked for it.
#[derive(Debug)]
pub(crate) struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Blocking HTTP client: no redirects (they could leave the allowlist), no
/// proxy from the environment, bounded response size.
#[derive(Debug)]
pub(crate) struct HttpClient {
    agent: ureq::Agent,
    max_body: u64,
}

impl HttpClient {
    pub fn new(max_body: u64) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpClient { agent, max_body }
    }

    pub fn send(&self, req: HttpRequest) -> Result<HttpResponse, String> {
        check_url_shape(&req.url)?;
        let method = ureq::http::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| format!("bad HTTP method {:?}", req.method))?;
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(req.url.as_str());
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder
            .body(req.body.unwrap_or_default())
            .map_err(|e| format!("bad request: {e}"))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(req.timeout))
            .build();
        let mut resp = self
            .agent
            .run(request)
            .map_err(|e| format!("{} {}: {e}", req.method, req.url))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(self.max_body)
            .read_to_vec()
            .map_err(|e| {
                format!(
                    "{} {}: reading body (limit {} bytes): {e}",
                    req.method, req.url, self.max_body
                )
            })?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// What a host-run command did.
#[derive(Debug)]
pub(crate) struct ProcessOutput {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    pub timed_out: bool,
}

fn read_capped(mut r: impl Read, cap: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(out.len());
                if n > room {
                    truncated = true;
                }
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (out, truncated)
}

/// Runs `program args…` without a shell, with a cleared environment (only a
/// fixed `PATH`), a timeout, and stdout/stderr each cut at `max_output` bytes.
pub(crate) fn run_process(
    program: &str,
    args: &[String],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    max_output: usize,
) -> Result<ProcessOutput, String> {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .current_dir("/")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        out_pipe
            .map(|p| read_capped(p, max_output))
            .unwrap_or_default()
    });
    let err_t = std::thread::spawn(move || {
        err_pipe
            .map(|p| read_capped(p, max_output))
            .unwrap_or_default()
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s.code().unwrap_or(-1),
            Ok(None) if start.elapsed() >= timeout => {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("waiting for {program:?}: {e}")),
        }
    };
    let (stdout, t1) = out_t.join().unwrap_or_default();
    let (stderr, t2) = err_t.join().unwrap_or_default();
    Ok(ProcessOutput {
        status,
        stdout,
        stderr,
        truncated: t1 || t2,
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_runs_without_shell_and_caps_output() {
        let out = run_process(
            "echo",
            &["a;b".into(), "$HOME".into()],
            None,
            Duration::from_secs(5),
            1024,
        )
        .expect("echo runs");
        assert_eq!(out.status, 0);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a;b $HOME\n");
        let big = run_process(
            "head",
            &["-c".into(), "100000".into(), "/dev/zero".into()],
            None,
            Duration::from_secs(5),
            1000,
        )
        .expect("head runs");
        assert_eq!(big.stdout.len(), 1000);
        assert!(big.truncated);
    }

    #[test]
    fn process_times_out() {
        let t = Instant::now();
        let out = run_process(
            "sleep",
            &["5".into()],
            None,
            Duration::from_millis(100),
            1024,
        )
        .expect("sleep runs");
        assert!(out.timed_out);
        assert_eq!(out.status, -1);
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn process_env_is_cleared() {
        let out = run_process("env", &[], None, Duration::from_secs(5), 4096).expect("env runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "PATH=/usr/local/bin:/usr/bin:/bin"
        );
    }

    #[test]
    fn memory_kv_namespaces() {
        let kv = MemoryKv::default();
        kv.set("a", "k", "1").expect("set");
        assert_eq!(kv.get("a", "k").expect("get"), Some("1".into()));
        assert_eq!(kv.get("b", "k").expect("get"), None);
        kv.delete("a", "k").expect("delete");
        assert_eq!(kv.get("a", "k").expect("get"), None);
    }

    #[test]
    fn env_secret_names() {
        assert_eq!(
            EnvSecrets::var_name("slack-token"),
            "VIGIL_SECRET_SLACK_TOKEN"
        );
    }
}
