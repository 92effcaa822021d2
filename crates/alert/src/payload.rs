//! Parsing what arrives over HTTP: Alertmanager's webhook (version 4) and generic
//! events. Every error names the offending field (`alerts[3].labels.severity`).
//! Unknown fields are tolerated, as Alertmanager may add some.

use super::{AlertStatus, IncomingAlert, Labels};
use serde_json::{Map, Value};

/// Limits on one payload.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_alerts: usize,
    pub max_labels: usize,
    pub max_name_len: usize,
    pub max_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_alerts: 10_000,
            max_labels: 256,
            max_name_len: 1024,
            max_value_len: 16 * 1024,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("request body is not valid UTF-8 (first invalid byte at offset {offset})")]
    Utf8 { offset: usize },
    #[error("request body is not valid JSON: {detail}")]
    Json { detail: String },
    #[error("`{field}`: {detail}")]
    Field { field: String, detail: String },
    #[error("`{field}`: {detail}")]
    TooLarge { field: String, detail: String },
}

impl PayloadError {
    /// The offending field, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            PayloadError::Field { field, .. } | PayloadError::TooLarge { field, .. } => Some(field),
            _ => None,
        }
    }

    /// A short machine-readable name.
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::Utf8 { .. } => "invalid_utf8",
            PayloadError::Json { .. } => "invalid_json",
            PayloadError::Field { .. } => "invalid_field",
            PayloadError::TooLarge { .. } => "too_large",
        }
    }
}

fn field_err(field: impl Into<String>, detail: impl Into<String>) -> PayloadError {
    PayloadError::Field {
        field: field.into(),
        detail: detail.into(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_json(body: &[u8]) -> Result<Value, PayloadError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(PayloadError::Utf8 {
            offset: e.valid_up_to(),
        });
    }
    serde_json::from_slice(body).map_err(|e| PayloadError::Json {
        detail: format!("{e}"),
    })
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, PayloadError> {
    v.as_object()
        .ok_or_else(|| field_err(field, format!("expected an object, found {}", type_name(v))))
}

fn opt_str<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<&'a str>, PayloadError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(field_err(
            format!("{field}{key}"),
            format!("expected a string, found {}", type_name(v)),
        )),
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn label_map(
    v: Option<&Value>,
    field: &str,
    limits: &Limits,
    names_strict: bool,
) -> Result<Labels, PayloadError> {
    let mut out = Labels::new();
    let Some(v) = v else { return Ok(out) };
    if v.is_null() {
        return Ok(out);
    }
    let m = object(v, field)?;
    if m.len() > limits.max_labels {
        return Err(PayloadError::TooLarge {
            field: field.to_string(),
            detail: format!(
                "{} labels, at most {} are allowed",
                m.len(),
                limits.max_labels
            ),
        });
    }
    for (k, v) in m {
        if k.len() > limits.max_name_len {
            return Err(PayloadError::TooLarge {
                field: field.to_string(),
                detail: format!(
                    "a label name is {} bytes long, at most {} are allowed",
                    k.len(),
                    limits.max_name_len
                ),
            });
        }
        if names_strict && !is_label_name(k) {
            return Err(field_err(
                format!("{field}.{k}"),
                "invalid label name (use letters, digits and `_`, not starting with a digit)",
            ));
        }
        let s = v.as_str().ok_or_else(|| {
            field_err(
                format!("{field}.{k}"),
                format!("expected a string, found {}", type_name(v)),
            )
        })?;
        if s.len() > limits.max_value_len {
            return Err(PayloadError::TooLarge {
                field: format!("{field}.{k}"),
                detail: format!(
                    "value is {} bytes long, at most {} are allowed",
                    s.len(),
                    limits.max_value_len
                ),
            });
        }
        out.insert(k.clone(), s.to_string());
    }
    Ok(out)
}

/// RFC 3339 time to epoch milliseconds. Alertmanager's zero time (`0001-01-01…`) is "unset".
fn time(s: Option<&str>, field: &str) -> Result<Option<i64>, PayloadError> {
    let Some(s) = s else { return Ok(None) };
    if s.is_empty() || s.starts_with("0001-01-01") {
        return Ok(None);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|e| {
            field_err(
                field,
                format!("expected an RFC 3339 time, got `{}`: {e}", truncate(s)),
            )
        })
}

