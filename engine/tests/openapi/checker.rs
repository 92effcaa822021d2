//! The checker: requests sent to the running server, each body, parameter and
//! response validated against the spec, and what was seen per operation.

use super::*;

/// The spec with its validators, and what was checked against it.
pub(crate) struct Checker {
    pub(crate) spec: Value,
    pub(crate) base: String,
    pub(crate) validators: HashMap<String, jsonschema::Validator>,
    pub(crate) failures: Vec<String>,
    /// Statuses seen per `(METHOD, template)`.
    pub(crate) seen: BTreeMap<(String, String), BTreeSet<u16>>,
    /// Roles whose token got a 2xx, per `(METHOD, template)`.
    pub(crate) succeeded_as: BTreeMap<(String, String), BTreeSet<&'static str>>,
    pub(crate) requests_validated: usize,
    pub(crate) params_validated: usize,
    pub(crate) responses_validated: usize,
}

/// A request body.
pub(crate) enum Body<'a> {
    None,
    /// Must match the operation's `requestBody` schema.
    Json(Value),
    /// Must not match it: the spec says what the server refuses.
    Invalid(Value),
    /// Sent as is, not checked (not JSON, too large).
    Raw(&'a [u8]),
}

/// A response as read off the wire.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) text: String,
}

impl Checker {
    pub(crate) fn new(spec: Value, base: String) -> Checker {
        Checker {
            spec,
            base,
            validators: HashMap::new(),
            failures: Vec::new(),
            seen: BTreeMap::new(),
            succeeded_as: BTreeMap::new(),
            requests_validated: 0,
            params_validated: 0,
            responses_validated: 0,
        }
    }

