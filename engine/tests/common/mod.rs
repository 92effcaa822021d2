//! Test support: builds the plugin crates for wasm32-wasip2 once per test binary
//! (or uses `VIGIL_PLUGIN_DIR`, which `make plugins` fills), and small helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every plugin crate: (package, file stem, test-only).
pub const PLUGINS: &[(&str, &str, bool)] = &[
    ("plugin-prometheus", "prometheus", false),
    ("plugin-http", "http", false),
    ("plugin-exec", "exec", false),
    ("plugin-file", "file", false),
    ("plugin-sim", "sim", false),
    ("plugin-noop", "noop", true),
    ("plugin-hostile", "hostile", true),
];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine/ has a parent")
        .to_path_buf()
}

fn file_for(dir: &Path, stem: &str, test_only: bool) -> PathBuf {
    if test_only {
        dir.join("test").join(format!("{stem}.wasm"))
    } else {
        dir.join(format!("{stem}.wasm"))
    }
}

/// The plugin directory: `<stem>.wasm` for the real plugins, `test/<stem>.wasm`
/// for the test-only ones. `make plugins` fills `$CARGO_TARGET_DIR/plugins`
/// (pass it as `VIGIL_PLUGIN_DIR`); otherwise the first test to ask builds them
/// there (`cargo build --release --target wasm32-wasip2`, a no-op when fresh).
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Ok(d) = std::env::var("VIGIL_PLUGIN_DIR") {
            let d = PathBuf::from(d);
            if PLUGINS.iter().all(|(_, stem, t)| file_for(&d, stem, *t).exists()) {
                return d;
            }
        }
        let root = workspace_root();
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&root).env("CARGO_TARGET_DIR", &target).args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"]);
        for (pkg, _, _) in PLUGINS {
            cmd.args(["-p", pkg]);
        }
        let status = cmd.status().expect("run cargo to build the plugins");
        assert!(status.success(), "building the plugins for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)");
        let out = target.join("plugins");
        std::fs::create_dir_all(out.join("test")).expect("create plugin dir");
        for (pkg, stem, test_only) in PLUGINS {
            let built = target.join("wasm32-wasip2/release").join(format!("{}.wasm", pkg.replace('-', "_")));
            std::fs::copy(&built, file_for(&out, stem, *test_only)).expect("copy built plugin");
        }
        out
    })
}

pub fn plugin_path(stem: &str) -> PathBuf {
    let test_only = PLUGINS
        .iter()
        .find(|(_, s, _)| *s == stem)
        .is_some_and(|(_, _, t)| *t);
    file_for(plugin_dir(), stem, test_only)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running `vigil serve` (the built binary), killed on drop — also when a test fails.
pub struct Server {
    pub child: std::process::Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a started server's log goes: `VIGIL_TEST_SERVER_LOG=<file>` keeps it (with
/// `VIGIL_LOG=info` for detail), otherwise it is dropped.
fn server_log() -> std::process::Stdio {
    std::env::var_os("VIGIL_TEST_SERVER_LOG")
        .and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        })
        .map_or_else(std::process::Stdio::null, std::process::Stdio::from)
}

/// Starts `vigil serve` on a free port with `config` and `store`, bearer `token`, and
/// `extra` serve arguments; returns once it says where it listens.
pub fn serve(config: &Path, store: &Path, token: &str, extra: &[&str]) -> Server {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--config")
        .arg(config)
        .arg("--store")
        .arg(store)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("VIGIL_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(server_log())
        .spawn()
        .expect("start vigil serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Server { child, base }
}

/// An HTTP client that returns 4xx/5xx as responses, with a 10 s deadline.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into()
}