fn truncate(s: &str) -> String {
    if s.len() <= 64 {
        s.to_string()
    } else {
        let mut end = 64;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

fn status(s: Option<&str>, field: &str) -> Result<Option<AlertStatus>, PayloadError> {
    match s {
        None => Ok(None),
        Some("firing") => Ok(Some(AlertStatus::Firing)),
        Some("resolved") => Ok(Some(AlertStatus::Resolved)),
        Some(other) => Err(field_err(
            field,
            format!("expected `firing` or `resolved`, got `{}`", truncate(other)),
        )),
    }
}

/// What a webhook carried, besides its alerts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Webhook {
    pub receiver: String,
    pub group_key: String,
    pub truncated_alerts: u64,
    pub alerts: Vec<IncomingAlert>,
}

/// Parses Alertmanager's webhook payload (version 4).
pub fn parse_webhook(body: &[u8], limits: &Limits) -> Result<Webhook, PayloadError> {
    let v = parse_json(body)?;
    let m = object(&v, "(body)")?;
    if let Some(ver) = m.get("version") {
        match ver.as_str() {
            Some("4") => {}
            Some(other) => {
                return Err(field_err(
                    "version",
                    format!(
                        "unsupported webhook version `{}`; vigil reads version 4",
                        truncate(other)
                    ),
                ));
            }
            None => {
                return Err(field_err(
                    "version",
                    format!("expected a string, found {}", type_name(ver)),
                ));
            }
        }
    }
    let receiver = opt_str(m, "receiver", "")?.unwrap_or_default().to_string();
    let group_key = opt_str(m, "groupKey", "")?.unwrap_or_default().to_string();
    let top_status = status(opt_str(m, "status", "")?, "status")?;
    for key in ["groupLabels", "commonLabels", "commonAnnotations"] {
        label_map(m.get(key), key, limits, false)?;
    }
    opt_str(m, "externalURL", "")?;
    let truncated_alerts = match m.get("truncatedAlerts") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            field_err(
                "truncatedAlerts",
                format!("expected a non-negative integer, found {}", type_name(v)),
            )
        })?,
    };
    let list = match m.get("alerts") {
        None => {
            return Err(field_err(
                "alerts",
                "missing: a webhook carries an `alerts` array",
            ));
        }
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(field_err(
                "alerts",
                format!("expected an array, found {}", type_name(v)),
            ));
        }
    };
    if list.len() > limits.max_alerts {
        return Err(PayloadError::TooLarge {
            field: "alerts".into(),
            detail: format!(
                "{} alerts, at most {} per request",
                list.len(),
                limits.max_alerts
            ),
        });
    }
    let mut alerts = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let f = format!("alerts[{i}]");
        let am = object(a, &f)?;
        let p = format!("{f}.");
        let labels = label_map(am.get("labels"), &format!("{f}.labels"), limits, true)?;
        if labels.is_empty() {
            return Err(field_err(
                format!("{f}.labels"),
                "an alert needs at least one label",
            ));
        }
        let annotations = label_map(
            am.get("annotations"),
            &format!("{f}.annotations"),
            limits,
            false,
        )?;
        let st = status(opt_str(am, "status", &p)?, &format!("{f}.status"))?;
        let starts = time(opt_str(am, "startsAt", &p)?, &format!("{f}.startsAt"))?;
        let ends = time(opt_str(am, "endsAt", &p)?, &format!("{f}.endsAt"))?;
        let url = opt_str(am, "generatorURL", &p)?.unwrap_or_default();
        opt_str(am, "fingerprint", &p)?;
        alerts.push(IncomingAlert {
            labels,
            annotations,
            status: st.or(top_status).unwrap_or(AlertStatus::Firing),
            starts_at_ms: starts,
            ends_at_ms: ends,
            generator_url: truncate_owned(url, limits.max_value_len),
        });
    }
    Ok(Webhook {
        receiver,
        group_key,
        truncated_alerts,
        alerts,
    })
}

fn truncate_owned(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_string()
    } else {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    }
}

