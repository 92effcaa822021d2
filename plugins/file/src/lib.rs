//! `file`: a connector reading time series from CSV or JSON-lines files in a
//! directory the operator granted (`grants: { files: [{ path: /data }] }`).
//!
//! The query is the file path, optionally `#column` to pick one CSV column.
//! - CSV: a header row; the timestamp column (config `timestamp_column`, else
//!   `timestamp`/`time`/`ts`, else the first) holds epoch seconds, epoch ms, or
//!   `YYYY-MM-DD[T ]HH:MM:SS[.fff][Z|±HH:MM]`; every other numeric column is a
//!   series labelled `__name__=<column>`.
//! - JSON lines (`.jsonl`, `.ndjson`): one object per line with a timestamp
//!   (`timestamp`/`time`/`ts`), a `value` number, and labels (a `labels`
//!   object, or the other string fields). A line with `message` and no `value`
//!   is an event.

use serde::Deserialize;
use std::collections::BTreeMap;
use vigil_plugin_sdk::serde_json::{self, Value};
use vigil_plugin_sdk::{
    Batch, Capability, Connector, Context, Error, Event, Info, Plugin, Result, Series, TimeRange,
    export_plugin, json,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The CSV timestamp column (default: `timestamp`, `time`, `ts`, or the first column).
    #[serde(default)]
    pub timestamp_column: Option<String>,
    /// Extra labels on every series.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Return every row, ignoring the query range.
    #[serde(default)]
    pub ignore_range: bool,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str, what: &str) -> Result<i64> {
    s.parse::<i64>()
        .map_err(|_| Error::invalid_input(format!("bad {what} in timestamp: {s:?}")))
}

/// Parses a timestamp into ms since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        if !n.is_finite() {
            return Err(Error::invalid_input(format!("bad timestamp {s:?}")));
        }
        // Heuristic: values beyond year ~5138 in seconds are milliseconds.
        return Ok(if n.abs() >= 1e11 {
            n as i64
        } else {
            (n * 1000.0).round() as i64
        });
    }
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(Error::invalid_input(format!(
            "unrecognised timestamp {s:?}"
        )));
    }
    let (y, mo, d) = (
        num(&s[0..4], "year")?,
        num(&s[5..7], "month")?,
        num(&s[8..10], "day")?,
    );
    let (h, mi, sec) = (
        num(&s[11..13], "hour")?,
        num(&s[14..16], "minute")?,
        num(&s[17..19], "second")?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(Error::invalid_input(format!(
            "timestamp out of range: {s:?}"
        )));
    }
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        let padded = format!("{digits:0<3}");
        ms = num(&padded[..3], "fraction")?;
        rest = &frac[digits.len()..];
    }
    let offset_min = match rest {
        "" | "Z" | "z" => 0,
        o if (o.starts_with('+') || o.starts_with('-')) && o.len() == 6 && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (num(&o[1..3], "offset")? * 60 + num(&o[4..6], "offset")?)
        }
        o => return Err(Error::invalid_input(format!("bad timezone {o:?} in {s:?}"))),
    };
    let days = days_from_civil(y, mo, d);
    Ok(((days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60) * 1000) + ms)
}

fn in_range(t: i64, range: &TimeRange, cfg: &Config) -> bool {
    cfg.ignore_range || range.start == range.end || (t >= range.start && t <= range.end)
}

/// Keeps, for an instant query, only the last sample at or before `end`.
fn instant(mut b: Batch, range: &TimeRange, cfg: &Config) -> Batch {
    if cfg.ignore_range || range.start != range.end {
        return b;
    }
    for s in &mut b.series {
        let last = s
            .samples
            .iter()
            .filter(|p| p.timestamp <= range.end)
            .max_by_key(|p| p.timestamp)
            .copied();
        s.samples = last.into_iter().collect();
    }
    b.events.retain(|e| e.timestamp <= range.end);
    b
}

