//! The console's HTML: escaping, the page shell (header, navigation, the logout
//! form), and small pieces the pages share. Every piece of text from outside goes
//! through [`esc`]; no page has inline script or style (the CSP forbids both).

use super::session::Session;
use std::fmt::Write as _;
use std::sync::LazyLock;

pub const APP_CSS: &str = include_str!("assets/app.css");
pub const APP_JS: &str = include_str!("assets/app.js");

/// A short hash of each asset, put in its URL so a browser may cache it for long.
pub static CSS_VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{:08x}",
        vigil_core::fingerprint::fnv1a64(APP_CSS.as_bytes()) as u32
    )
});
pub static JS_VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{:08x}",
        vigil_core::fingerprint::fnv1a64(APP_JS.as_bytes()) as u32
    )
});

/// Text made safe for HTML text and attribute values (quoted).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A URL path segment (an id from outside) made safe to put in a link.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@' | b':') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A time in ms since the epoch, in UTC, to the second.
pub fn time(ms: i64) -> String {
    use chrono::{Datelike, Timelike};
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => "—".into(),
    }
}

/// A duration in ms as people read it.
pub fn span(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h {}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// A status or severity as a coloured badge (`class` picks the colour).
pub fn badge(class: &str, text: &str) -> String {
    let cls: String = class
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "<span class=\"badge {cls}\">{}</span>",
        esc(&text.replace('_', " "))
    )
}

/// The hidden field every form of a session carries.
pub fn csrf(s: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&s.csrf)
    )
}

/// A one-button form posting to `action` (with the CSRF token).
pub fn button(s: &Session, action: &str, label: &str, class: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">{}<button type=\"submit\" class=\"{class}\">{}</button></form>",
        esc(action),
        csrf(s),
        esc(label)
    )
}

/// The pages of the navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Incidents,
    Executions,
    Approvals,
    Automation,
    Silences,
    Detectors,
    None,
}

const NAV: [(Nav, &str, &str); 6] = [
    (Nav::Incidents, "/console/incidents", "Incidents"),
    (Nav::Executions, "/console/executions", "Executions"),
    (Nav::Approvals, "/console/approvals", "Approvals"),
    (Nav::Automation, "/console/automation", "Automation"),
    (Nav::Silences, "/console/silences", "Silences"),
    (Nav::Detectors, "/console/detectors", "Detectors"),
];

/// The page shell around `body`. `main_attrs` are extra attributes of `<main>` (the
/// script reads `data-poll` there).
pub fn page(
    title: &str,
    active: Nav,
    session: Option<&Session>,
    main_attrs: &str,
    body: &str,
) -> String {
    let mut h = String::with_capacity(body.len() + 2048);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"dark\">\
         <title>{} · vigil</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/console/app.css?v={}\">\
         <script src=\"/console/app.js?v={}\" defer></script></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a><header>\
         <a class=\"brand\" href=\"/console/incidents\">vigil</a>",
        esc(title),
        *CSS_VERSION,
        *JS_VERSION
    );
    if let Some(s) = session {
        h.push_str("<nav aria-label=\"Console\"><ul>");
        for (nav, href, label) in NAV {
            let current = if nav == active {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(h, "<li><a href=\"{href}\"{current}>{label}</a></li>");
        }
        let _ = write!(
            h,
            "</ul></nav><div class=\"who\"><span>{} <span class=\"badge\">{}</span></span>\
             <form class=\"inline\" method=\"post\" action=\"/console/logout\">{}<button type=\"submit\">Log out</button></form></div>",
            esc(&s.caller.name),
            esc(s.caller.role.as_str()),
            csrf(s)
        );
    }
    let _ = writeln!(
        h,
        "</header><main id=\"main\" tabindex=\"-1\"{main_attrs}>{body}</main></body></html>"
    );
    h
}

/// JSON, pretty and escaped, in a `<pre>`.
pub fn json_block(v: &serde_json::Value) -> String {
    format!(
        "<pre>{}</pre>",
        esc(&serde_json::to_string_pretty(v).unwrap_or_default())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_cannot_become_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(seg("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(
            badge("st-\"x", "in_doubt"),
            "<span class=\"badge st-_x\">in doubt</span>"
        );
    }

    #[test]
    fn times_are_utc_to_the_second() {
        assert_eq!(time(1_767_693_600_123), "2026-01-06 10:00:00Z");
        assert_eq!(time(i64::MAX), "—");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(span(250), "250 ms");
        assert_eq!(span(1500), "1.5 s");
        assert_eq!(span(61_000), "1m 1s");
        assert_eq!(span(3_660_000), "1h 1m");
    }
}
