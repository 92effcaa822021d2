//! `prometheus`: a connector and a `prometheus/query` action over the
//! Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`).
//!
//! Connector: `fetch(query, range)`: an instant query when `range.start ==
//! range.end`, else a range query with `range.step` (default 60 s).
//! Action `query`: input `{ query, time? (ms) }`, output
//! `{ value, result: [{ labels, value, timestamp }] }` where `value` is the
//! first result's value (or null). It only reads, so its plan runs the query
//! (GET is allowed in a dry-run) and carries the output as a preview.

use serde::Deserialize;
use std::collections::BTreeMap;
use vigil_plugin_sdk::serde_json::{self, Value};
use vigil_plugin_sdk::{
    Action, ActionDef, Batch, Capability, Connector, Context, Error, Info, Plan, Plugin, Result,
    Series, TimeRange, export_plugin, http, json, secrets,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Name of a granted secret holding a bearer token.
    #[serde(default)]
    pub bearer_token_secret: Option<String>,
    /// Default range-query step (ms) when the range gives none.
    #[serde(default)]
    pub default_step_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Value,
}

#[derive(Debug, Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Option<Vec<(f64, String)>>,
}

fn parse_value(s: &str) -> Result<f64> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().context(format!("sample value {s:?}")),
    }
}

fn ts_ms(sec: f64) -> i64 {
    (sec * 1000.0).round() as i64
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Turns a Prometheus API response body into a batch.
pub fn parse_response(body: &[u8]) -> Result<Batch> {
    let r: ApiResponse = serde_json::from_slice(body)
        .map_err(|e| Error::failed(format!("not a Prometheus API response: {e}")))?;
    if r.status != "success" {
        return Err(Error::failed(format!(
            "Prometheus error ({}): {}",
            r.error_type.unwrap_or_default(),
            r.error.unwrap_or_default()
        )));
    }
    let data = r.data.context("Prometheus response has no data")?;
    let mut batch = Batch::default();
    match data.result_type.as_str() {
        "vector" | "matrix" => {
            let items: Vec<VectorItem> = serde_json::from_value(data.result)
                .map_err(|e| Error::failed(format!("result: {e}")))?;
            for it in items {
                let mut s = Series {
                    labels: it.metric.into_iter().collect(),
                    samples: vec![],
                };
                if let Some((t, v)) = it.value {
                    s.push(ts_ms(t), parse_value(&v)?);
                }
                for (t, v) in it.values.unwrap_or_default() {
                    s.push(ts_ms(t), parse_value(&v)?);
                }
                batch.series.push(s);
            }
        }
        "scalar" => {
            let (t, v): (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| Error::failed(format!("scalar: {e}")))?;
            let mut s = Series::new();
            s.push(ts_ms(t), parse_value(&v)?);
            batch.series.push(s);
        }
        "string" => {
            let (t, v): (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| Error::failed(format!("string: {e}")))?;
            batch.events.push(vigil_plugin_sdk::Event {
                timestamp: ts_ms(t),
                labels: vec![],
                message: v,
            });
        }
        other => return Err(Error::failed(format!("unknown resultType {other:?}"))),
    }
    Ok(batch)
}

/// The URL for a query.
pub fn query_url(cfg: &Config, query: &str, range: TimeRange) -> String {
    let base = cfg.url.trim_end_matches('/');
    if range.start == range.end {
        let t = secs(range.end);
        format!(
            "{base}/api/v1/query?{}",
            http::query_string(&[("query", query), ("time", &t)])
        )
    } else {
        let step_ms = if range.step > 0 {
            range.step
        } else {
            cfg.default_step_ms.unwrap_or(60_000)
        }
        .max(1);
        let step = format!("{}", step_ms as f64 / 1000.0);
        let (start, end) = (secs(range.start), secs(range.end));
        format!(
            "{base}/api/v1/query_range?{}",
            http::query_string(&[
                ("query", query),
                ("start", &start),
                ("end", &end),
                ("step", &step)
            ])
        )
    }
}

fn run_query(cfg: &Config, query: &str, range: TimeRange) -> Result<Batch> {
    if query.trim().is_empty() {
        return Err(Error::invalid_input("empty PromQL query"));
    }
    let url = query_url(cfg, query, range);
    let mut req = http::Request::get(&url).header("accept", "application/json");
    if let Some(t) = cfg.timeout_ms {
        req = req.timeout_ms(t);
    }
    if let Some(name) = &cfg.bearer_token_secret {
        let token = secrets::get(name)?;
        req = req.header("authorization", &format!("Bearer {token}"));
    }
    let resp = req.send()?;
    if !resp.is_success() && resp.status != 400 && resp.status != 422 {
        return Err(Error::failed(format!(
            "Prometheus answered HTTP {}: {}",
            resp.status,
            resp.text().chars().take(300).collect::<String>()
        )));
    }
    parse_response(&resp.body).context(format!("query {query:?}"))
}

/// The `prometheus/query` output for a batch.
pub fn query_output(b: &Batch) -> Value {
    let result: Vec<Value> = b
        .series
        .iter()
        .map(|s| {
            let labels: BTreeMap<&str, &str> = s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let last = s.samples.last();
            json!({ "labels": labels, "value": last.map(|p| p.value), "timestamp": last.map(|p| p.timestamp) })
        })
        .collect();
    let value = b
        .series
        .first()
        .and_then(|s| s.samples.last())
        .map(|p| p.value);
    json!({ "value": value, "result": result })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryInput {
    query: String,
    /// ms since the epoch; default: now (needs the clock grant) .
    #[serde(default)]
    time: Option<i64>,
}

fn query_input(input: &Value) -> Result<QueryInput> {
    serde_json::from_value(input.clone())
        .map_err(|e| Error::invalid_input(format!("prometheus/query input: {e}")))
}

fn instant_at(input: &QueryInput) -> TimeRange {
    let t = input.time.unwrap_or_else(vigil_plugin_sdk::clock::now_ms);
    TimeRange {
        start: t,
        end: t,
        step: 0,
    }
}

pub struct Prometheus;

impl Plugin for Prometheus {
    type Config = Config;
    fn info() -> Info {
        Info::new("prometheus", env!("CARGO_PKG_VERSION"))
            .description("Instant and range queries over the Prometheus HTTP API.")
            .capability(Capability::http("queries the Prometheus HTTP API"))
            .capability(Capability::clock("instant queries at the current time"))
            .capability(Capability::secret("", "optional bearer token"))
            .action(
                ActionDef::new(
                    "query",
                    "Runs an instant PromQL query; output.value is the first result.",
                )
                .idempotent(true)
                .pure(true),
            )
            .config_schema(json!({
                "type": "object",
                "required": ["url"],
                "additionalProperties": false,
                "properties": {
                    "url": { "type": "string", "format": "uri" },
                    "timeout_ms": { "type": "integer", "minimum": 1 },
                    "bearer_token_secret": { "type": "string" },
                    "default_step_ms": { "type": "integer", "minimum": 1 }
                }
            }))
    }
}

impl Connector for Prometheus {
    fn fetch(config: Config, query: &str, range: TimeRange) -> Result<Batch> {
        run_query(&config, query, range)
    }
}

impl Action for Prometheus {
    fn validate(_: &Config, action: &str, input: &Value) -> Result<()> {
        if action != "query" {
            return Err(Error::invalid_input(format!("unknown action {action:?}")));
        }
        let q = query_input(input)?;
        if q.query.trim().is_empty() {
            return Err(Error::invalid_input("empty PromQL query"));
        }
        Ok(())
    }
    fn plan(config: &Config, action: &str, input: &Value) -> Result<Plan> {
        Self::validate(config, action, input)?;
        let q = query_input(input)?;
        // Reading is not an effect: run it now so a dry-run can show and use the value.
        let out = query_output(&run_query(config, &q.query, instant_at(&q))?);
        Ok(Plan::new(format!(
            "read-only PromQL query `{}` against {}",
            q.query, config.url
        ))
        .preview(out))
    }
    fn execute(config: &Config, _: &str, input: &Value, _: &Plan) -> Result<Value> {
        let q = query_input(input)?;
        Ok(query_output(&run_query(config, &q.query, instant_at(&q))?))
    }
}

export_plugin!(Prometheus: connector, action);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vectors_matrices_and_errors() {
        let v = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"p"},"value":[1700000000.5,"1"]}]}}"#;
        let b = parse_response(v).expect("vector");
        assert_eq!(b.series[0].samples[0].timestamp, 1_700_000_000_500);
        assert_eq!(b.series[0].samples[0].value, 1.0);
        assert_eq!(query_output(&b)["value"], json!(1.0));
        let m = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"NaN"],[3,"+Inf"]]}]}}"#;
        let b = parse_response(m).expect("matrix");
        assert_eq!(b.series[0].samples.len(), 3);
        assert!(b.series[0].samples[1].value.is_nan());
        let s = br#"{"status":"success","data":{"resultType":"scalar","result":[5,"2.5"]}}"#;
        assert_eq!(
            parse_response(s).expect("scalar").series[0].samples[0].value,
            2.5
        );
        let e = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(
            parse_response(e)
                .expect_err("error")
                .message
                .contains("parse error")
        );
        assert!(parse_response(b"<html>").is_err());
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(
            query_output(&parse_response(empty).expect("empty"))["value"],
            Value::Null
        );
    }

    #[test]
    fn urls_are_encoded() {
        let cfg = Config {
            url: "http://127.0.0.1:9090/".into(),
            timeout_ms: None,
            bearer_token_secret: None,
            default_step_ms: None,
        };
        let u = query_url(
            &cfg,
            "up{job=\"a b\"}",
            TimeRange {
                start: 1500,
                end: 1500,
                step: 0,
            },
        );
        assert_eq!(
            u,
            "http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22a%20b%22%7D&time=1.500"
        );
        let r = query_url(
            &cfg,
            "up",
            TimeRange {
                start: 0,
                end: 60_000,
                step: 15_000,
            },
        );
        assert_eq!(
            r,
            "http://127.0.0.1:9090/api/v1/query_range?query=up&start=0.000&end=60.000&step=15"
        );
    }
}
