//! Capability grants: what the operator allows a plugin instance to do, as
//! written in `vigil.yaml`, and the checks the host applies on every import call.
//!
//! ```yaml
//! sources:
//!   - name: prom
//!     plugin: prometheus
//!     config: { url: "http://127.0.0.1:9090" }
//!     grants:
//!       log: true
//!       clock: true
//!       http:
//!         - { url: "http://127.0.0.1:9090/*", methods: [GET, POST] }
//!       kv: { namespace: prom, write: true }
//!       secrets: [slack-token]
//!       process:
//!         - { command: systemctl, args: [restart, "re:^[a-z0-9@.-]+$"] }
//!       files:
//!         - { path: /var/lib/metrics }
//!       tcp:
//!         - { address: "127.0.0.1:9999" }
//! ```
//!
//! Effective capabilities = requested by the plugin (`describe`) ∩ granted here.

use super::http_policy::{CheckedUrl, UrlPattern};
use super::tcp_policy::{AddrPattern, CheckedAddr};
pub use crate::glob::glob_match;
use serde::Deserialize;
use std::fmt;

/// Everything granted to one plugin instance. The default grants nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Host logging (via `tracing`).
    #[serde(default)]
    pub log: bool,
    /// The real wall clock (otherwise frozen at the Unix epoch).
    #[serde(default)]
    pub clock: bool,
    /// HTTP requests the host makes on the plugin's behalf.
    #[serde(default)]
    pub http: Vec<HttpGrant>,
    /// A key-value namespace.
    #[serde(default)]
    pub kv: Option<KvGrant>,
    /// Named secrets the plugin may read.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Commands the host runs on the plugin's behalf, without a shell.
    #[serde(default)]
    pub process: Vec<ProcessGrant>,
    /// Directories the plugin may read (read-only, at the same path inside the sandbox).
    #[serde(default)]
    pub files: Vec<FilesGrant>,
    /// `host:port` addresses the host exchanges one request and answer with over TCP.
    #[serde(default)]
    pub tcp: Vec<TcpGrant>,
}

/// `{ address: "127.0.0.1:9999" }`: TCP exchanges with that address (see
/// [`super::tcp_policy`]: `*` is one host label, `:*` any port).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpGrant {
    pub address: String,
}

impl TcpGrant {
    pub fn allows(&self, addr: &CheckedAddr) -> bool {
        AddrPattern::parse(&self.address).is_ok_and(|p| p.matches(addr))
    }
}

/// `{ path: /var/lib/metrics }`: read-only, visible to the plugin at the same path.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesGrant {
    pub path: String,
}

/// `{ url: "https://hooks.slack.com/services/*", methods: [POST] }`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// A URL pattern matched on the parsed, normalised request URL: `*` is one host
    /// label, part of one path segment, or (last) everything below
    /// (see [`super::http_policy`]).
    pub url: String,
    /// Allowed methods, upper case; default `[GET, HEAD]`.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
}

fn default_methods() -> Vec<String> {
    vec!["GET".into(), "HEAD".into()]
}

/// `{ namespace: prom, write: true }`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvGrant {
    pub namespace: String,
    /// Allow `set`/`delete` (only ever in a live run).
    #[serde(default)]
    pub write: bool,
}

/// `{ command: systemctl, args: [restart, "re:^[a-z-]+$"] }`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessGrant {
    /// The program, exactly as the plugin names it (a bare name is looked up in `PATH`).
    pub command: String,
    /// One pattern per argument, matched against the whole argument: a glob (`*`), or
    /// a regex with `re:` prefix (anchored). A final `"**"` matches any remaining
    /// arguments. Empty = no arguments allowed. An argument that starts with `-` is
    /// an option: only a pattern that itself starts with `-` (`--since=*`,
    /// `re:-[nv]`) admits it, so a `*` meant for a name never lets `-delete` in.
    #[serde(default)]
    pub args: Vec<String>,
}

/// Which capability an import call needs, with what the call asked for, so a
/// denial can say exactly which grant line would allow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need<'a> {
    Http {
        method: &'a str,
        url: &'a CheckedUrl,
    },
    KvRead,
    KvWrite,
    Secret(&'a str),
    Process {
        program: &'a str,
        args: &'a [String],
    },
    Tcp {
        addr: &'a CheckedAddr,
    },
}

impl Need<'_> {
    /// The YAML grant line that would allow this call.
    pub fn grant_line(&self) -> String {
        match self {
            Need::Http { method, url } => {
                format!("grants: {{ http: [{{ url: \"{url}\", methods: [{method}] }}] }}")
            }
            Need::KvRead => "grants: { kv: { namespace: <name> } }".to_string(),
            Need::KvWrite => "grants: { kv: { namespace: <name>, write: true } }".to_string(),
            Need::Secret(name) => format!("grants: {{ secrets: [{name}] }}"),
            Need::Process { program, args } => {
                let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
                format!(
                    "grants: {{ process: [{{ command: {program}, args: [{}] }}] }}",
                    args.join(", ")
                )
            }
            Need::Tcp { addr } => format!("grants: {{ tcp: [{{ address: \"{addr}\" }}] }}"),
        }
    }
}

