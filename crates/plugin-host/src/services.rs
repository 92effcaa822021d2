//! Host services behind the capability imports: HTTP, process, kv, secrets.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// A key-value store with one namespace per plugin grant. The default is in
/// memory; the engine can plug its durable store in here.
///
/// Errors stay `String`: they go back to the plugin unchanged as the WIT `kv`
/// interface's `result<_, string>`, which has no richer type to carry.
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

    /// Sends a request whose URL and headers the caller already checked
    /// (`http_policy`).
    pub(crate) fn send(&self, req: HttpRequest) -> Result<HttpResponse, String> {
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

/// What a TCP exchange brought back.
#[derive(Debug)]
pub(crate) struct TcpOutput {
    pub data: Vec<u8>,
    pub truncated: bool,
}

/// One request and its answer over TCP, to an address the caller already checked
/// (`tcp_policy`): resolve and connect within `timeout`, write `data`, close the
/// sending side, read until the peer closes. The whole exchange shares `timeout`; an
/// answer past `max` bytes is cut there (`truncated`) and the connection dropped; a
/// peer that does not close in time is an error that says how much it sent.
pub(crate) fn tcp_exchange(
    addr: &crate::tcp_policy::CheckedAddr,
    data: &[u8],
    timeout: Duration,
    max: usize,
) -> Result<TcpOutput, String> {
    use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
    let start = Instant::now();
    let left = || timeout.saturating_sub(start.elapsed());
    let ms = timeout.as_millis();
    let late = |what: &str| format!("tcp {addr}: no {what} within {ms} ms");
    // Resolution has no timeout of its own: it runs aside, and the call does not wait
    // past its time for it.
    let (host, port) = (addr.bare_host().to_string(), addr.port());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send((host.as_str(), port).to_socket_addrs().map(Vec::from_iter));
    });
    let targets: Vec<SocketAddr> = match rx.recv_timeout(left()) {
        Ok(Ok(t)) if !t.is_empty() => t,
        Ok(Ok(_)) => return Err(format!("tcp {addr}: the host resolves to no address")),
        Ok(Err(e)) => return Err(format!("tcp {addr}: cannot resolve the host: {e}")),
        Err(_) => return Err(late("address for the host")),
    };
    let mut last = None;
    let mut stream = None;
    for t in targets {
        let l = left();
        if l.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&t, l) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = match (stream, last) {
        (Some(s), _) => s,
        (None, Some(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(late("connection"));
        }
        (None, Some(e)) => return Err(format!("tcp {addr}: connect: {e}")),
        (None, None) => return Err(late("connection")),
    };
    let io = |e: std::io::Error, what: &str, got: usize| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            format!(
                "tcp {addr}: no complete answer within {ms} ms ({got} bytes received, the peer kept the connection open)"
            )
        } else {
            format!("tcp {addr}: {what}: {e}")
        }
    };
    let step = |l: Duration| Some(l.max(Duration::from_millis(1)));
    stream
        .set_write_timeout(step(left()))
        .and_then(|()| stream.write_all(data))
        .map_err(|e| io(e, "write", 0))?;
    // Line protocols (HAProxy's runtime API among them) answer and close once the
    // request is complete.
    let _ = stream.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let l = left();
        if l.is_zero() {
            return Err(io(std::io::ErrorKind::TimedOut.into(), "read", out.len()));
        }
        stream
            .set_read_timeout(step(l))
            .map_err(|e| io(e, "read", out.len()))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = max.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    return Ok(TcpOutput {
                        data: out,
                        truncated: true,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e, "read", out.len())),
        }
    }
    Ok(TcpOutput {
        data: out,
        truncated: false,
    })
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

/// What a pipe reader has read so far; shared so the call can return without
/// waiting for a pipe that a process outside its group still holds open.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<(Vec<u8>, bool)>>);

impl Captured {
    fn take(&self) -> (Vec<u8>, bool) {
        self.0
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default()
    }
}

/// Reads `r` to its end into `into`, keeping at most `cap` bytes, then says so on `done`.
fn read_capped(mut r: impl Read, cap: usize, into: Captured, done: mpsc::Sender<()>) {
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut g) = into.0.lock() {
                    let room = cap.saturating_sub(g.0.len());
                    if n > room {
                        g.1 = true;
                    }
                    g.0.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    }
    let _ = done.send(());
}

/// How long the pipes may stay open after the command ended: whatever is still
/// buffered arrives at once; a pipe held open longer is held by a process that
/// left the group, and the call does not wait for it.
const PIPE_GRACE: Duration = Duration::from_millis(200);

/// Whether the command has exited, asked without reaping it (its pid, and so its
/// process group's id, stay reserved); `None` when the system cannot say.
fn exited_unreaped(pid: u32) -> Option<bool> {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    let pid = i32::try_from(pid).ok().and_then(Pid::from_raw)?;
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
    waitid(WaitId::Pid(pid), opts).ok().map(|s| s.is_some())
}

