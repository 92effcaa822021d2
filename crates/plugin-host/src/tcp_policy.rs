//! What a plugin's TCP exchange may reach: `host:port` grants and declared effects,
//! matched on a parsed, normalised address with the same host rules as HTTP grants.
//!
//! A grant or an effect is written `host:port`:
//! - `*` in the host stands for one label (`*.example.com`), never a dot;
//! - the port is always written; `:*` allows any port;
//! - an IPv6 host is bracketed: `[::1]:9999`.
//!
//! An address a plugin asks for is parsed and normalised first (host case, IDNA, the
//! other spellings of an IPv4 address such as `0x7f.0.0.1` or `2130706433`, IPv6
//! compression), and what was checked is what the host connects to. Anything that is
//! not `host:port` — a scheme, a path, user info, whitespace, a port out of range or
//! written with a sign — is refused rather than guessed at.

use crate::http_policy::{host_matches, split_host_port};
use std::fmt;
use url::Url;

/// Why an address or a pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddrError(String);

/// Characters that make `host:port` into something else (a URL, user info, a path).
const NOT_IN_AN_ADDRESS: &[char] = &['/', '\\', '@', '?', '#'];

/// The host part normalised as a URL's host is (case, IDNA, IPv4 spellings, IPv6).
fn normal_host(host: &str) -> Option<String> {
    if host.is_empty() {
        return None;
    }
    Url::parse(&format!("http://{host}/"))
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .filter(|h| !h.is_empty())
}

fn split(raw: &str) -> Result<(&str, &str), String> {
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    if raw.contains(NOT_IN_AN_ADDRESS) {
        return Err("must be `host:port`, without a scheme, user info or path".into());
    }
    match split_host_port(raw)? {
        (host, Some(port)) if !host.is_empty() => Ok((host, port)),
        (_, Some(_)) => Err("has no host".into()),
        (_, None) => Err("has no port (write `host:port`)".into()),
    }
}

fn port_number(port: &str) -> Result<u16, String> {
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number from 1 to 65535"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
}

/// An address after parsing and normalisation: what grants are matched against and
/// what the host connects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedAddr {
    /// As a URL writes it: IPv6 in brackets.
    host: String,
    port: u16,
    text: String,
}

impl CheckedAddr {
    pub fn parse(raw: &str) -> Result<CheckedAddr, AddrError> {
        let bad = |why: String| AddrError(format!("TCP address {raw:?}: {why}"));
        let (host, port) = split(raw).map_err(bad)?;
        let port = port_number(port).map_err(bad)?;
        let host = normal_host(host).ok_or_else(|| bad("the host is not valid".into()))?;
        Ok(CheckedAddr {
            text: format!("{host}:{port}"),
            host,
            port,
        })
    }

    /// `host:port`, normalised.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The host without IPv6 brackets, for resolving.
    pub fn bare_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for CheckedAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A parsed `host:port` pattern from a grant or a plan's declared effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrPattern {
    /// Host labels, lowercase; a label may hold `*` globs that never cross a dot.
    host: Vec<String>,
    /// `None` matches any port.
    port: Option<u16>,
}

impl AddrPattern {
    pub fn parse(text: &str) -> Result<AddrPattern, AddrError> {
        let bad = |why: String| AddrError(format!("TCP address pattern {text:?}: {why}"));
        let (host, port) = split(text).map_err(bad)?;
        let port = match port {
            "*" => None,
            p => Some(port_number(p).map_err(bad)?),
        };
        let host = if host.contains('*') {
            if host.starts_with('[') {
                return Err(bad("an IPv6 host cannot hold `*`".into()));
            }
            host.to_ascii_lowercase()
        } else {
            normal_host(host).ok_or_else(|| bad("the host is not valid".into()))?
        };
        Ok(AddrPattern {
            host: host.split('.').map(str::to_string).collect(),
            port,
        })
    }

