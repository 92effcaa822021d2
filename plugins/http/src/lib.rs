//! `http`: HTTP request / webhook actions, and Slack- and PagerDuty-Events-v2-
//! shaped notifications.
//!
//! Actions (all declare exactly one effect, `http:<METHOD> <url>`, in their plan;
//! the host lets `execute` do that request and nothing else):
//! - `request`: `{ method?, url, headers?, body? | json?, expect_status? }`
//! - `webhook`: `{ url, payload }` → `POST` JSON
//! - `slack`: `{ text, url? | url_secret?, channel?, username?, icon_emoji?, blocks? }`
//! - `pagerduty`: `{ routing_key? | routing_key_secret?, event_action?, dedup_key?, summary, source, severity?, component?, group?, class?, custom_details?, url? }`
//!
//! A `GET`/`HEAD` `request` has no effect: its plan declares none, and it may
//! run in a dry-run's plan as a preview.

use serde::Deserialize;
use std::collections::BTreeMap;
use vigil_plugin_sdk::serde_json::{self, Value};
use vigil_plugin_sdk::{
    Action, ActionDef, Capability, Error, Info, Plan, PlannedEffect, Plugin, Result, Risk,
    export_plugin, http, json, secrets,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default Slack webhook URL (or use `slack_url_secret`).
    #[serde(default)]
    pub slack_url: Option<String>,
    #[serde(default)]
    pub slack_url_secret: Option<String>,
    /// PagerDuty Events v2 endpoint (default `https://events.pagerduty.com/v2/enqueue`).
    #[serde(default)]
    pub pagerduty_url: Option<String>,
    #[serde(default)]
    pub pagerduty_routing_key_secret: Option<String>,
    /// Headers added to every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
}

pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// A fully resolved request: what `plan` declares and `execute` sends.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub expect: Option<Vec<u16>>,
    pub risk: Risk,
    pub what: String,
    /// Declared by the runbook for `request`; notifications cannot be taken back.
    pub reversible: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestInput {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    json: Option<Value>,
    #[serde(default)]
    expect_status: Option<Vec<u16>>,
    /// What the endpoint does, as the runbook's author knows it: `low|medium|high`
    /// (default: by method — GET/HEAD none, DELETE high, others medium).
    #[serde(default)]
    risk: Option<String>,
    /// Whether the request's effect can be undone (default: false for writes).
    #[serde(default)]
    reversible: bool,
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookInput {
    url: String,
    payload: Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackInput {
    text: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_secret: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    icon_emoji: Option<String>,
    #[serde(default)]
    blocks: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagerDutyInput {
    #[serde(default)]
    routing_key: Option<String>,
    #[serde(default)]
    routing_key_secret: Option<String>,
    #[serde(default = "trigger")]
    event_action: String,
    #[serde(default)]
    dedup_key: Option<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default = "error_sev")]
    severity: String,
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    custom_details: Option<Value>,
    #[serde(default)]
    url: Option<String>,
}

fn trigger() -> String {
    "trigger".into()
}
fn error_sev() -> String {
    "error".into()
}

fn parse<T: serde::de::DeserializeOwned>(action: &str, input: &Value) -> Result<T> {
    serde_json::from_value(input.clone())
        .map_err(|e| Error::invalid_input(format!("http/{action} input: {e}")))
}

fn json_body(v: &Value) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(v)?)
}

fn secret_or(
    value: Option<String>,
    secret: Option<&String>,
    what: &str,
    resolve: bool,
) -> Result<String> {
    match (value, secret) {
        (Some(v), _) => Ok(v),
        (None, Some(name)) if resolve => secrets::get(name),
        (None, Some(name)) => Ok(format!("<secret {name}>")),
        (None, None) => Err(Error::invalid_input(format!("{what} is required"))),
    }
}

