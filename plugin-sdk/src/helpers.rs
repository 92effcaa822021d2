//! Typed helpers over the host imports.

/// Logging through the host (needs the `log` capability; silently dropped otherwise).
pub mod log {
    use crate::bindings::vigil::plugin::log as host;

    pub fn trace(msg: &str) {
        host::log(host::Level::Trace, msg);
    }
    pub fn debug(msg: &str) {
        host::log(host::Level::Debug, msg);
    }
    pub fn info(msg: &str) {
        host::log(host::Level::Info, msg);
    }
    pub fn warn(msg: &str) {
        host::log(host::Level::Warn, msg);
    }
    pub fn error(msg: &str) {
        host::log(host::Level::Error, msg);
    }
}

/// Wall-clock time (needs the `clock` capability; frozen at 0 otherwise).
pub mod clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> i64 {
        crate::bindings::vigil::plugin::clock::now_ms()
    }
}

/// HTTP through the host, which checks every request against the grants.
pub mod http {
    use crate::bindings::vigil::plugin::http as host;
    use crate::{Error, Result};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// An HTTP request under construction.
    #[derive(Clone, Debug)]
    pub struct Request {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
        timeout_ms: Option<u32>,
    }

    impl Request {
        pub fn new(method: &str, url: &str) -> Self {
            Request {
                method: method.to_ascii_uppercase(),
                url: url.to_string(),
                headers: Vec::new(),
                body: None,
                timeout_ms: None,
            }
        }
        pub fn get(url: &str) -> Self {
            Self::new("GET", url)
        }
        pub fn post(url: &str) -> Self {
            Self::new("POST", url)
        }
        pub fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.to_string(), value.to_string()));
            self
        }
        pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
            self.body = Some(body.into());
            self
        }
        /// Sets a JSON body and `content-type: application/json`.
        pub fn json<T: Serialize>(self, body: &T) -> Result<Self> {
            let bytes = serde_json::to_vec(body)?;
            Ok(self.header("content-type", "application/json").body(bytes))
        }
        pub fn timeout_ms(mut self, ms: u32) -> Self {
            self.timeout_ms = Some(ms);
            self
        }
        pub fn method(&self) -> &str {
            &self.method
        }
        pub fn url(&self) -> &str {
            &self.url
        }
        /// Sends it. Non-2xx statuses are returned, not errors; see [`Response::error_for_status`].
        pub fn send(self) -> Result<Response> {
            let what = format!("{} {}", self.method, self.url);
            let resp = host::send(&host::Request {
                method: self.method,
                url: self.url,
                headers: self.headers,
                body: self.body,
                timeout_ms: self.timeout_ms,
            })
            .map_err(|e| Error::from_host(&what, e))?;
            Ok(Response {
                status: resp.status,
                headers: resp.headers,
                body: resp.body,
            })
        }
    }

    /// An HTTP response.
    #[derive(Clone, Debug)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Response {
        pub fn is_success(&self) -> bool {
            (200..300).contains(&self.status)
        }
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
        pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
            serde_json::from_slice(&self.body)
                .map_err(|e| Error::failed(format!("response body: {e}")))
        }
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        /// Turns a non-2xx status into an error carrying the start of the body.
        pub fn error_for_status(self) -> Result<Self> {
            if self.is_success() {
                return Ok(self);
            }
            let mut text = self.text();
            text.truncate(512);
            Err(Error::failed(format!("HTTP {}: {}", self.status, text)))
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Result<Response> {
        Request::get(url).send()
    }

    /// Percent-encodes a query-string component (RFC 3986 unreserved kept).
    pub fn encode(s: &str) -> String {
        let mut out = String::with_capacity(s.len() * 3);
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    /// `a=1&b=2` from pairs, each part encoded.
    pub fn query_string(pairs: &[(&str, &str)]) -> String {
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// The plugin's key-value namespace on the host (needs `kv`; writes need a live run).
pub mod kv {
    use crate::bindings::vigil::plugin::kv as host;
    use crate::{Error, Result};

    pub fn get(key: &str) -> Result<Option<String>> {
        host::get(key).map_err(|e| Error::from_host("kv get", e))
    }
    pub fn set(key: &str, value: &str) -> Result<()> {
        host::set(key, value).map_err(|e| Error::from_host("kv set", e))
    }
    pub fn delete(key: &str) -> Result<()> {
        host::delete(key).map_err(|e| Error::from_host("kv delete", e))
    }
}

/// Named secrets (needs `secrets` for that name).
pub mod secrets {
    use crate::bindings::vigil::plugin::secrets as host;
    use crate::{Error, Result};

    pub fn get(name: &str) -> Result<String> {
        host::get(name).map_err(|e| Error::from_host(&format!("secret {name:?}"), e))
    }
}

/// Commands run by the host, without a shell (needs `process` for the program).
pub mod process {
    use crate::bindings::vigil::plugin::process as host;
    use crate::{Error, Result};

    /// A command to run on the host.
    #[derive(Clone, Debug)]
    pub struct Command {
        program: String,
        args: Vec<String>,
        stdin: Option<Vec<u8>>,
        timeout_ms: Option<u32>,
    }

    /// What it did.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Output {
        /// Exit code; -1 when killed (signal or timeout).
        pub status: i32,
        pub stdout: Vec<u8>,
        pub stderr: Vec<u8>,
        pub truncated: bool,
        pub timed_out: bool,
    }

    impl Output {
        pub fn success(&self) -> bool {
            self.status == 0 && !self.timed_out
        }
        pub fn stdout_text(&self) -> String {
            String::from_utf8_lossy(&self.stdout).into_owned()
        }
        pub fn stderr_text(&self) -> String {
            String::from_utf8_lossy(&self.stderr).into_owned()
        }
    }

    impl Command {
        pub fn new(program: &str) -> Self {
            Command {
                program: program.into(),
                args: Vec::new(),
                stdin: None,
                timeout_ms: None,
            }
        }
        pub fn arg(mut self, a: impl Into<String>) -> Self {
            self.args.push(a.into());
            self
        }
        pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
            self.args.extend(args.into_iter().map(Into::into));
            self
        }
        pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
            self.stdin = Some(data.into());
            self
        }
        pub fn timeout_ms(mut self, ms: u32) -> Self {
            self.timeout_ms = Some(ms);
            self
        }
        pub fn run(self) -> Result<Output> {
            let what = format!("process {}", self.program);
            let out = host::run(&host::Command {
                program: self.program,
                args: self.args,
                stdin: self.stdin,
                timeout_ms: self.timeout_ms,
            })
            .map_err(|e| Error::from_host(&what, e))?;
            Ok(Output {
                status: out.status,
                stdout: out.stdout,
                stderr: out.stderr,
                truncated: out.truncated,
                timed_out: out.timed_out,
            })
        }
    }
}

