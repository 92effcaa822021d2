//! A detector's record as an inline SVG plot: the values its detections saw, the
//! points it called anomalies (and those it saw resolve), and its forecasts with
//! their interval. Drawn on the server from what the store keeps; no script.

use super::html::{esc, time};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use vigil_runtime::detectors::{Detection, ForecastRecord};

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
/// Points drawn per series at most (the newest).
pub const MAX_POINTS: usize = 2000;

/// One series of a detector: its label set and what the store holds for it.
#[derive(Debug, Default)]
pub struct Series<'a> {
    pub detections: Vec<&'a Detection>,
    pub forecasts: Vec<&'a ForecastRecord>,
}

/// The series key: the labels that tell one series from another (not the alert's
/// own name and severity).
pub fn series_key(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity" | "detector"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if parts.is_empty() {
        "(one series)".into()
    } else {
        parts.join(", ")
    }
}

/// A detector's records grouped by series.
pub fn group<'a>(
    detector: &str,
    detections: &'a [Detection],
    forecasts: &'a [ForecastRecord],
) -> BTreeMap<String, Series<'a>> {
    let mut out: BTreeMap<String, Series<'a>> = BTreeMap::new();
    for d in detections.iter().filter(|d| d.detector == detector) {
        out.entry(series_key(&d.labels))
            .or_default()
            .detections
            .push(d);
    }
    for f in forecasts.iter().filter(|f| f.detector == detector) {
        out.entry(series_key(&f.labels))
            .or_default()
            .forecasts
            .push(f);
    }
    for s in out.values_mut() {
        s.detections.sort_unstable_by_key(|d| d.at);
        let skip = s.detections.len().saturating_sub(MAX_POINTS);
        s.detections.drain(..skip);
        s.forecasts.sort_unstable_by_key(|f| (f.t, f.made_at));
        let skip = s.forecasts.len().saturating_sub(MAX_POINTS);
        s.forecasts.drain(..skip);
    }
    out
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{v:.2}")
    }
}

/// The plot of one series.
pub fn svg(title: &str, s: &Series<'_>) -> String {
    let finite = |v: f64| v.is_finite();
    let ts: Vec<i64> = s
        .detections
        .iter()
        .map(|d| d.at)
        .chain(s.forecasts.iter().flat_map(|f| [f.made_at, f.t]))
        .collect();
    let ys: Vec<f64> = s
        .detections
        .iter()
        .map(|d| d.value)
        .chain(s.forecasts.iter().flat_map(|f| [f.value, f.low, f.high]))
        .filter(|v| finite(*v))
        .collect();
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        esc(title),
        esc(title)
    );
    let (Some(&t0), Some(&t1)) = (ts.iter().min(), ts.iter().max()) else {
        let _ = write!(
            out,
            "<text class=\"grid-label\" x=\"{LEFT}\" y=\"{}\">nothing recorded yet</text></svg>",
            H / 2.0
        );
        return out;
    };
    let (mut y0, mut y1) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if (y1 - y0).abs() < 1e-12 {
        y0 -= 1.0;
        y1 += 1.0;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let span_t = ((t1 - t0).max(1)) as f64;
    let x = |t: i64| LEFT + (t - t0) as f64 / span_t * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - (v - y0) / (y1 - y0)) * (H - TOP - BOTTOM);
    // Axes and their labels.
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\"/>\
         <text class=\"grid-label\" x=\"4\" y=\"{}\">{}</text>\
         <text class=\"grid-label\" x=\"4\" y=\"{b}\">{}</text>\
         <text class=\"grid-label\" x=\"{LEFT}\" y=\"{}\">{}</text>\
         <text class=\"grid-label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        TOP + 10.0,
        esc(&fmt_num(y1)),
        esc(&fmt_num(y0)),
        H - 8.0,
        esc(&time(t0 * 1000)),
        W - RIGHT,
        H - 8.0,
        esc(&time(t1 * 1000)),
        b = H - BOTTOM,
        r = W - RIGHT,
    );
    // The forecasts' interval, then their values.
    let fc: Vec<&&ForecastRecord> = s
        .forecasts
        .iter()
        .filter(|f| finite(f.low) && finite(f.high) && finite(f.value))
        .collect();
    if fc.len() >= 2 {
        let mut band = String::new();
        for f in &fc {
            let _ = write!(band, "{:.1},{:.1} ", x(f.t), y(f.high));
        }
        for f in fc.iter().rev() {
            let _ = write!(band, "{:.1},{:.1} ", x(f.t), y(f.low));
        }
        let _ = write!(
            out,
            "<polygon class=\"band\" points=\"{}\"/>",
            band.trim_end()
        );
        let line: Vec<String> = fc
            .iter()
            .map(|f| format!("{:.1},{:.1}", x(f.t), y(f.value)))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"forecast\" points=\"{}\"/>",
            line.join(" ")
        );
    }
    // The values the detections saw, joined, and each detection as a point.
    let pts: Vec<&&Detection> = s.detections.iter().filter(|d| finite(d.value)).collect();
    if pts.len() >= 2 {
        let line: Vec<String> = pts
            .iter()
            .map(|d| format!("{:.1},{:.1}", x(d.at), y(d.value)))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"series\" points=\"{}\"/>",
            line.join(" ")
        );
    }
    for d in pts {
        let _ = write!(
            out,
            "<circle class=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\"><title>{} {} value {} score {:.2}</title></circle>",
            if d.resolved { "resolved" } else { "anomaly" },
            x(d.at),
            y(d.value),
            esc(&time(d.at * 1000)),
            if d.resolved { "resolved" } else { "anomaly" },
            esc(&fmt_num(d.value)),
            d.score
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(at: i64, value: f64, resolved: bool) -> Detection {
        Detection {
            detector: "lat".into(),
            alertname: "Slow".into(),
            severity: "warning".into(),
            labels: [
                ("service".to_string(), "api".to_string()),
                ("alertname".to_string(), "Slow".to_string()),
            ]
            .into_iter()
            .collect(),
            annotations: BTreeMap::new(),
            score: 0.9,
            value,
            at,
            resolved,
        }
    }

    #[test]
    fn a_series_is_drawn_with_its_anomalies_and_forecast_band() {
        let d = vec![
            det(100, 1.0, false),
            det(200, 3.0, false),
            det(300, 2.0, true),
            {
                let mut o = det(150, 9.0, false);
                o.detector = "other".into();
                o
            },
        ];
        let f: Vec<ForecastRecord> = (0..3)
            .map(|i| ForecastRecord {
                detector: "lat".into(),
                labels: [("service".to_string(), "api".to_string())]
                    .into_iter()
                    .collect(),
                made_at: 300,
                horizon_secs: 600,
                t: 300 + i * 100,
                value: 2.0 + i as f64,
                low: 1.0 + i as f64,
                high: 3.0 + i as f64,
            })
            .collect();
        let g = group("lat", &d, &f);
        assert_eq!(g.len(), 1, "{:?}", g.keys().collect::<Vec<_>>());
        let s = &g["service=api"];
        assert_eq!(s.detections.len(), 3);
        let svg = svg("lat <api>", s);
        assert_eq!(svg.matches("class=\"anomaly\"").count(), 2);
        assert_eq!(svg.matches("class=\"resolved\"").count(), 1);
        assert!(svg.contains("class=\"band\"") && svg.contains("class=\"forecast\""));
        assert!(svg.contains("lat &lt;api&gt;"));
        assert!(!svg.contains("nothing recorded yet"));
        let empty = svg_empty();
        assert!(empty.contains("nothing recorded yet"));
    }

    fn svg_empty() -> String {
        svg("none", &Series::default())
    }
}
