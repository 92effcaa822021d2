//! What a plugin's HTTP request may be: URL grants and declared effects matched on
//! parsed, normalised URLs, and the headers and bodies the host keeps to itself.
//!
//! A grant is written as a URL pattern, `scheme://host[:port]/path[?query]`:
//! - `*` in the host stands for one label (`*.example.com` matches `a.example.com`,
//!   never `evil.test/x.example.com` or `a.b.example.com`);
//! - the port is the scheme's default unless written; `:*` allows any port;
//! - without a path (`http://127.0.0.1:9090`), any path on that origin;
//! - `*` in the path stands for part of one segment, except a final `*`, which also
//!   matches any segments after it (`/api/*` is everything under `/api/`);
//! - without `?`, any query is allowed; with one, the query is matched as a glob.
//!
//! A request URL is parsed and normalised first (scheme and host case, default
//! port, dot segments, percent-encoded dots), and what was checked is what is sent.
//! A path whose segments decode to `.`, `..`, or contain `/`, `\` or NUL is refused:
//! a backend that decodes again could read it as another path.

use crate::glob::glob_match;
use std::fmt;
use url::Url;

/// A parsed URL pattern from a grant or a plan's declared effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlPattern {
    scheme: String,
    /// Host labels, lowercase; a label may hold `*` globs that never cross a dot.
    host: Vec<String>,
    /// `None` matches any port.
    port: Option<u16>,
    /// The decoded path pattern.
    path: String,
    query: Option<String>,
}

/// Why a pattern or a URL was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl UrlPattern {
    pub fn parse(text: &str) -> Result<UrlPattern, UrlError> {
        let bad = |why: &str| UrlError(format!("URL pattern {text:?}: {why}"));
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("must start with http:// or https://"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("only http and https are allowed"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or control characters"));
        }
        let rest = rest.split('#').next().unwrap_or("");
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        if authority.contains('@') {
            return Err(bad("user info is not allowed"));
        }
        let (host, port) = split_host_port(authority).map_err(|e| bad(&e))?;
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let port = match port {
            None => default_port(&scheme),
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| bad("the port must be a number or `*`"))?,
            ),
        };
        let host = if host.contains('*') {
            host.to_ascii_lowercase()
        } else {
            // The same normalisation a request's host gets (case, IDNA, IPv4 forms).
            Url::parse(&format!("{scheme}://{host}/"))
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .ok_or_else(|| bad("the host is not valid"))?
        };
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (tail, None),
        };
        // An origin alone grants all of it, as in a CSP source list.
        let path = if path.is_empty() { "/*" } else { path };
        let path = decoded_path(path).map_err(|e| bad(&e))?;
        Ok(UrlPattern {
            scheme,
            host: host.split('.').map(str::to_string).collect(),
            port,
            path,
            query,
        })
    }

    /// Whether a normalised request URL falls under this pattern.
    pub fn matches(&self, url: &CheckedUrl) -> bool {
        self.scheme == url.scheme
            && self.port.is_none_or(|p| p == url.port)
            && host_matches(&self.host, &url.host)
            && path_matches(&self.path, &url.path)
            && self
                .query
                .as_deref()
                .is_none_or(|q| glob_match(q, url.query.as_deref().unwrap_or("")))
    }
}

impl fmt::Display for UrlPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host.join("."))?;
        match self.port {
            Some(p) if Some(p) != default_port(&self.scheme) => write!(f, ":{p}")?,
            Some(_) => {}
            None => f.write_str(":*")?,
        }
        f.write_str(&self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

pub(crate) fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or("an IPv6 host lacks its `]`")?;
        let host = &authority[..end + 2];
        return match &authority[end + 2..] {
            "" => Ok((host, None)),
            rest => rest
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or_else(|| "unexpected text after the IPv6 host".to_string()),
        };
    }
    Ok(match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    })
}

pub(crate) fn host_matches(pattern: &[String], host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() == pattern.len()
        && pattern
            .iter()
            .zip(&labels)
            .all(|(p, l)| !l.is_empty() && glob_match(p, l))
}

/// `*` matches within one segment; a final `*` also matches any segments after it.
/// Dynamic programming over the pattern, so any pattern costs O(pattern × path).
fn path_matches(pattern: &str, path: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), path.as_bytes());
    // reach[j]: the pattern so far matches exactly t[..j].
    let mut reach = vec![false; t.len() + 1];
    reach[0] = true;
    for (i, &c) in p.iter().enumerate() {
        if c == b'*' && i + 1 == p.len() {
            return reach.iter().any(|&r| r);
        }
        let mut next = vec![false; t.len() + 1];
        if c == b'*' {
            let mut open = false;
            for j in 0..=t.len() {
                if j > 0 && t[j - 1] == b'/' {
                    open = false;
                }
                open |= reach[j];
                next[j] = open;
            }
        } else {
            for j in 0..t.len() {
                next[j + 1] = reach[j] && t[j] == c;
            }
        }
        reach = next;
    }
    reach[t.len()]
}