/// Parses a generic event: `{name, labels?, annotations?, severity?, service?,
/// status?, time?, message?}` — or an array of them. Each becomes an alert named `name`.
pub fn parse_events(body: &[u8], limits: &Limits) -> Result<Vec<IncomingAlert>, PayloadError> {
    let v = parse_json(body)?;
    let items: Vec<(String, &Value)> = match &v {
        Value::Array(a) => {
            if a.len() > limits.max_alerts {
                return Err(PayloadError::TooLarge {
                    field: "(body)".into(),
                    detail: format!(
                        "{} events, at most {} per request",
                        a.len(),
                        limits.max_alerts
                    ),
                });
            }
            a.iter()
                .enumerate()
                .map(|(i, e)| (format!("[{i}]"), e))
                .collect()
        }
        other => vec![(String::new(), other)],
    };
    let mut out = Vec::with_capacity(items.len());
    for (prefix, e) in items {
        let m = object(e, if prefix.is_empty() { "(body)" } else { &prefix })?;
        let p = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}.")
        };
        let name = opt_str(m, "name", &p)?
            .ok_or_else(|| field_err(format!("{p}name"), "missing: an event needs a `name`"))?;
        if name.is_empty() || name.len() > limits.max_name_len {
            return Err(field_err(format!("{p}name"), "must be 1 to 1024 bytes"));
        }
        let mut labels = label_map(m.get("labels"), &format!("{p}labels"), limits, true)?;
        labels.insert("alertname".into(), name.to_string());
        for key in ["severity", "service", "instance", "cluster"] {
            if let Some(s) = opt_str(m, key, &p)? {
                labels.insert(key.into(), s.to_string());
            }
        }
        let mut annotations = label_map(
            m.get("annotations"),
            &format!("{p}annotations"),
            limits,
            false,
        )?;
        if let Some(msg) = opt_str(m, "message", &p)? {
            annotations.insert("summary".into(), truncate_owned(msg, limits.max_value_len));
        }
        if let Some(val) = m.get("value") {
            match val {
                Value::Number(n) => {
                    annotations.insert("value".into(), n.to_string());
                }
                Value::Null => {}
                other => {
                    return Err(field_err(
                        format!("{p}value"),
                        format!("expected a number, found {}", type_name(other)),
                    ));
                }
            }
        }
        let st = status(opt_str(m, "status", &p)?, &format!("{p}status"))?;
        let at = time(opt_str(m, "time", &p)?, &format!("{p}time"))?;
        out.push(IncomingAlert {
            labels,
            annotations,
            status: st.unwrap_or(AlertStatus::Firing),
            starts_at_ms: at,
            ends_at_ms: None,
            generator_url: String::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AM: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"X\"}", "truncatedAlerts": 0,
      "status": "firing", "receiver": "vigil",
      "groupLabels": {"alertname": "X"}, "commonLabels": {"alertname": "X"},
      "commonAnnotations": {}, "externalURL": "http://am:9093", "somethingNew": [1],
      "alerts": [{"status": "firing", "labels": {"alertname": "X", "service": "db"},
        "annotations": {"value": "3"}, "startsAt": "2024-01-02T03:04:05.678Z",
        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://p/graph", "fingerprint": "abc"}]
    }"#;

    #[test]
    fn reads_alertmanager_v4_and_tolerates_unknown_fields() {
        let w = parse_webhook(AM.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(w.receiver, "vigil");
        assert_eq!(w.alerts.len(), 1);
        let a = &w.alerts[0];
        assert_eq!(a.labels["service"], "db");
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.ends_at_ms, None);
        assert_eq!(a.starts_at_ms, Some(1_704_164_645_678));
    }

    #[test]
    fn errors_name_the_field() {
        let l = Limits::default();
        let e = parse_webhook(br#"{"alerts":[{"labels":{"a":1}}]}"#, &l).unwrap_err();
        assert_eq!(e.field(), Some("alerts[0].labels.a"));
        let e = parse_webhook(
            br#"{"alerts":[{"labels":{"a":"b"},"startsAt":"yesterday"}]}"#,
            &l,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("alerts[0].startsAt"));
        let e = parse_webhook(br#"{"alerts":{}}"#, &l).unwrap_err();
        assert_eq!(e.field(), Some("alerts"));
        let e =
            parse_webhook(br#"{"alerts":[{"labels":{"a":"b"},"status":"meh"}]}"#, &l).unwrap_err();
        assert_eq!(e.field(), Some("alerts[0].status"));
        assert!(matches!(
            parse_webhook(b"{\"alerts\": [", &l),
            Err(PayloadError::Json { .. })
        ));
        assert!(matches!(
            parse_webhook(b"{\"a\xff\": 1}", &l),
            Err(PayloadError::Utf8 { offset: 3 })
        ));
        let e = parse_events(br#"{"labels":{}}"#, &l).unwrap_err();
        assert_eq!(e.field(), Some("name"));
    }

    #[test]
    fn too_many_labels_is_too_large() {
        let labels: Vec<String> = (0..10_000).map(|i| format!("\"l{i}\":\"v\"")).collect();
        let body = format!("{{\"alerts\":[{{\"labels\":{{{}}}}}]}}", labels.join(","));
        let e = parse_webhook(body.as_bytes(), &Limits::default()).unwrap_err();
        assert!(matches!(e, PayloadError::TooLarge { .. }));
        assert_eq!(e.field(), Some("alerts[0].labels"));
    }

    #[test]
    fn events_become_alerts() {
        let a = parse_events(
            br#"[{"name":"DiskFull","service":"db","severity":"critical","value":97.5,"message":"disk"}]"#,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(a[0].labels["alertname"], "DiskFull");
        assert_eq!(a[0].annotations["value"], "97.5");
    }
}
