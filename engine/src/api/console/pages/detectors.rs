//! Detectors: their detections and forecasts as plots.

use super::*;

fn kind_of(d: &vigil_bundle::model::Detector) -> &'static str {
    if d.model.classifier().is_some() {
        "failure classifier"
    } else if d.model.forecast().is_some() {
        "forecast"
    } else {
        "anomaly"
    }
}

pub(in crate::api::console) async fn detectors(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
) -> Response {
    let svc = api.svc();
    let store = svc.store();
    let predictions = store.predictions().unwrap_or_default();
    let forecasts = store.forecasts().unwrap_or_default();
    // The bundle's detectors, and any that left records behind.
    let mut names: BTreeMap<String, Option<vigil_bundle::model::Detector>> = BTreeMap::new();
    if let Some(ops) = api.serving().ops.clone() {
        for d in &ops.bundle.detectors {
            names.insert(d.name.clone(), Some(d.clone()));
        }
    }
    for n in predictions
        .iter()
        .map(|p| &p.detector)
        .chain(forecasts.iter().map(|f| &f.detector))
    {
        names.entry(n.clone()).or_insert(None);
    }
    let mut b = String::from("<h1>Detectors</h1>");
    if names.is_empty() {
        b.push_str(
            "<div class=\"panel\"><p>No detectors in the bundle, and none left records.</p></div>",
        );
        return html("Detectors", Nav::Detectors, &s, "", &b);
    }
    b.push_str("<div class=\"scroll\"><table id=\"detectors\"><thead><tr><th>Detector</th><th>Kind</th><th>Source</th><th>Detections</th><th>Forecasts</th><th>Last finding</th></tr></thead><tbody>");
    for (name, d) in &names {
        let mine: Vec<_> = predictions.iter().filter(|p| &p.detector == name).collect();
        let last = mine.iter().map(|p| p.at).max();
        let _ = write!(
            b,
            "<tr><td><a href=\"/console/detectors/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"small\">{}</td></tr>",
            seg(name),
            esc(name),
            d.as_ref().map_or("(not in the bundle)", kind_of),
            esc(d.as_ref().map_or("", |d| d.source.as_str())),
            mine.len(),
            forecasts.iter().filter(|f| &f.detector == name).count(),
            last.map_or_else(|| "—".into(), |t| esc(&time(t * 1000)))
        );
    }
    b.push_str("</tbody></table></div>");
    html("Detectors", Nav::Detectors, &s, "", &b)
}

/// Series drawn per detector page at most.
const MAX_SERIES: usize = 12;

pub(in crate::api::console) async fn detector(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
) -> Response {
    let svc = api.svc();
    let store = svc.store();
    let predictions = store.predictions().unwrap_or_default();
    let forecasts = store.forecasts().unwrap_or_default();
    let def = api
        .serving()
        .ops
        .clone()
        .and_then(|o| o.bundle.detectors.iter().find(|d| d.name == name).cloned());
    let series = plot::group(&name, &predictions, &forecasts);
    if def.is_none() && series.is_empty() {
        return problem(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("no detector `{name}` in the bundle, and no records of one"),
            Some(&s),
        );
    }
    let mut b = format!("<h1>Detector <code>{}</code></h1>", esc(&name));
    if let Some(d) = &def {
        let _ = write!(
            b,
            "<div class=\"panel\"><p>{}</p><dl><dt>Kind</dt><dd>{}</dd><dt>Source</dt><dd>{}</dd><dt>Schedule</dt><dd><code>{}</code></dd>\
             <dt>Threshold</dt><dd>{:.2}</dd><dt>Alert</dt><dd>{}</dd><dt>Reads</dt><dd><code>{}</code></dd></dl></div>",
            esc(d.description.as_deref().unwrap_or("")),
            kind_of(d),
            esc(&d.source),
            esc(&d.schedule),
            d.model.threshold,
            esc(&d.alert.name),
            esc(&d.queries().join(", "))
        );
    }
    let _ = write!(
        b,
        "<p class=\"legend small\"><span class=\"badge st-running\">values at detections</span><span class=\"badge st-failed\">anomaly</span>\
         <span class=\"badge st-succeeded\">resolved</span><span class=\"badge st-awaiting_approval\">forecast and its interval</span> \
         {} series; the newest {} points of each.</p>",
        series.len(),
        plot::MAX_POINTS
    );
    if series.is_empty() {
        let _ = write!(
            b,
            "<div class=\"panel\">{}</div>",
            plot::svg(&format!("{name}: nothing yet"), &plot::Series::default())
        );
    }
    for (key, sr) in series.iter().take(MAX_SERIES) {
        let _ = write!(
            b,
            "<div class=\"panel plot-panel\"><h2>{}</h2>{}<p class=\"small dim\">{} detection(s), {} forecast point(s)</p></div>",
            esc(key),
            plot::svg(&format!("{name} {key}"), sr),
            sr.detections.len(),
            sr.forecasts.len()
        );
    }
    let mut recent: Vec<_> = predictions.iter().filter(|p| p.detector == name).collect();
    recent.sort_unstable_by_key(|p| std::cmp::Reverse(p.at));
    if !recent.is_empty() {
        b.push_str("<h2>Latest findings</h2><div class=\"scroll\"><table><thead><tr><th>When</th><th>Alert</th><th>Series</th><th>Value</th><th>Score</th><th>State</th></tr></thead><tbody>");
        for p in recent.iter().take(20) {
            let _ = write!(
                b,
                "<tr><td class=\"small\">{}</td><td>{}</td><td class=\"small\"><code>{}</code></td><td>{:.3}</td><td>{:.2}</td><td>{}</td></tr>",
                esc(&time(p.at * 1000)),
                esc(&p.alertname),
                esc(&plot::series_key(&p.labels)),
                p.value,
                p.score,
                status_badge(if p.resolved { "resolved" } else { "open" })
            );
        }
        b.push_str("</tbody></table></div>");
    }
    html(&format!("Detector {name}"), Nav::Detectors, &s, "", &b)
}