impl fmt::Display for Need<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Need::Http { method, url } => write!(f, "http {method} {url}"),
            Need::KvRead => f.write_str("kv read"),
            Need::KvWrite => f.write_str("kv write"),
            Need::Secret(n) => write!(f, "secret {n:?}"),
            Need::Process { program, args } => write!(f, "process {program} {args:?}"),
            Need::Tcp { addr } => write!(f, "tcp {addr}"),
        }
    }
}

/// Whether `pattern` was written to admit options (arguments starting with `-`).
fn admits_options(pattern: &str) -> bool {
    let p = pattern.strip_prefix("re:").map_or(pattern, |re| {
        let re = re.strip_prefix('^').unwrap_or(re);
        re.strip_prefix('\\').unwrap_or(re)
    });
    p.starts_with('-')
}

fn arg_matches(pattern: &str, arg: &str) -> bool {
    if arg.starts_with('-') && !admits_options(pattern) {
        return false;
    }
    if let Some(re) = pattern.strip_prefix("re:") {
        let anchored = format!("^(?:{re})$");
        match regex::Regex::new(&anchored) {
            Ok(r) => r.is_match(arg),
            Err(_) => false,
        }
    } else {
        glob_match(pattern, arg)
    }
}

impl ProcessGrant {
    /// Whether this grant allows `program args…`.
    pub fn allows(&self, program: &str, args: &[String]) -> bool {
        if self.command != program {
            return false;
        }
        let mut i = 0;
        for (pi, pat) in self.args.iter().enumerate() {
            if pat == "**" && pi + 1 == self.args.len() {
                // Any remaining arguments, but no options among them.
                return args[i.min(args.len())..]
                    .iter()
                    .all(|a| !a.starts_with('-'));
            }
            match args.get(i) {
                Some(a) if arg_matches(pat, a) => i += 1,
                _ => return false,
            }
        }
        i == args.len()
    }
}

impl HttpGrant {
    pub fn allows(&self, method: &str, url: &CheckedUrl) -> bool {
        self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
            && UrlPattern::parse(&self.url).is_ok_and(|p| p.matches(url))
    }
}

impl Grants {
    /// Checks the grant (not the call mode) for a need.
    pub fn allows(&self, need: &Need<'_>) -> bool {
        match need {
            Need::Http { method, url } => self.http.iter().any(|g| g.allows(method, url)),
            Need::KvRead => self.kv.is_some(),
            Need::KvWrite => self.kv.as_ref().is_some_and(|k| k.write),
            Need::Secret(n) => self.secrets.iter().any(|s| s == n),
            Need::Process { program, args } => self.process.iter().any(|g| g.allows(program, args)),
            Need::Tcp { addr } => self.tcp.iter().any(|g| g.allows(addr)),
        }
    }

    /// Checks that the patterns in the grants are well-formed.
    pub fn validate(&self) -> Result<(), GrantError> {
        for g in &self.http {
            if g.methods.is_empty() {
                return Err(GrantError(format!(
                    "http grant {:?} lists no methods",
                    g.url
                )));
            }
            UrlPattern::parse(&g.url).map_err(|e| GrantError(format!("http grant: {e}")))?;
        }
        for g in &self.process {
            if g.command.is_empty() || g.command.contains(char::is_whitespace) {
                return Err(GrantError(format!(
                    "process grant command {:?} must be a single program",
                    g.command
                )));
            }
            for a in &g.args {
                if let Some(re) = a.strip_prefix("re:") {
                    regex::Regex::new(re).map_err(|e| {
                        GrantError(format!(
                            "process grant {:?}: bad regex {re:?}: {e}",
                            g.command
                        ))
                    })?;
                }
            }
        }
        for g in &self.tcp {
            AddrPattern::parse(&g.address).map_err(|e| GrantError(format!("tcp grant: {e}")))?;
        }
        for f in &self.files {
            if !f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
                return Err(GrantError(format!(
                    "files grant {:?} must be an absolute path without '..'",
                    f.path
                )));
            }
        }
        if let Some(kv) = &self.kv
            && (kv.namespace.is_empty() || kv.namespace.len() > 128)
        {
            return Err(GrantError(
                "kv grant namespace must be 1..=128 characters".into(),
            ));
        }
        Ok(())
    }
}