/// Resolves an action's input into the one request it makes. With
/// `resolve_secrets = false` (validate) secrets are left as placeholders.
pub fn prepare(
    cfg: &Config,
    action: &str,
    input: &Value,
    resolve_secrets: bool,
) -> Result<Prepared> {
    let mut headers: Vec<(String, String)> = cfg
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let json_ct = ("content-type".to_string(), "application/json".to_string());
    let p = match action {
        "request" => {
            let r: RequestInput = parse(action, input)?;
            let method = r.method.to_ascii_uppercase();
            if !matches!(
                method.as_str(),
                "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE"
            ) {
                return Err(Error::invalid_input(format!("unsupported method {method}")));
            }
            headers.extend(r.headers);
            let body = match (r.body, r.json) {
                (Some(_), Some(_)) => {
                    return Err(Error::invalid_input("give `body` or `json`, not both"));
                }
                (Some(b), None) => Some(b.into_bytes()),
                (None, Some(j)) => {
                    headers.push(json_ct);
                    Some(json_body(&j)?)
                }
                (None, None) => None,
            };
            let risk = match (method.as_str(), r.risk.as_deref()) {
                ("GET" | "HEAD", _) => Risk::None,
                (_, Some("low")) => Risk::Low,
                (_, Some("medium")) => Risk::Medium,
                (_, Some("high")) => Risk::High,
                (_, Some(other)) => {
                    return Err(Error::invalid_input(format!(
                        "risk {other:?}: write low, medium or high"
                    )));
                }
                ("DELETE", None) => Risk::High,
                (_, None) => Risk::Medium,
            };
            Prepared {
                what: format!("{method} {}", r.url),
                method,
                url: r.url,
                headers,
                body,
                expect: r.expect_status,
                risk,
                reversible: r.reversible,
            }
        }
        "webhook" => {
            let w: WebhookInput = parse(action, input)?;
            headers.extend(w.headers);
            headers.push(json_ct);
            Prepared {
                method: "POST".into(),
                what: format!("webhook POST to {}", w.url),
                url: w.url,
                headers,
                body: Some(json_body(&w.payload)?),
                expect: None,
                risk: Risk::Low,
                reversible: false,
            }
        }
        "slack" => {
            let s: SlackInput = parse(action, input)?;
            let url = secret_or(
                s.url.or_else(|| cfg.slack_url.clone()),
                s.url_secret.as_ref().or(cfg.slack_url_secret.as_ref()),
                "a Slack webhook `url` (or `url_secret`)",
                resolve_secrets,
            )?;
            let mut msg = json!({ "text": s.text });
            for (k, v) in [
                ("channel", s.channel),
                ("username", s.username),
                ("icon_emoji", s.icon_emoji),
            ] {
                if let Some(v) = v {
                    msg[k] = json!(v);
                }
            }
            if let Some(b) = s.blocks {
                msg["blocks"] = b;
            }
            headers.push(json_ct);
            Prepared {
                method: "POST".into(),
                what: format!(
                    "Slack message: {}",
                    s.text.chars().take(80).collect::<String>()
                ),
                url,
                headers,
                body: Some(json_body(&msg)?),
                expect: None,
                risk: Risk::Low,
                reversible: false,
            }
        }
        "pagerduty" => {
            let p: PagerDutyInput = parse(action, input)?;
            if !matches!(
                p.event_action.as_str(),
                "trigger" | "acknowledge" | "resolve"
            ) {
                return Err(Error::invalid_input(format!(
                    "event_action must be trigger, acknowledge or resolve, not {:?}",
                    p.event_action
                )));
            }
            if !matches!(
                p.severity.as_str(),
                "critical" | "error" | "warning" | "info"
            ) {
                return Err(Error::invalid_input(format!(
                    "severity must be critical, error, warning or info, not {:?}",
                    p.severity
                )));
            }
            if p.event_action != "trigger" && p.dedup_key.is_none() {
                return Err(Error::invalid_input(format!(
                    "{} needs the dedup_key of the triggered event",
                    p.event_action
                )));
            }
            let routing_key = secret_or(
                p.routing_key,
                p.routing_key_secret
                    .as_ref()
                    .or(cfg.pagerduty_routing_key_secret.as_ref()),
                "`routing_key` (or `routing_key_secret`)",
                resolve_secrets,
            )?;
            let mut ev = json!({ "routing_key": routing_key, "event_action": p.event_action });
            if let Some(k) = &p.dedup_key {
                ev["dedup_key"] = json!(k);
            }
            if p.event_action == "trigger" {
                let summary = p
                    .summary
                    .ok_or_else(|| Error::invalid_input("trigger needs `summary`"))?;
                let source = p
                    .source
                    .ok_or_else(|| Error::invalid_input("trigger needs `source`"))?;
                let mut payload =
                    json!({ "summary": summary, "source": source, "severity": p.severity });
                for (k, v) in [
                    ("component", p.component),
                    ("group", p.group),
                    ("class", p.class),
                ] {
                    if let Some(v) = v {
                        payload[k] = json!(v);
                    }
                }
                if let Some(d) = p.custom_details {
                    payload["custom_details"] = d;
                }
                ev["payload"] = payload;
            }
            headers.push(json_ct);
            let url = p
                .url
                .or_else(|| cfg.pagerduty_url.clone())
                .unwrap_or_else(|| PAGERDUTY_URL.into());
            Prepared {
                method: "POST".into(),
                what: format!(
                    "PagerDuty {} event",
                    ev["event_action"].as_str().unwrap_or("?")
                ),
                url,
                headers,
                body: Some(json_body(&ev)?),
                expect: Some(vec![202]),
                risk: Risk::Medium,
                reversible: false,
            }
        }
        other => return Err(Error::invalid_input(format!("unknown action http/{other}"))),
    };
    if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
        return Err(Error::invalid_input(format!(
            "url must be http(s): {:?}",
            p.url
        )));
    }
    Ok(p)
}

