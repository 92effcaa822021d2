//! Property tests of the capability boundary's matchers: URL grants and process
//! argument grants, on hostile-shaped input. A bounded number of cases runs in
//! `make test`; each property is one an attacker would try to break.

use proptest::prelude::*;
use vigil_plugin_host::grants::ProcessGrant;
use vigil_plugin_host::http_policy::{CheckedUrl, UrlPattern};
use vigil_plugin_host::tcp_policy::{AddrPattern, CheckedAddr};

/// Path pieces an attacker mixes: dot segments in every spelling, encoded slashes
/// and backslashes, empty segments, ordinary names.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "api",
        "admin",
        "x",
        "..",
        ".",
        "%2e%2e",
        "%2E%2e",
        ".%2e",
        "%2e.",
        "%2e",
        "%2f",
        "%2F",
        "%5c",
        "\\",
        "",
        "%00",
        "a%2fb",
        "..;",
        "%252e%252e",
        "~",
        "%41",
        "*",
    ])
}

fn url_path() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..8).prop_map(|p| format!("/{}", p.join("/")))
}

fn host() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "127.0.0.1",
        "127.0.0.1:8080",
        "0x7f.0.0.1",
        "2130706433",
        "a.example.com",
        "A.EXAMPLE.com",
        "a.b.example.com",
        "example.com",
        "evil.test",
        "a.example.com.evil.test",
        "[::1]",
        "user@a.example.com",
        "a.example.com:443",
        "a.example.com:444",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever a plugin sends, a request under `/api/*` is under `/api/` as the
    /// server will read it, even if the server decodes the path once more.
    #[test]
    fn a_prefix_grant_never_reaches_outside_its_prefix(path in url_path(), q in "[a-z=&%.]{0,8}") {
        let grant = UrlPattern::parse("http://127.0.0.1:8080/api/*").expect("grant");
        let raw = format!("http://127.0.0.1:8080{path}?{q}");
        if let Ok(url) = CheckedUrl::parse(&raw) && grant.matches(&url) {
            let sent = url.as_str();
            let path = sent
                .trim_start_matches("http://127.0.0.1:8080")
                .split('?')
                .next()
                .unwrap_or("");
            let once = percent_decode(path);
            prop_assert!(once.starts_with("/api/"), "{raw} -> {sent}");
            prop_assert!(!once.split('/').any(|s| s == ".." || s == "."), "{raw} -> {sent}");
            prop_assert!(!once.contains('\\'), "{raw} -> {sent}");
        }
    }

    /// What was checked is what is sent: normalising the sent URL changes nothing.
    #[test]
    fn normalisation_is_idempotent(h in host(), path in url_path()) {
        let raw = format!("http://{h}{path}");
        if let Ok(url) = CheckedUrl::parse(&raw) {
            let again = CheckedUrl::parse(url.as_str()).expect("a sent URL parses");
            prop_assert_eq!(again.as_str(), url.as_str());
        }
    }

    /// `*.example.com` reaches exactly one label under example.com, on port 443.
    #[test]
    fn a_host_wildcard_matches_one_label(h in host(), path in url_path()) {
        let grant = UrlPattern::parse("https://*.example.com/*").expect("grant");
        let raw = format!("https://{h}{path}");
        if let Ok(url) = CheckedUrl::parse(&raw) && grant.matches(&url) {
            let sent = url.as_str().trim_start_matches("https://");
            let authority = sent.split('/').next().unwrap_or("");
            prop_assert!(!authority.contains('@') && !authority.contains(':'), "{raw}");
            let labels: Vec<&str> = authority.split('.').collect();
            prop_assert_eq!(labels.len(), 3, "{}", raw);
            prop_assert_eq!(&labels[1..], &["example", "com"][..], "{}", raw);
        }
    }

    /// Arbitrary text never panics the URL parser or the pattern parser.
    #[test]
    fn arbitrary_urls_and_patterns_never_panic(a in "\\PC{0,80}", b in "\\PC{0,80}") {
        let _ = CheckedUrl::parse(&a);
        if let Ok(p) = UrlPattern::parse(&b) {
            if let Ok(u) = CheckedUrl::parse(&a) {
                let _ = p.matches(&u);
            }
            let _ = p.to_string();
        }
    }

    /// A TCP grant of `127.0.0.1:9999` lets a plugin connect to that socket address and
    /// no other, however the address is spelt: the address the host connects to (what
    /// it checked) resolves to exactly 127.0.0.1:9999.
    #[test]
    fn a_tcp_grant_reaches_only_its_address(h in tcp_host(), p in tcp_port(), tail in tcp_tail()) {
        let grant = AddrPattern::parse("127.0.0.1:9999").expect("grant");
        let raw = format!("{h}:{p}{tail}");
        if let Ok(addr) = CheckedAddr::parse(&raw) && grant.matches(&addr) {
            let ip: std::net::IpAddr = addr.bare_host().parse().expect("an IP literal");
            prop_assert_eq!(ip, std::net::IpAddr::from([127, 0, 0, 1]), "{}", raw);
            prop_assert_eq!(addr.port(), 9999, "{}", raw);
            prop_assert_eq!(addr.as_str(), "127.0.0.1:9999", "{}", raw);
            // What was checked is what is connected to: it normalises to itself.
            let again = CheckedAddr::parse(addr.as_str()).expect("a checked address parses");
            prop_assert_eq!(again.as_str(), addr.as_str());
        }
    }

    /// Arbitrary text never panics the TCP address or pattern parsers.
    #[test]
    fn arbitrary_tcp_addresses_never_panic(a in "\\PC{0,60}", b in "\\PC{0,60}") {
        let _ = CheckedAddr::parse(&a);
        if let Ok(p) = AddrPattern::parse(&b) {
            if let Ok(addr) = CheckedAddr::parse(&a) {
                let _ = p.matches(&addr);
            }
            let _ = p.to_string();
        }
    }

    /// No option reaches a command unless a grant's pattern was written for options.
    #[test]
    fn options_never_pass_a_pattern_for_names(
        args in prop::collection::vec("-{0,2}[a-z*./]{0,6}", 0..5),
        pats in prop::collection::vec(prop::sample::select(vec!["*", "**", "re:.*", "re:^[a-z0-9@.-]+$", "re:[^/]+", "x*"]), 0..5),
    ) {
        let grant = ProcessGrant { command: "find".into(), args: pats.iter().map(|s| s.to_string()).collect() };
        if grant.allows("find", &args) {
            prop_assert!(args.iter().all(|a| !a.starts_with('-')), "{args:?} passed {pats:?}");
        }
    }
}

/// Host spellings an attacker tries: other forms of 127.0.0.1, neighbours, names,
/// IPv6, and text that is not a host at all.
fn tcp_host() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "127.0.0.1",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "2130706433",
        "127.1",
        "127.0.0.01",
        "127.0.0.2",
        "0.0.0.0",
        "localhost",
        "LOCALHOST",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "127.0.0.1.",
        "127.0.0.1:9999@10.0.0.1",
        "user@127.0.0.1",
        "tcp://127.0.0.1",
        "127.0.0.1/..",
        "%31%32%37.0.0.1",
        "",
        "*",
    ])
}

fn tcp_port() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "9999", "09999", "+9999", "9999 ", " 9999", "99990", "75535", "0", "*", "", "9998",
        "0x270f",
    ])
}

fn tcp_tail() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "", "", "", "/", "/admin", "?x", "#x", "\n", "\u{0}", ":1",
    ])
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