/// A grant written so that it cannot be checked (a bad pattern, path or namespace).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GrantError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "http://127.0.0.1:9090/*",
            "http://127.0.0.1:9090/api/v1/query?q=up"
        ));
        assert!(!glob_match(
            "http://127.0.0.1:9090/*",
            "http://127.0.0.1:9091/api"
        ));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn process_args() {
        let g = ProcessGrant {
            command: "systemctl".into(),
            args: vec!["restart".into(), "re:[a-z-]+".into()],
        };
        assert!(g.allows("systemctl", &["restart".into(), "nginx".into()]));
        assert!(!g.allows("systemctl", &["restart".into(), "nginx;rm".into()]));
        assert!(!g.allows("systemctl", &["stop".into(), "nginx".into()]));
        assert!(!g.allows("systemctl", &["restart".into()]));
        assert!(!g.allows("systemctl", &["restart".into(), "a".into(), "b".into()]));
        assert!(!g.allows("/bin/systemctl", &["restart".into(), "nginx".into()]));
        let any = ProcessGrant {
            command: "echo".into(),
            args: vec!["**".into()],
        };
        assert!(any.allows("echo", &[]));
        assert!(any.allows("echo", &["a".into(), "b".into()]));
        assert!(!any.allows("echo", &["a".into(), "-e".into()]));
        let none = ProcessGrant {
            command: "true".into(),
            args: vec![],
        };
        assert!(none.allows("true", &[]));
        assert!(!none.allows("true", &["x".into()]));
    }

    #[test]
    fn options_pass_only_patterns_written_for_options() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let find = ProcessGrant {
            command: "find".into(),
            args: vec!["/var/log".into(), "*".into()],
        };
        assert!(find.allows("find", &args(&["/var/log", "nginx"])));
        assert!(!find.allows("find", &args(&["/var/log", "-delete"])));
        let documented = ProcessGrant {
            command: "systemctl".into(),
            args: vec!["restart".into(), "re:^[a-z0-9@.-]+$".into()],
        };
        assert!(documented.allows("systemctl", &args(&["restart", "nginx"])));
        assert!(!documented.allows("systemctl", &args(&["restart", "--force"])));
        assert!(!documented.allows("systemctl", &args(&["restart", "-H"])));
        let opts = ProcessGrant {
            command: "journalctl".into(),
            args: vec!["--since=*".into(), "re:-[nq]".into(), "re:^\\-u".into()],
        };
        assert!(opts.allows("journalctl", &args(&["--since=1h", "-n", "-u"])));
        assert!(!opts.allows("journalctl", &args(&["--since=1h", "-x", "-u"])));
        // A whole argument, not a part of one.
        let exact = ProcessGrant {
            command: "kill".into(),
            args: vec!["re:[0-9]+".into()],
        };
        assert!(!exact.allows("kill", &args(&["12 -9"])));
        assert!(!exact.allows("kill", &args(&["-9"])));
    }

    #[test]
    fn grant_yaml_rejects_unknown_keys() {
        let ok: Grants = serde_json::from_str(
            r#"{"http":[{"url":"http://x/*"}],"kv":{"namespace":"n"},"secrets":["s"],"log":true}"#,
        )
        .expect("valid grants");
        assert_eq!(ok.http[0].methods, vec!["GET", "HEAD"]);
        assert!(serde_json::from_str::<Grants>(r#"{"htp":[]}"#).is_err());
        let tcp: Grants =
            serde_json::from_str(r#"{"tcp":[{"address":"127.0.0.1:9999"}]}"#).expect("tcp grant");
        assert!(tcp.validate().is_ok());
        assert!(serde_json::from_str::<Grants>(r#"{"tcp":[{"addr":"127.0.0.1:9999"}]}"#).is_err());
        assert!(serde_json::from_str::<Grants>(r#"{"tcp":["127.0.0.1:9999"]}"#).is_err());
        for bad in ["127.0.0.1", "tcp://127.0.0.1:9", "127.0.0.1:0", "h:x"] {
            let g: Grants =
                serde_json::from_value(serde_json::json!({ "tcp": [{ "address": bad }] }))
                    .expect("shape");
            assert!(g.validate().is_err(), "{bad}");
        }
        assert!(
            serde_json::from_str::<Grants>(r#"{"http":[{"url":"x","method":["GET"]}]}"#).is_err()
        );
    }

    #[test]
    fn grant_lines_quote_the_call() {
        let url = CheckedUrl::parse("http://127.0.0.1:9/hook").expect("url");
        let n = Need::Http {
            method: "POST",
            url: &url,
        };
        assert_eq!(
            n.grant_line(),
            r#"grants: { http: [{ url: "http://127.0.0.1:9/hook", methods: [POST] }] }"#
        );
        let addr = CheckedAddr::parse("0x7f.0.0.1:9999").expect("addr");
        assert_eq!(
            Need::Tcp { addr: &addr }.grant_line(),
            r#"grants: { tcp: [{ address: "127.0.0.1:9999" }] }"#
        );
        let args = vec!["restart".to_string(), "nginx".to_string()];
        let p = Need::Process {
            program: "systemctl",
            args: &args,
        };
        assert_eq!(
            p.grant_line(),
            r#"grants: { process: [{ command: systemctl, args: ["restart", "nginx"] }] }"#
        );
    }
}