fn is_read(method: &str) -> bool {
    method == "GET" || method == "HEAD"
}

/// The plan for a prepared request: one declared effect unless it only reads.
pub fn plan_for(p: &Prepared) -> Plan {
    let mut plan = Plan::new(p.what.clone());
    if !is_read(&p.method) {
        plan = plan.step(
            PlannedEffect::new(p.url.clone(), p.risk)
                .reversible(p.reversible)
                .effect(format!("http:{} {}", p.method, p.url)),
        );
    }
    plan
}

fn send(cfg: &Config, p: Prepared) -> Result<Value> {
    let mut req = http::Request::new(&p.method, &p.url);
    for (k, v) in &p.headers {
        req = req.header(k, v);
    }
    if let Some(b) = p.body {
        req = req.body(b);
    }
    if let Some(t) = cfg.timeout_ms {
        req = req.timeout_ms(t);
    }
    let resp = req.send()?;
    let ok = match &p.expect {
        Some(list) => list.contains(&resp.status),
        None => resp.is_success(),
    };
    let text = resp.text();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or(Value::String(text.chars().take(64 * 1024).collect()));
    if !ok {
        return Err(Error::failed(format!(
            "{} {} answered HTTP {}: {}",
            p.method,
            p.url,
            resp.status,
            body.to_string().chars().take(500).collect::<String>()
        )));
    }
    Ok(json!({ "status": resp.status, "body": body }))
}

pub struct HttpPlugin;

impl Plugin for HttpPlugin {
    type Config = Config;
    fn info() -> Info {
        Info::new("http", env!("CARGO_PKG_VERSION"))
            .description(
                "HTTP requests and webhooks; Slack and PagerDuty (Events v2) notifications.",
            )
            .capability(Capability::http("sends the configured requests"))
            .capability(Capability::secret(
                "",
                "webhook URLs and routing keys kept as secrets",
            ))
            .action(ActionDef::new(
                "request",
                "Any HTTP request; GET/HEAD only read.",
            ))
            .action(ActionDef::new("webhook", "POSTs a JSON payload."))
            .action(ActionDef::new(
                "slack",
                "Posts a message to a Slack incoming webhook.",
            ))
            .action(
                ActionDef::new(
                    "pagerduty",
                    "Sends a PagerDuty Events v2 event (deduplicated by dedup_key).",
                )
                .idempotent(true),
            )
            .config_schema(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "slack_url": { "type": "string" },
                    "slack_url_secret": { "type": "string" },
                    "pagerduty_url": { "type": "string" },
                    "pagerduty_routing_key_secret": { "type": "string" },
                    "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                    "timeout_ms": { "type": "integer", "minimum": 1 }
                }
            }))
    }
}