/// Ends every process left in the command's process group.
fn kill_group(pid: u32) {
    if let Some(pgid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
}

/// Runs `program args…` without a shell, with a cleared environment (only a
/// fixed `PATH`), a timeout, and stdout/stderr each cut at `max_output` bytes.
///
/// The command leads a process group of its own. When it ends, or its time is up,
/// the whole group is killed, so nothing it started outlives the call, and the
/// call waits for the pipes only briefly: a grandchild that holds them open (or
/// escaped the group) never holds up the caller past its limit.
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
        .process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let pid = child.id();
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let (done_tx, done_rx) = mpsc::channel();
    let (out, err) = (Captured::default(), Captured::default());
    let mut readers = 0;
    if let Some(p) = child.stdout.take() {
        let (into, done) = (out.clone(), done_tx.clone());
        std::thread::spawn(move || read_capped(p, max_output, into, done));
        readers += 1;
    }
    if let Some(p) = child.stderr.take() {
        let (into, done) = (err.clone(), done_tx.clone());
        std::thread::spawn(move || read_capped(p, max_output, into, done));
        readers += 1;
    }
    drop(done_tx);
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        // The group is killed while the command is still unreaped, so its id cannot
        // have passed to another process group by then.
        match exited_unreaped(pid) {
            Some(true) => {
                kill_group(pid);
                match child.wait() {
                    Ok(s) => break s.code().unwrap_or(-1),
                    Err(e) => return Err(format!("waiting for {program:?}: {e}")),
                }
            }
            Some(false) => {}
            // Reaped without the group kill: what it left behind may run on.
            None => match child.try_wait() {
                Ok(Some(s)) => break s.code().unwrap_or(-1),
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for {program:?}: {e}")),
            },
        }
        if start.elapsed() >= timeout {
            timed_out = true;
            kill_group(pid);
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let grace_end = Instant::now() + PIPE_GRACE;
    let mut closed = 0;
    while closed < readers {
        let left = grace_end.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => closed += 1,
            Err(_) => break,
        }
    }
    let (stdout, t1) = out.take();
    let (stderr, t2) = err.take();
    Ok(ProcessOutput {
        status,
        stdout,
        stderr,
        truncated: t1 || t2 || closed < readers,
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
    fn a_grandchild_holding_the_pipes_does_not_hold_the_call() {
        // The shell backgrounds a sleeper that inherits stdout, then waits on it.
        let t = Instant::now();
        let out = run_process(
            "sh",
            &["-c".into(), "sleep 30 & echo started; wait".into()],
            None,
            Duration::from_millis(500),
            1024,
        )
        .expect("sh runs");
        assert!(out.timed_out);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // A grandchild left behind by a command that exits is ended with the group.
        let marker = std::env::temp_dir().join(format!("vigil-pg-{}", std::process::id()));
        let script = format!("(sleep 1; touch {}) & echo bye", marker.display());
        let t = Instant::now();
        let out = run_process(
            "sh",
            &["-c".into(), script],
            None,
            Duration::from_secs(10),
            1024,
        )
        .expect("sh runs");
        assert!(!out.timed_out);
        assert_eq!(out.status, 0);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            !marker.exists(),
            "the group's leftover ran on after the call"
        );
    }

    #[test]
    fn an_escaped_grandchild_keeps_nothing_waiting() {
        // `setsid` leaves the group; its pipes stay open, the call still returns.
        let t = Instant::now();
        let out = run_process(
            "sh",
            &["-c".into(), "setsid sleep 3 & echo out".into()],
            None,
            Duration::from_secs(10),
            1024,
        )
        .expect("sh runs");
        assert_eq!(out.status, 0);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn process_env_is_cleared() {
        let out = run_process("env", &[], None, Duration::from_secs(5), 4096).expect("env runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "PATH=/usr/local/bin:/usr/bin:/bin"
        );
    }

    fn addr(l: &std::net::TcpListener) -> crate::tcp_policy::CheckedAddr {
        crate::tcp_policy::CheckedAddr::parse(&l.local_addr().expect("addr").to_string())
            .expect("checked")
    }

    #[test]
    fn tcp_exchange_writes_closes_and_reads_to_the_end() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = addr(&l);
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut req = Vec::new();
            s.read_to_end(&mut req)
                .expect("the request ends with the write side closed");
            s.write_all(b"got: ").expect("write");
            s.write_all(&req).expect("write");
        });
        let out = tcp_exchange(&a, b"show info\n", Duration::from_secs(5), 1024).expect("answer");
        assert_eq!(out.data, b"got: show info\n");
        assert!(!out.truncated);
        server.join().expect("server");
    }

    #[test]
    fn tcp_exchange_is_bounded_in_time_and_size() {
        // Accepts and never answers (nor closes).
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = addr(&l);
        let hold = std::thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            std::thread::sleep(Duration::from_secs(1));
            drop(s);
        });
        let t = Instant::now();
        let e = tcp_exchange(&a, b"x\n", Duration::from_millis(300), 1024).expect_err("hangs");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(e.contains("no complete answer within 300 ms"), "{e}");
        hold.join().expect("holder");
        // An endless answer is cut at the limit.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = addr(&l);
        let flood = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let chunk = [b'y'; 64 * 1024];
            while s.write_all(&chunk).is_ok() {}
        });
        let t = Instant::now();
        let out = tcp_exchange(&a, b"x\n", Duration::from_secs(5), 100_000).expect("cut");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(out.truncated);
        assert_eq!(out.data.len(), 100_000);
        flood.join().expect("flooder");
        // Nobody listening: refused at once, named.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let a = crate::tcp_policy::CheckedAddr::parse(&format!("127.0.0.1:{port}")).expect("addr");
        let e = tcp_exchange(&a, b"x\n", Duration::from_secs(2), 10).expect_err("refused");
        assert!(e.contains(&format!("tcp 127.0.0.1:{port}: connect")), "{e}");
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
