//! The spec and the router: loading the YAML (no duplicate keys), the router's
//! routes read from its source, the spec's operations and `$ref`s.

use super::*;

pub(crate) const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

pub(crate) fn spec_path() -> PathBuf {
    common::workspace_root().join("docs/api/openapi.yaml")
}

/// Fails on a key given twice in one mapping (the YAML parser keeps the last).
pub(crate) fn no_duplicate_keys(node: &vigil_bundle::yaml::Node, problems: &mut Vec<String>) {
    use vigil_bundle::yaml::Value as Y;
    match &node.value {
        Y::Map(entries) => {
            let mut seen = BTreeSet::new();
            for (k, v) in entries {
                if !seen.insert(k.key_string()) {
                    problems.push(format!(
                        "docs/api/openapi.yaml:{}:{}: `{}` is given twice",
                        k.span.start.line,
                        k.span.start.col,
                        k.key_string()
                    ));
                }
                no_duplicate_keys(v, problems);
            }
        }
        Y::Seq(items) => items.iter().for_each(|i| no_duplicate_keys(i, problems)),
        _ => {}
    }
}

pub(crate) fn load_spec() -> Value {
    let text = std::fs::read_to_string(spec_path()).expect("read docs/api/openapi.yaml");
    let docs = vigil_bundle::yaml::parse_documents(&text).unwrap_or_else(|e| {
        panic!(
            "docs/api/openapi.yaml:{}:{}: {}",
            e.span.start.line, e.span.start.col, e.message
        )
    });
    assert_eq!(docs.len(), 1, "docs/api/openapi.yaml holds one document");
    let mut problems = Vec::new();
    no_duplicate_keys(&docs[0], &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    docs[0].to_json()
}

/// `(METHOD, path)` of every `.route(path, method(…).method(…))` in the router.
pub(crate) fn router_routes() -> BTreeSet<(String, String)> {
    let file = common::workspace_root().join("engine/src/api/mod.rs");
    let src = std::fs::read_to_string(&file).expect("read engine/src/api/mod.rs");
    for other in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
        assert!(
            !src.contains(other),
            "engine/src/api/mod.rs uses `{other}`: this test reads only `.route(…)` calls; teach it the new form"
        );
    }
    let text = src.as_str();
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(".route(") {
        let start = from + at + ".route(".len();
        from = start;
        let line_start = text[..start].rfind('\n').map_or(0, |n| n + 1);
        if text[line_start..start].trim_start().starts_with("//") {
            continue;
        }
        // Walk to the closing parenthesis, skipping strings and line comments; method
        // routers are the calls at depth 0 (`get(…).post(…)`).
        let bytes = text.as_bytes();
        let (mut i, mut depth) = (start, 0usize);
        let mut path: Option<String> = None;
        let mut methods = Vec::new();
        while i < bytes.len() {
            let c = bytes[i];
            if c == b'"' {
                let mut j = i + 1;
                let mut s = String::new();
                while j < bytes.len() && bytes[j] != b'"' {
                    if bytes[j] == b'\\' {
                        j += 1;
                    }
                    s.push(bytes[j] as char);
                    j += 1;
                }
                if path.is_none() {
                    path = Some(s);
                }
                i = j + 1;
                continue;
            }
            if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            match c {
                b'(' | b'{' | b'[' => depth += 1,
                b')' | b'}' | b']' => {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                }
                _ => {}
            }
            let starts_word =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            if depth == 0 && starts_word {
                for m in METHODS {
                    if bytes[i..].starts_with(m.as_bytes()) && bytes.get(i + m.len()) == Some(&b'(')
                    {
                        methods.push(m.to_ascii_uppercase());
                    }
                }
            }
            i += 1;
        }
        let path = path.unwrap_or_else(|| panic!("a `.route(` without a path near byte {start}"));
        assert!(!methods.is_empty(), "route {path}: no method router found");
        for m in methods {
            out.insert((m, path.clone()));
        }
    }
    assert!(
        !out.is_empty(),
        "no `.route(` found in engine/src/api/mod.rs"
    );
    out
}

/// `(METHOD, path)` of every operation in the spec.
pub(crate) fn spec_operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// Every `$ref` in `v`, with where it is.
pub(crate) fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref"
                    && let Some(r) = x.as_str()
                {
                    out.push((at.to_string(), r.to_string()));
                }
                refs(
                    x,
                    &format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                refs(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}