    /// Follows `$ref`s (to anything in the document).
    pub(crate) fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..16 {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    v = self
                        .spec
                        .pointer(r.strip_prefix('#').unwrap_or(r))
                        .unwrap_or_else(|| panic!("unresolved $ref {r}"));
                }
                None => return v,
            }
        }
        panic!("$ref chain too long");
    }

    /// Validates `instance` against `schema` (a schema of the spec, whose `$ref`s point
    /// into `#/components/schemas`); the reasons it does not match, each with its JSON
    /// pointer.
    pub(crate) fn validate(&mut self, schema: &Value, instance: &Value) -> Vec<String> {
        let key = schema.to_string();
        if !self.validators.contains_key(&key) {
            let mut root = schema.clone();
            root.as_object_mut()
                .unwrap_or_else(|| panic!("a schema must be an object: {key}"))
                .insert("components".into(), self.spec["components"].clone());
            let v = jsonschema::draft202012::new(&root)
                .unwrap_or_else(|e| panic!("schema {key} does not compile: {e}"));
            self.validators.insert(key.clone(), v);
        }
        self.validators[&key]
            .iter_errors(instance)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!(
                    "at `{}`: {e}",
                    if at.is_empty() { "/" } else { at.as_str() }
                )
            })
            .collect()
    }

    /// The operation `method path` is, as `(template, operation, parameters)`.
    pub(crate) fn operation(&self, method: &str, path: &str) -> (String, Value, Vec<Value>) {
        let path = path.split('?').next().unwrap_or(path);
        let segs: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, &String)> = None;
        for template in self.spec["paths"].as_object().unwrap().keys() {
            let t: Vec<&str> = template.split('/').collect();
            if t.len() != segs.len() {
                continue;
            }
            let mut literal = 0;
            let fits = t.iter().zip(&segs).all(|(a, b)| {
                if a.starts_with('{') && a.ends_with('}') {
                    !b.is_empty()
                } else {
                    literal += 1;
                    a == b
                }
            });
            if fits && best.is_none_or(|(n, _)| literal > n) {
                best = Some((literal, template));
            }
        }
        let template = best
            .unwrap_or_else(|| panic!("{method} {path}: no path of docs/api/openapi.yaml fits"))
            .1
            .clone();
        let item = &self.spec["paths"][&template];
        let op = item
            .get(method.to_ascii_lowercase())
            .unwrap_or_else(|| {
                panic!("{method} {template}: no such operation in docs/api/openapi.yaml")
            })
            .clone();
        let mut params: Vec<Value> = Vec::new();
        for list in [&op["parameters"], &item["parameters"]] {
            for p in list.as_array().into_iter().flatten() {
                params.push(self.resolve(p).clone());
            }
        }
        (template, op, params)
    }

    /// Sends a request and checks it and its response against the spec; `expect` is
    /// the status the scenario calls for. Returns the response body as JSON (a string
    /// when it is not JSON).
    pub(crate) fn call(
        &mut self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Body,
        expect: u16,
    ) -> Value {
        let (template, op, params) = self.operation(method, path);
        let route = format!("{method} {template}");
        let bytes: Option<Vec<u8>> = match &body {
            Body::None => None,
            Body::Raw(b) => Some(b.to_vec()),
            Body::Json(v) | Body::Invalid(v) => {
                let rb = self.resolve(&op["requestBody"]).clone();
                match rb.pointer("/content/application~1json/schema") {
                    None => self.failures.push(format!(
                        "{route}: the test sends a JSON body, and the spec documents no application/json requestBody"
                    )),
                    Some(schema) => {
                        let errors = self.validate(schema, v);
                        self.requests_validated += 1;
                        match (&body, errors.is_empty()) {
                            (Body::Json(_), false) => self.failures.push(format!(
                                "{route} request body {v}: does not match its requestBody schema: {}",
                                errors.join("; ")
                            )),
                            (Body::Invalid(_), true) => self.failures.push(format!(
                                "{route} request body {v}: the server refuses it ({expect}), yet it matches the requestBody schema"
                            )),
                            _ => {}
                        }
                    }
                }
                Some(v.to_string().into_bytes())
            }
        };
        if (200..300).contains(&expect)
            && let Some((_, query)) = path.split_once('?')
        {
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let Some(p) = params.iter().find(|p| p["in"] == "query" && p["name"] == k) else {
                    self.failures
                        .push(format!("{route}: query parameter `{k}` is not documented"));
                    continue;
                };
                let schema = p["schema"].clone();
                let value = match (self.resolve(&schema)["type"].as_str(), v.parse::<i64>()) {
                    (Some("integer"), Ok(n)) => json!(n),
                    (Some("boolean"), _) if v == "true" || v == "false" => json!(v == "true"),
                    _ => json!(v),
                };
                let errors = self.validate(&schema, &value);
                self.params_validated += 1;
                if !errors.is_empty() {
                    self.failures.push(format!(
                        "{route}: query parameter `{k}={v}` does not match its schema: {}",
                        errors.join("; ")
                    ));
                }
            }
        }
        let reply = send(&self.base, token, method, path, bytes);
        assert_eq!(
            reply.status, expect,
            "{route} ({method} {path}): expected {expect}, got {}: {}",
            reply.status, reply.text
        );
        if (200..300).contains(&reply.status) {
            self.succeeded_as
                .entry((method.to_string(), template.clone()))
                .or_default()
                .insert(token.map_or("none", role_of));
        }
        self.check_response(method, &template, &op, &reply)
    }

    /// Checks a response against what the spec documents for its status.
    pub(crate) fn check_response(
        &mut self,
        method: &str,
        template: &str,
        op: &Value,
        reply: &Reply,
    ) -> Value {
        let route = format!("{method} {template}");
        let status = reply.status;
        self.seen
            .entry((method.to_string(), template.to_string()))
            .or_default()
            .insert(status);
        let parsed: Value =
            serde_json::from_str(&reply.text).unwrap_or_else(|_| Value::String(reply.text.clone()));
        let Some(documented) = op["responses"].get(status.to_string()) else {
            self.failures.push(format!(
                "{route} → {status}: this status is not documented (body: {})",
                reply.text
            ));
            return parsed;
        };
        let documented = self.resolve(documented).clone();
        for name in documented["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            if !reply.headers.contains_key(&name.to_ascii_lowercase()) {
                self.failures.push(format!(
                    "{route} → {status}: header `{name}` is documented and missing"
                ));
            }
        }
        let Some(content) = documented["content"].as_object() else {
            if !reply.text.is_empty() {
                self.failures.push(format!(
                    "{route} → {status}: a body was sent, none is documented"
                ));
            }
            return parsed;
        };
        let media = reply
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let Some(mt) = content.get(&media) else {
            self.failures.push(format!(
                "{route} → {status}: content type `{}` is not documented (documented: {:?})",
                reply.content_type,
                content.keys().collect::<Vec<_>>()
            ));
            return parsed;
        };
        let schema = mt["schema"].clone();
        let instance = if media == "application/json" {
            match serde_json::from_str::<Value>(&reply.text) {
                Ok(v) => v,
                Err(e) => {
                    self.failures.push(format!(
                        "{route} → {status}: the body is not JSON ({e}): {}",
                        reply.text
                    ));
                    return parsed;
                }
            }
        } else {
            Value::String(reply.text.clone())
        };
        let errors = self.validate(&schema, &instance);
        self.responses_validated += 1;
        for e in errors {
            self.failures.push(format!(
                "{route} → {status}: {e}\n    body: {}",
                clip(&reply.text)
            ));
        }
        parsed
    }

    pub(crate) fn get(&mut self, token: &str, path: &str, expect: u16) -> Value {
        self.call(Some(token), "GET", path, Body::None, expect)
    }

    pub(crate) fn post(&mut self, token: &str, path: &str, body: Body, expect: u16) -> Value {
        self.call(Some(token), "POST", path, body, expect)
    }

    pub(crate) fn delete(&mut self, token: &str, path: &str, expect: u16) -> Value {
        self.call(Some(token), "DELETE", path, Body::None, expect)
    }

    /// Every operation answered 2xx to the token of exactly its `x-vigil-role`, and an
    /// error at least once (when it documents a 4xx).
    pub(crate) fn coverage(&mut self) {
        for (method, template) in spec_operations(&self.spec) {
            let key = (method.clone(), template.clone());
            let seen = self.seen.get(&key).cloned().unwrap_or_default();
            let op = self.spec["paths"][&template][method.to_ascii_lowercase()].clone();
            let here = format!("{method} {template}");
            if !seen.iter().any(|s| (200..300).contains(s)) {
                self.failures
                    .push(format!("{here}: never answered 2xx in this test"));
            }
            let documents_4xx = op["responses"]
                .as_object()
                .is_some_and(|r| r.keys().any(|s| s.starts_with('4')));
            if documents_4xx && !seen.iter().any(|s| (400..500).contains(s)) {
                self.failures
                    .push(format!("{here}: never answered a 4xx in this test"));
            }
            let least = op["x-vigil-role"].as_str().unwrap_or("none");
            let roles = self.succeeded_as.get(&key);
            if !roles.is_some_and(|r| r.contains(least)) {
                self.failures.push(format!(
                    "{here}: never succeeded with the token of a {least} (its x-vigil-role); succeeded as {roles:?}"
                ));
            }
            eprintln!("{method:6} {template:42} {seen:?}");
        }
    }

    /// Every operation with a role is refused 403 `forbidden` for every role below it.
    pub(crate) fn refuse_lower_roles(&mut self) {
        let ops: Vec<(String, String, String)> = spec_operations(&self.spec)
            .into_iter()
            .filter_map(|(m, p)| {
                let role = self.spec["paths"][&p][m.to_ascii_lowercase()]["x-vigil-role"]
                    .as_str()?
                    .to_string();
                Some((m, p, role))
            })
            .collect();
        for (method, template, role) in ops {
            let path = template
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            for (lower, token) in below(&role) {
                let v = self.call(Some(token), &method, &path, Body::None, 403);
                let says = format!("role `{lower}`");
                if v["error"] != "forbidden" || !v["detail"].as_str().unwrap_or("").contains(&says)
                {
                    self.failures.push(format!(
                        "{method} {template} as a {lower}: {v} should be `forbidden` and say {says}"
                    ));
                }
            }
        }
    }
}