fn split_csv_line(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

/// Parses CSV text.
pub fn parse_csv(
    text: &str,
    column: Option<&str>,
    cfg: &Config,
    range: TimeRange,
) -> Result<Batch> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().context("CSV file is empty")?;
    let header = split_csv_line(header.trim_start_matches('\u{feff}'));
    let ts_col = match &cfg.timestamp_column {
        Some(c) => header
            .iter()
            .position(|h| h == c)
            .with_context(|| format!("no column {c:?} in the CSV header"))?,
        None => header
            .iter()
            .position(|h| matches!(h.to_ascii_lowercase().as_str(), "timestamp" | "time" | "ts"))
            .unwrap_or(0),
    };
    let wanted: Vec<usize> = match column {
        Some(c) => vec![
            header
                .iter()
                .position(|h| h == c)
                .with_context(|| format!("no column {c:?} in the CSV header"))?,
        ],
        None => (0..header.len()).filter(|&i| i != ts_col).collect(),
    };
    let mut series: Vec<Series> = wanted
        .iter()
        .map(|&i| {
            let mut s = Series::new().label("__name__", &header[i]);
            for (k, v) in &cfg.labels {
                s = s.label(k, v);
            }
            s
        })
        .collect();
    let mut numeric = vec![true; wanted.len()];
    for (n, line) in lines {
        let fields = split_csv_line(line);
        let ts = fields
            .get(ts_col)
            .with_context(|| format!("line {}: no timestamp field", n + 1))?;
        let t = parse_time(ts).context(format!("line {}", n + 1))?;
        if !in_range(t, &range, cfg) && range.start != range.end {
            continue;
        }
        for (k, &i) in wanted.iter().enumerate() {
            match fields.get(i).map(|f| f.parse::<f64>()) {
                Some(Ok(v)) => series[k].push(t, v),
                Some(Err(_)) if fields[i].is_empty() => {}
                Some(Err(_)) => numeric[k] = false,
                None => {}
            }
        }
    }
    let series = series
        .into_iter()
        .zip(numeric)
        .filter(|(_, ok)| *ok)
        .map(|(s, _)| s)
        .collect();
    Ok(instant(
        Batch {
            series,
            events: vec![],
        },
        &range,
        cfg,
    ))
}

fn ts_of(obj: &serde_json::Map<String, Value>) -> Option<&Value> {
    obj.get("timestamp")
        .or_else(|| obj.get("time"))
        .or_else(|| obj.get("ts"))
}

/// Parses JSON-lines text.
pub fn parse_jsonl(text: &str, cfg: &Config, range: TimeRange) -> Result<Batch> {
    let mut by_labels: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| Error::invalid_input(format!("line {}: {e}", n + 1)))?;
        let obj = v
            .as_object()
            .with_context(|| format!("line {}: not a JSON object", n + 1))?;
        let t = match ts_of(obj).with_context(|| format!("line {}: no timestamp/time/ts", n + 1))? {
            Value::Number(x) => parse_time(&x.to_string())?,
            Value::String(s) => parse_time(s).context(format!("line {}", n + 1))?,
            _ => {
                return Err(Error::invalid_input(format!(
                    "line {}: timestamp must be a number or string",
                    n + 1
                )));
            }
        };
        if !in_range(t, &range, cfg) && range.start != range.end {
            continue;
        }
        let mut labels: Vec<(String, String)> = cfg
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(Value::Object(l)) = obj.get("labels") {
            for (k, v) in l {
                labels.push((
                    k.clone(),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                ));
            }
        } else {
            for (k, v) in obj {
                if let (false, Some(s)) = (
                    matches!(k.as_str(), "timestamp" | "time" | "ts" | "message"),
                    v.as_str(),
                ) {
                    labels.push((k.clone(), s.to_string()));
                }
            }
        }
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        match obj.get("value") {
            Some(val) => {
                let x = val
                    .as_f64()
                    .or_else(|| val.as_str().and_then(|s| s.parse().ok()))
                    .with_context(|| format!("line {}: value is not a number", n + 1))?;
                by_labels
                    .entry(labels.clone())
                    .or_insert_with(|| Series {
                        labels,
                        samples: vec![],
                    })
                    .push(t, x);
            }
            None => {
                let message = obj
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                events.push(Event {
                    timestamp: t,
                    labels,
                    message,
                });
            }
        }
    }
    let mut series: Vec<Series> = by_labels.into_values().collect();
    for s in &mut series {
        s.samples.sort_by_key(|p| p.timestamp);
    }
    Ok(instant(Batch { series, events }, &range, cfg))
}

pub struct FilePlugin;

impl Plugin for FilePlugin {
    type Config = Config;
    fn info() -> Info {
        Info::new("file", env!("CARGO_PKG_VERSION"))
            .description("Time series from CSV or JSON-lines files in granted directories.")
            .capability(Capability::files("reads the data files named in queries"))
            .config_schema(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "timestamp_column": { "type": "string" },
                    "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                    "ignore_range": { "type": "boolean" }
                }
            }))
    }
}