/// One request and its answer over TCP, made by the host (needs `tcp` for the
/// address; in a plan it is denied, as a write: the host cannot tell one from the
/// other on a raw connection, so `execute` declares `tcp:<host>:<port>`).
pub mod tcp {
    use crate::bindings::vigil::plugin::tcp as host;
    use crate::{Error, Result};

    /// What came back: everything the peer sent before closing, or the first
    /// `io_kib` of it when `truncated`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Answer {
        pub data: Vec<u8>,
        pub truncated: bool,
    }

    impl Answer {
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.data).into_owned()
        }
    }

    /// Connects to `address` (`host:port`), sends `data`, closes the sending side and
    /// reads until the peer closes, within `timeout_ms` (and the call's own limit).
    pub fn exchange(address: &str, data: &[u8], timeout_ms: Option<u32>) -> Result<Answer> {
        let out = host::exchange(&host::Request {
            address: address.to_string(),
            data: data.to_vec(),
            timeout_ms,
        })
        .map_err(|e| {
            // The host's own errors name the (normalised) address already.
            if e.starts_with("tcp ") {
                Error::failed(e)
            } else {
                Error::from_host(&format!("tcp {address}"), e)
            }
        })?;
        Ok(Answer {
            data: out.data,
            truncated: out.truncated,
        })
    }
}