/// Percent-decodes a path segment by segment, refusing what a backend could read
/// as another path.
fn decoded_path(raw: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for seg in raw.split('/') {
        let bytes = percent_decode(seg)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("path segment {seg:?} does not decode to UTF-8"))?;
        if text == "." || text == ".." {
            return Err(format!("path segment {seg:?} is a dot segment"));
        }
        if text.contains(['/', '\\', '\0']) {
            return Err(format!(
                "path segment {seg:?} decodes to a `/`, `\\` or NUL, which a backend could split"
            ));
        }
        out.push(text);
    }
    Ok(out.join("/"))
}

fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// A request URL after parsing and normalisation: what grants are matched against
/// and what is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedUrl {
    scheme: String,
    host: String,
    port: u16,
    /// Decoded, for matching.
    path: String,
    query: Option<String>,
    /// The normalised URL as sent (fragment dropped).
    text: String,
}

impl CheckedUrl {
    pub fn parse(raw: &str) -> Result<CheckedUrl, UrlError> {
        let bad = |why: String| UrlError(format!("URL {raw:?}: {why}"));
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or control characters".into()));
        }
        let mut url = Url::parse(raw).map_err(|e| bad(e.to_string()))?;
        let scheme = url.scheme().to_string();
        if scheme != "http" && scheme != "https" {
            return Err(bad("only http:// and https:// URLs are allowed".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("URLs with user info are not allowed".into()));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("has no host".into()))?
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| bad("has no port".into()))?;
        let path = decoded_path(url.path()).map_err(bad)?;
        url.set_fragment(None);
        Ok(CheckedUrl {
            scheme,
            host,
            port,
            path,
            query: url.query().map(str::to_string),
            text: url.to_string(),
        })
    }

    /// The normalised URL, as it is sent.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for CheckedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Headers that describe the connection or the request's routing: the host sets