impl Connector for FilePlugin {
    fn fetch(config: Config, query: &str, range: TimeRange) -> Result<Batch> {
        let (path, column) = match query.rsplit_once('#') {
            Some((p, c)) => (p, Some(c)),
            None => (query, None),
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::failed(format!("cannot read {path:?}: {e} (is its directory granted under `grants: {{ files: [...] }}`?)"))
        })?;
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            parse_jsonl(&text, &config, range)
        } else {
            parse_csv(&text, column, &config, range)
        }
    }
}

export_plugin!(FilePlugin: connector);

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: TimeRange = TimeRange {
        start: i64::MIN,
        end: i64::MAX,
        step: 0,
    };

    #[test]
    fn timestamps() {
        assert_eq!(parse_time("1970-01-01 00:00:00").expect("t"), 0);
        assert_eq!(
            parse_time("2014-04-01 00:00:00").expect("t"),
            1_396_310_400_000
        );
        assert_eq!(
            parse_time("2014-04-01T00:00:00.250Z").expect("t"),
            1_396_310_400_250
        );
        assert_eq!(
            parse_time("2014-04-01T02:00:00+02:00").expect("t"),
            1_396_310_400_000
        );
        assert_eq!(parse_time("1396310400").expect("t"), 1_396_310_400_000);
        assert_eq!(parse_time("1396310400123").expect("t"), 1_396_310_400_123);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2014-13-01 00:00:00").is_err());
    }

    #[test]
    fn csv_nab_format() {
        let text = "timestamp,value\n2014-04-01 00:00:00,10.5\n2014-04-01 00:05:00,11\n\n2014-04-01 00:10:00,12\n";
        let b = parse_csv(text, None, &Config::default(), ALL).expect("csv");
        assert_eq!(b.series.len(), 1);
        assert_eq!(
            b.series[0].labels,
            vec![("__name__".to_string(), "value".to_string())]
        );
        assert_eq!(b.series[0].samples.len(), 3);
        assert_eq!(b.series[0].samples[1].value, 11.0);
        let r = TimeRange {
            start: 1_396_310_700_000,
            end: 1_396_311_000_000,
            step: 0,
        };
        assert_eq!(
            parse_csv(text, None, &Config::default(), r)
                .expect("csv")
                .series[0]
                .samples
                .len(),
            2
        );
        let at = TimeRange {
            start: 1_396_310_800_000,
            end: 1_396_310_800_000,
            step: 0,
        };
        let one = parse_csv(text, None, &Config::default(), at).expect("csv");
        assert_eq!(one.series[0].samples.len(), 1);
        assert_eq!(one.series[0].samples[0].value, 11.0);
    }

    #[test]
    fn csv_multiple_columns_and_quotes() {
        let text = "ts,cpu,host,\"mem, bytes\"\n1,0.5,a,100\n2,0.7,b,200\n";
        let b = parse_csv(text, None, &Config::default(), ALL).expect("csv");
        let names: Vec<_> = b.series.iter().map(|s| s.labels[0].1.clone()).collect();
        assert_eq!(
            names,
            vec!["cpu", "mem, bytes"],
            "non-numeric `host` is skipped"
        );
        let only = parse_csv(text, Some("cpu"), &Config::default(), ALL).expect("csv");
        assert_eq!(only.series.len(), 1);
        assert!(parse_csv(text, Some("nope"), &Config::default(), ALL).is_err());
        assert!(parse_csv("", None, &Config::default(), ALL).is_err());
    }

    #[test]
    fn jsonl_series_and_events() {
        let text = r#"{"timestamp": 1, "value": 1, "host": "a"}
{"timestamp": "1970-01-01T00:00:02Z", "value": 2, "host": "a"}
{"ts": 3000, "value": "3.5", "labels": {"host": "b"}}
{"time": 4000, "message": "deploy", "service": "api"}
"#;
        let b = parse_jsonl(text, &Config::default(), ALL).expect("jsonl");
        assert_eq!(b.series.len(), 2);
        let a = b
            .series
            .iter()
            .find(|s| s.labels.contains(&("host".into(), "a".into())))
            .expect("host a");
        assert_eq!(a.samples.len(), 2);
        assert_eq!(a.samples[1].timestamp, 2000);
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].message, "deploy");
        assert!(parse_jsonl("{\"value\": 1}", &Config::default(), ALL).is_err());
        assert!(parse_jsonl("not json", &Config::default(), ALL).is_err());
    }
}
