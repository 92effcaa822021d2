//! One daemon, many clients: whether a command opens the store itself or asks the
//! daemon that holds it. A running `vigil serve` leaves a beacon in its store
//! directory (`daemon.json`: its pid and address); a command finds the daemon from
//! `--server` / `VIGIL_SERVER`, else that beacon, else — when the store turns out to
//! be locked — the config's `api.listen`.

use super::{Global, invalid};
use anyhow::{Result, anyhow};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_bundle::Bundle;
use vigil_store::{Store, StoreError};

/// Where a command's data lives.
pub enum Target {
    /// No daemon holds the store: the command opens it.
    Local(Store),
    /// A daemon holds it: the command asks over the API.
    Daemon(Client),
}

/// Finds where this command's data lives (see the module doc).
pub fn target(g: &Global) -> Result<Target> {
    let bundle = g.bundle_dir().and_then(|d| Bundle::load(&d).ok());
    if let Some(server) = &g.server {
        return Ok(Target::Daemon(Client::at(server, bundle.as_ref())));
    }
    let dir = super::store_dir(g, bundle.as_ref());
    if let Some(url) = Beacon::read(&dir) {
        return Ok(Target::Daemon(Client::at(&url, bundle.as_ref())));
    }
    match Store::open(&dir) {
        Ok(s) => Ok(Target::Local(s)),
        Err(StoreError::Locked { .. }) => Ok(Target::Daemon(Client::new(g)?)),
        Err(e) => Err(anyhow!("opening the store at {}: {e}", dir.display())),
    }
}

/// `daemon.json` in the store directory while `vigil serve` runs there.
pub struct Beacon {
    path: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct BeaconFile {
    pid: u32,
    url: String,
}

impl Beacon {
    const FILE: &'static str = "daemon.json";

    /// Leaves the beacon (written whole, then renamed into place); `None` if it
    /// cannot be written, which only costs clients the discovery.
    pub fn write(store_dir: &Path, addr: SocketAddr) -> Option<Beacon> {
        let path = store_dir.join(Self::FILE);
        let tmp = store_dir.join(".daemon.json.tmp");
        let body = serde_json::to_vec(&BeaconFile {
            pid: std::process::id(),
            url: format!("http://{addr}"),
        })
        .ok()?;
        std::fs::write(&tmp, body).ok()?;
        std::fs::rename(&tmp, &path).ok()?;
        Some(Beacon { path })
    }

    /// The daemon's address, if a live process left a beacon in `store_dir`.
    fn read(store_dir: &Path) -> Option<String> {
        let text = std::fs::read(store_dir.join(Self::FILE)).ok()?;
        let b: BeaconFile = serde_json::from_slice(&text).ok()?;
        // A daemon killed without a goodbye leaves its beacon behind.
        Path::new(&format!("/proc/{}", b.pid))
            .exists()
            .then_some(b.url)
    }
}

impl Drop for Beacon {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A client of a running vigil's API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// The server of `--server` / `VIGIL_SERVER`, else the daemon holding the store
    /// (its beacon), else the config's `api.listen`.
    pub fn new(g: &Global) -> Result<Client> {
        let bundle = g
            .bundle_dir()
            .and_then(|d| Bundle::load(&d).ok())
            .unwrap_or_default();
        let base = g
            .server
            .clone()
            .or_else(|| Beacon::read(&super::store_dir(g, Some(&bundle))))
            .or_else(|| bundle.config.api.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:9797".into());
        Ok(Client::at(&base, Some(&bundle)))
    }

    fn at(base: &str, bundle: Option<&Bundle>) -> Client {
        let base = if base.starts_with("http://") || base.starts_with("https://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: client_token(bundle),
            agent,
        }
    }

    /// Calls the API; a 4xx is invalid input (exit 2), anything else failing exit 1,
    /// with the server's own explanation.
    pub fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Bearer {t}"))
            .unwrap_or_default();
        let resp = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            (_, b) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .content_type("application/json")
                .send(b.unwrap_or_default()),
        };
        let mut resp = resp.map_err(|e| anyhow!("cannot reach vigil at {}: {e}", self.base))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            let msg = format!(
                "{method} {path}: HTTP {status}: {}",
                v.get("detail")
                    .and_then(Value::as_str)
                    .map_or_else(|| v.to_string(), String::from)
            );
            return Err(if (400..500).contains(&status) {
                invalid(msg)
            } else {
                anyhow!(msg)
            });
        }
        Ok(v)
    }

    /// Calls the API and reads the answer as `T`.
    pub fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(serde_json::from_value(self.call("GET", path, None)?)?)
    }

    /// POSTs `body` as JSON.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call("POST", path, Some(serde_json::to_vec(body)?))
    }
}

/// The token this client sends: `VIGIL_TOKEN`, else the config's shared token.
fn client_token(bundle: Option<&Bundle>) -> Option<String> {
    let first = |v: String| {
        v.split(',')
            .map(str::trim)
            .find(|t| !t.is_empty())
            .map(String::from)
    };
    if let Some(t) = std::env::var("VIGIL_TOKEN").ok().and_then(first) {
        return Some(t);
    }
    let bundle = bundle?;
    let api = &bundle.config.api;
    if let Some(t) = api
        .token_env
        .as_ref()
        .and_then(|v| std::env::var(v).ok())
        .and_then(first)
    {
        return Some(t);
    }
    let path = api.token_file.as_ref().map(|f| {
        bundle
            .config
            .file
            .as_ref()
            .and_then(|c| c.parent())
            .map_or_else(|| PathBuf::from(f), |d| d.join(f))
    })?;
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .map(str::trim)
        .find(|t| !t.is_empty() && !t.starts_with('#'))
        .map(String::from)
}