/// them from the checked URL and the body, never the plugin.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Headers some servers honour to run a request as another method: a GET that says
/// "treat me as DELETE" is not a read.
const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Checks a request's method, headers and body before any grant is consulted.
/// A GET or HEAD carries no body, so a read stays a read on any server.
pub fn check_request(
    method: &str,
    headers: &[(String, String)],
    has_body: bool,
) -> Result<(), String> {
    if !method.bytes().all(|b| b.is_ascii_alphabetic()) || method.is_empty() || method.len() > 16 {
        return Err(format!("bad HTTP method {method:?}"));
    }
    for (name, _) in headers {
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(format!(
                "header {name:?} is set by the host, not by a plugin"
            ));
        }
        if METHOD_OVERRIDES.contains(&lower.as_str()) {
            return Err(format!(
                "header {name:?} would change the method; send the method itself (and declare it)"
            ));
        }
    }
    let read = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD");
    if read && has_body {
        return Err(format!(
            "a {method} request may not carry a body (a read must stay a read); use POST and declare it"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, url: &str) -> bool {
        let p = UrlPattern::parse(pattern).expect("pattern");
        CheckedUrl::parse(url).is_ok_and(|u| p.matches(&u))
    }

    #[test]
    fn prefix_grants_hold_against_dot_segments() {
        let g = "http://127.0.0.1:9090/api/*";
        assert!(allows(g, "http://127.0.0.1:9090/api/v1/query?q=up"));
        assert!(allows(g, "http://127.0.0.1:9090/api/"));
        assert!(!allows(g, "http://127.0.0.1:9090/api/../admin"));
        assert!(!allows(g, "http://127.0.0.1:9090/api/%2e%2e/admin"));
        assert!(!allows(g, "http://127.0.0.1:9090/api/%2E%2e/admin"));
        assert!(!allows(g, "http://127.0.0.1:9090/api/.%2e/admin"));
        assert!(!allows(g, "http://127.0.0.1:9090/api\\..\\admin"));
        assert!(!allows(g, "http://127.0.0.1:9090/api%2f..%2fadmin"));
        assert!(CheckedUrl::parse("http://127.0.0.1:9090/api/%2e%2e%2fadmin").is_err());
        assert!(CheckedUrl::parse("http://127.0.0.1:9090/a/%2fadmin").is_err());
        assert!(CheckedUrl::parse("http://127.0.0.1:9090/a/%00").is_err());
        assert!(!allows(g, "http://127.0.0.1:9090/apix"));
        assert!(!allows(g, "http://127.0.0.1:9091/api/x"));
        assert!(!allows(g, "https://127.0.0.1:9090/api/x"));
    }

    #[test]
    fn host_wildcards_match_labels_only() {
        let g = "https://*.example.com/*";
        assert!(allows(g, "https://a.example.com/x"));
        assert!(allows(g, "https://A.Example.COM/x"));
        assert!(!allows(g, "https://example.com/x"));
        assert!(!allows(g, "https://a.b.example.com/x"));
        assert!(!allows(g, "https://evil.test/x.example.com/"));
        assert!(!allows(g, "https://evil.test/.example.com"));
        assert!(!allows(g, "https://a.example.com.evil.test/x"));
        assert!(!allows(g, "https://a.example.com@evil.test/x"));
        assert!(!allows(g, "https://a.example.com:444/x"));
        // A lone `*` is one label: a single-label host, not any host.
        assert!(!allows("http://*/*", "http://evil.example/x"));
        assert!(allows("http://*/*", "http://localhost/x"));
    }

    #[test]
    fn ports_and_hosts_are_normalised() {
        assert!(allows("http://127.0.0.1/x", "http://127.0.0.1:80/x"));
        assert!(allows("http://127.0.0.1:80/x", "http://127.0.0.1/x"));
        assert!(!allows("http://127.0.0.1/x", "http://127.0.0.1:8080/x"));
        assert!(allows("http://127.0.0.1:*/x", "http://127.0.0.1:8080/x"));
        // Other spellings of an address are the address.
        assert!(allows("http://127.0.0.1:9/x", "http://0x7f.0.0.1:9/x"));
        assert!(allows("http://127.0.0.1:9/x", "http://2130706433:9/x"));
        assert!(!allows("http://10.0.0.1:9/x", "http://0x7f.0.0.1:9/x"));
        assert!(allows("http://[::1]:9/x", "http://[0:0::1]:9/x"));
        // The fragment is never sent.
        let u = CheckedUrl::parse("http://127.0.0.1:9/a/./b/../c#frag").expect("url");
        assert_eq!(u.as_str(), "http://127.0.0.1:9/a/c");
    }

    #[test]
    fn path_stars_stay_in_their_segment() {
        let g = "http://h/api/*/status";
        assert!(allows(g, "http://h/api/one/status"));
        assert!(!allows(g, "http://h/api/one/two/status"));
        assert!(allows("http://h/hook*", "http://h/hook"));
        assert!(allows("http://h/hook*", "http://h/hooks/a/b"));
        assert!(!allows("http://h/hook", "http://h/hook/x"));
        assert!(allows("http://h/x?q=*", "http://h/x?q=1"));
        assert!(!allows("http://h/x?q=*", "http://h/x?r=1"));
        assert!(allows("http://h/x", "http://h/x?anything"));
        assert!(allows("http://h/*", "http://h/"));
        assert!(allows("http://h", "http://h/a/b?c"));
        assert!(allows("http://h:*", "http://h:9/a"));
        assert!(!allows("http://h/", "http://h/a"));
    }

    #[test]
    fn bad_patterns_and_urls_say_why() {
        for (p, why) in [
            ("ftp://h/*", "only http"),
            ("h/*", "http://"),
            ("http://u@h/*", "user info"),
            ("http:///x", "no host"),
            ("http://h:x/", "port"),
            ("http://h/a/../b", "dot segment"),
            ("http://[::1/", "IPv6"),
        ] {
            let e = UrlPattern::parse(p).expect_err(p).to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
        for u in [
            "file:///etc/passwd",
            "http://u:p@h/",
            "http://",
            "http://h/ x",
            "gopher://h/",
        ] {
            assert!(CheckedUrl::parse(u).is_err(), "{u}");
        }
        // Extra slashes are read as a browser and the HTTP client read them: host `x`.
        let u = CheckedUrl::parse("http:///x").expect("url");
        assert_eq!(u.as_str(), "http://x/");
    }

    #[test]
    fn reads_carry_no_body_and_the_host_owns_routing_headers() {
        assert!(check_request("GET", &[], false).is_ok());
        assert!(check_request("POST", &[], true).is_ok());
        assert!(check_request("GET", &[], true).is_err());
        assert!(check_request("HEAD", &[], true).is_err());
        for h in [
            "Host",
            "X-HTTP-Method-Override",
            "transfer-encoding",
            "Connection",
        ] {
            let e = check_request("GET", &[(h.into(), "x".into())], false).expect_err(h);
            assert!(e.contains(h), "{e}");
        }
        assert!(check_request("GET", &[("Accept".into(), "x".into())], false).is_ok());
        assert!(check_request("G ET", &[], false).is_err());
        assert!(check_request("", &[], false).is_err());
    }
}