impl Action for HttpPlugin {
    fn validate(config: &Config, action: &str, input: &Value) -> Result<()> {
        prepare(config, action, input, false).map(|_| ())
    }
    fn plan(config: &Config, action: &str, input: &Value) -> Result<Plan> {
        let p = prepare(config, action, input, true)?;
        Ok(plan_for(&p))
    }
    fn execute(config: &Config, action: &str, input: &Value, _: &Plan) -> Result<Value> {
        send(config, prepare(config, action, input, true)?)
    }
}

export_plugin!(HttpPlugin: action);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_shape() {
        let cfg = Config {
            slack_url: Some("http://127.0.0.1:1/slack".into()),
            ..Config::default()
        };
        let p = prepare(
            &cfg,
            "slack",
            &json!({ "text": "disk full", "channel": "#ops" }),
            true,
        )
        .expect("slack");
        assert_eq!(p.method, "POST");
        let body: Value = serde_json::from_slice(p.body.as_deref().expect("body")).expect("json");
        assert_eq!(body, json!({ "text": "disk full", "channel": "#ops" }));
        let plan = plan_for(&p);
        assert_eq!(
            plan.steps[0].effects,
            vec!["http:POST http://127.0.0.1:1/slack"]
        );
        assert!(
            prepare(&Config::default(), "slack", &json!({ "text": "x" }), true).is_err(),
            "no URL"
        );
    }

    #[test]
    fn pagerduty_events_v2_shape() {
        let input = json!({ "routing_key": "R", "summary": "db down", "source": "db1", "severity": "critical", "dedup_key": "k1", "custom_details": { "a": 1 } });
        let p = prepare(&Config::default(), "pagerduty", &input, true).expect("pd");
        assert_eq!(p.url, PAGERDUTY_URL);
        let body: Value = serde_json::from_slice(p.body.as_deref().expect("body")).expect("json");
        assert_eq!(
            body,
            json!({ "routing_key": "R", "event_action": "trigger", "dedup_key": "k1",
                    "payload": { "summary": "db down", "source": "db1", "severity": "critical", "custom_details": { "a": 1 } } })
        );
        assert!(
            prepare(
                &Config::default(),
                "pagerduty",
                &json!({ "routing_key": "R", "event_action": "resolve" }),
                true
            )
            .is_err()
        );
        assert!(
            prepare(
                &Config::default(),
                "pagerduty",
                &json!({ "routing_key": "R", "summary": "s", "source": "x", "severity": "meh" }),
                true
            )
            .is_err()
        );
        let resolve = prepare(
            &Config::default(),
            "pagerduty",
            &json!({ "routing_key": "R", "event_action": "resolve", "dedup_key": "k1" }),
            true,
        )
        .expect("resolve");
        let body: Value =
            serde_json::from_slice(resolve.body.as_deref().expect("body")).expect("json");
        assert!(body.get("payload").is_none());
    }

    #[test]
    fn reads_declare_no_effects() {
        let p = prepare(
            &Config::default(),
            "request",
            &json!({ "url": "http://127.0.0.1:1/x" }),
            true,
        )
        .expect("get");
        assert!(plan_for(&p).steps.is_empty());
        let d = prepare(
            &Config::default(),
            "request",
            &json!({ "method": "delete", "url": "http://127.0.0.1:1/x" }),
            true,
        )
        .expect("delete");
        assert_eq!(plan_for(&d).steps[0].risk, Risk::High);
        assert!(
            prepare(
                &Config::default(),
                "request",
                &json!({ "url": "ftp://x" }),
                true
            )
            .is_err()
        );
        assert!(
            prepare(
                &Config::default(),
                "request",
                &json!({ "url": "http://x", "body": "a", "json": {} }),
                true
            )
            .is_err()
        );
        assert!(prepare(&Config::default(), "nope", &json!({}), true).is_err());
    }
}