pub(crate) fn clip(s: &str) -> String {
    if s.len() <= 600 {
        return s.to_string();
    }
    let mut end = 600;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

pub(crate) fn send(
    base: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Reply {
    let url = format!("{base}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let a = common::agent();
    macro_rules! authed {
        ($r:expr) => {{
            let r = $r;
            match &auth {
                Some(h) => r.header("Authorization", h),
                None => r,
            }
        }};
    }
    let resp = match (method, body) {
        ("GET", _) => authed!(a.get(&url)).call(),
        ("DELETE", _) => authed!(a.delete(&url)).call(),
        ("POST", None) => authed!(a.post(&url)).send_empty(),
        ("POST", Some(b)) => authed!(a.post(&url))
            .content_type("application/json")
            .send(&b[..]),
        ("PUT", None) => authed!(a.put(&url)).send_empty(),
        ("PUT", Some(b)) => authed!(a.put(&url))
            .content_type("application/json")
            .send(&b[..]),
        (m, _) => panic!("the test sends no {m}"),
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect::<BTreeMap<_, _>>();
    Reply {
        status: resp.status().as_u16(),
        content_type: headers.get("content-type").cloned().unwrap_or_default(),
        headers,
        text: resp.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// A request written by hand on a socket; the answer read to the end.
pub(crate) fn raw_exchange(base: &str, head: &str, body: &[u8], pause: Duration) -> Reply {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    std::thread::sleep(pause);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        content_type: headers.get("content-type").cloned().unwrap_or_default(),
        headers,
        text: body.to_string(),
    }
}