    /// Whether a normalised address falls under this pattern.
    pub fn matches(&self, addr: &CheckedAddr) -> bool {
        self.port.is_none_or(|p| p == addr.port) && host_matches(&self.host, &addr.host)
    }
}

impl fmt::Display for AddrPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host.join("."))?;
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => f.write_str(":*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, addr: &str) -> bool {
        let p = AddrPattern::parse(pattern).expect("pattern");
        CheckedAddr::parse(addr).is_ok_and(|a| p.matches(&a))
    }

    #[test]
    fn other_spellings_of_an_address_are_the_address() {
        let g = "127.0.0.1:9999";
        assert!(allows(g, "127.0.0.1:9999"));
        assert!(allows(g, "0x7f.0.0.1:9999"));
        assert!(allows(g, "2130706433:9999"));
        assert!(allows(g, "127.1:9999"));
        assert!(allows(g, "127.0.0.1:09999"));
        assert!(!allows(g, "127.0.0.2:9999"));
        assert!(!allows(g, "127.0.0.1:9998"));
        assert!(!allows(g, "0.0.0.0:9999"));
        assert!(!allows(g, "localhost:9999"));
        assert!(allows("[::1]:9", "[0:0::1]:9"));
        assert!(!allows("[::1]:9", "127.0.0.1:9"));
        assert!(allows("localhost:9", "LocalHost:9"));
        assert_eq!(
            CheckedAddr::parse("0x7F.0.0.1:80").expect("addr").as_str(),
            "127.0.0.1:80"
        );
        assert_eq!(
            CheckedAddr::parse("[0:0::1]:80").expect("addr").bare_host(),
            "::1"
        );
    }

    #[test]
    fn host_stars_match_one_label_and_port_stars_any_port() {
        let g = "*.example.com:6379";
        assert!(allows(g, "a.example.com:6379"));
        assert!(allows(g, "A.EXAMPLE.com:6379"));
        assert!(!allows(g, "example.com:6379"));
        assert!(!allows(g, "a.b.example.com:6379"));
        assert!(!allows(g, "a.example.com.evil.test:6379"));
        assert!(!allows(g, "a.example.com:6380"));
        assert!(allows("127.0.0.1:*", "127.0.0.1:1"));
        assert!(allows("127.0.0.1:*", "127.0.0.1:65535"));
        // A lone `*` is a single-label host, not any host.
        assert!(!allows("*:*", "evil.example:1"));
        assert!(allows("*:*", "localhost:1"));
    }

    #[test]
    fn anything_but_host_and_port_is_refused() {
        for raw in [
            "127.0.0.1",
            "127.0.0.1:",
            ":9999",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:+99",
            "127.0.0.1:-1",
            "127.0.0.1:9x",
            "127.0.0.1:*",
            "tcp://127.0.0.1:9999",
            "user@127.0.0.1:9999",
            "127.0.0.1:9999/admin",
            "127.0.0.1:9999?x",
            "127.0.0.1:9999#x",
            "127.0.0.1\\x:9999",
            "127.0.0.1 :9999",
            "127.0.0.1:9999\n",
            "127.0.0.1:99\u{0}99",
            "[::1:9999",
            "::1:9999",
            "a b:1",
            "",
        ] {
            let e = CheckedAddr::parse(raw).expect_err(raw).to_string();
            assert!(e.contains("TCP address"), "{raw}: {e}");
        }
        for raw in [
            "127.0.0.1",
            "tcp://127.0.0.1:1",
            "127.0.0.1:0",
            "[*::1]:1",
            "x/y:1",
            "h:p",
        ] {
            assert!(AddrPattern::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn patterns_print_as_they_match() {
        assert_eq!(
            AddrPattern::parse("0x7f.0.0.1:9999")
                .expect("pattern")
                .to_string(),
            "127.0.0.1:9999"
        );
        assert_eq!(
            AddrPattern::parse("*.Example.com:*")
                .expect("pattern")
                .to_string(),
            "*.example.com:*"
        );
    }
}
