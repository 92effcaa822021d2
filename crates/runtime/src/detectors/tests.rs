use super::*;
use std::path::Path;
use vigil_bundle::Bundle;

fn detector(model: &str) -> Detector {
    let text = format!(
        "apiVersion: vigil/v1\nkind: Detector\nname: d\nschedule: \"*/30 * * * * *\"\nsource: sim\nquery: mem\nmodel: {model}\nalert: {{ name: Odd, severity: warning, labels: {{ team: sre }} }}\n"
    );
    let b = Bundle::from_source(Path::new("d.yaml"), &text);
    assert!(!b.has_errors(), "{:?}", b.diagnostics);
    b.detectors[0].clone()
}

fn series(points: Vec<(i64, f64)>) -> Series {
    Series {
        labels: BTreeMap::from([("service".to_string(), "api".to_string())]),
        points,
    }
}

#[test]
fn scores_only_new_points_and_alerts_on_a_spike() {
    let mut run = DetectorRun::new(&detector("{ anomaly: { method: robust }, threshold: 0.9 }"));
    let calm: Vec<(i64, f64)> = (0..300).map(|i| (i * 60, 100.0 + (i % 7) as f64)).collect();
    assert!(run.observe(&[series(calm.clone())]).is_empty());
    // The same points again, plus a spike: only the spike is new, and it alerts.
    let mut more = calm;
    more.push((300 * 60, 900.0));
    let found = run.observe(&[series(more)]);
    assert_eq!(found.len(), 1);
    let d = &found[0];
    assert_eq!(d.at, 300 * 60);
    assert_eq!(d.labels["alertname"], "Odd");
    assert_eq!(d.labels["service"], "api");
    assert_eq!(d.labels["team"], "sre");
    assert!(
        d.annotations["description"].contains("900"),
        "{:?}",
        d.annotations
    );
    assert!(run.state_bytes() > 0);
}

#[test]
fn forecasts_time_to_exhaustion_within_the_horizon() {
    let run = DetectorRun::new(&detector("{ forecast: { limit: 1000, within: 2d } }"));
    // +10 per hour from 500: reaches 1000 in ~50 h.
    let rising: Vec<(i64, f64)> = (0..100)
        .map(|i| {
            (
                i * 3600,
                500.0 + 10.0 * i as f64 - 10.0 * 99.0 + 0.5 * ((i % 3) as f64),
            )
        })
        .collect();
    let near: Vec<(i64, f64)> = rising.iter().map(|&(t, x)| (t, x + 440.0)).collect();
    let mut run = run;
    assert!(
        run.observe(&[series(rising)]).is_empty(),
        "far from the limit: no alert"
    );
    let found = run.observe(&[series(near)]);
    assert_eq!(found.len(), 1, "close to the limit: alert");
    let eta: i64 = found[0].annotations["eta_seconds"].parse().unwrap();
    assert!(eta <= 2 * 86_400);
}

#[test]
fn the_default_threshold_is_the_methods_operating_point() {
    let threshold = |model: &str| detector(model).model.threshold;
    // The ensemble is calibrated around 0.5; a single method alerts at twice its half
    // level; a threshold in the YAML wins.
    assert_eq!(threshold("{ anomaly: { method: ensemble } }"), 0.5);
    assert_eq!(threshold("{ anomaly: { method: robust } }"), 0.8);
    assert_eq!(
        threshold("{ anomaly: { method: ensemble }, threshold: 0.9 }"),
        0.9
    );
}

#[test]
fn bad_models_are_refused_with_a_reason() {
    for (model, why) in [
        ("{ threshold: 0.5 }", "anomaly"),
        (
            "{ anomaly: { method: robust }, forecast: { limit: 1, within: 1d } }",
            "not several",
        ),
        ("{ anomaly: { method: robust }, threshold: 2 }", "threshold"),
    ] {
        // Loading reports it, and leaves the detector out of the bundle.
        let text = format!(
            "apiVersion: vigil/v1\nkind: Detector\nname: d\nschedule: \"* * * * * *\"\nsource: s\nquery: q\nmodel: {model}\nalert: {{ name: X }}\n"
        );
        let b = Bundle::from_source(Path::new("d.yaml"), &text);
        assert!(
            b.diagnostics
                .iter()
                .any(|d| d.message.contains(why) && d.line == 7),
            "{model}: {:?}",
            b.diagnostics
        );
        assert!(b.detectors.is_empty(), "{model}");
    }
}

const CLASSIFIER: &str = "apiVersion: vigil/v1\nkind: Detector\nname: hf\nschedule: \"*/15 * * * * *\"\nsource: sim\nfeatures: { cpu: c, memory: m, disk_io: d, error_rate: e }\nmodel: { classifier: { model: hf } }\nalert: { name: HostFailurePredicted }\n";

fn served() -> ServedModel {
    use vigil_detect::classifier::{FeatureExtractor, TrainConfig, synthetic_fleet};
    let (history, failures) = synthetic_fleet(6000, 7, 12);
    let fx = FeatureExtractor::new(12).expect("valid");
    let (xs, ys) = fx.examples(&history, &failures, 6).expect("finite");
    let model =
        FailureModel::train("hf@1", fx, 6, &xs, &ys, &TrainConfig::default()).expect("trains");
    ServedModel {
        id: "hf@1".into(),
        model,
    }
}

/// The series of each feature for `samples` of host `instance`, a minute apart.
fn features_of(instance: &str, samples: &[Sample]) -> BTreeMap<String, Vec<Series>> {
    FEATURE_METRICS
        .iter()
        .enumerate()
        .map(|(f, name)| {
            let points = samples
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let v = [s.cpu, s.memory, s.disk_io, s.error_rate][f];
                    (i as i64 * 60, v)
                })
                .collect();
            let labels = BTreeMap::from([
                ("__name__".to_string(), format!("host_{name}")),
                ("instance".to_string(), instance.to_string()),
            ]);
            (name.to_string(), vec![Series { labels, points }])
        })
        .collect()
}

#[test]
fn a_classifier_joins_a_hosts_features_and_predicts_its_failures() {
    let b = Bundle::from_source(Path::new("hf.yaml"), CLASSIFIER);
    assert!(!b.has_errors(), "{:?}", b.diagnostics);
    let mut run = DetectorRun::new(&b.detectors[0]);
    let served = served();
    let (samples, failures) = vigil_detect::classifier::synthetic_fleet(1500, 99, 12);
    let mut by_feature = features_of("db-1", &samples);
    // A second host with no error-rate series cannot be judged, and is left out.
    for (name, series) in features_of("db-2", &samples) {
        if name != "error_rate" {
            by_feature.get_mut(&name).expect("feature").extend(series);
        }
    }
    // Feed the run a minute at a time, as the scheduler would.
    let mut found = Vec::new();
    for end in 1..=samples.len() {
        let slice: BTreeMap<String, Vec<Series>> = by_feature
            .iter()
            .map(|(k, ss)| {
                let cut = ss
                    .iter()
                    .map(|s| Series {
                        labels: s.labels.clone(),
                        points: s.points[..end].to_vec(),
                    })
                    .collect();
                (k.clone(), cut)
            })
            .collect();
        found.extend(run.observe_features(&served, &slice));
    }
    let fired: Vec<&Detection> = found.iter().filter(|d| !d.resolved).collect();
    assert!(!fired.is_empty(), "failures are predicted");
    let failure_minutes: Vec<i64> = failures
        .iter()
        .enumerate()
        .filter(|(_, f)| **f)
        .map(|(i, _)| i as i64)
        .collect();
    for d in &fired {
        assert_eq!(d.labels["instance"], "db-1", "only the judged host");
        assert!(!d.labels.contains_key("__name__"));
        let minute = d.at / 60;
        // Each alert comes before a failure, within its precursor (12 samples).
        assert!(
            failure_minutes
                .iter()
                .any(|&f| minute <= f && f - minute <= 12),
            "alert at minute {minute} predicts no failure: {failure_minutes:?}"
        );
        let confidence: f64 = d.annotations["confidence"].parse().expect("number");
        assert!(confidence >= 0.8, "{confidence}");
        assert!(d.annotations["summary"].contains("failure predicted within 6 min"));
    }
    // Most failures were seen coming.
    let caught = failure_minutes
        .iter()
        .filter(|&&f| {
            fired
                .iter()
                .any(|d| f - d.at / 60 >= 0 && f - d.at / 60 <= 12)
        })
        .count();
    assert!(
        caught * 10 >= failure_minutes.len() * 6,
        "{caught} of {} failures predicted",
        failure_minutes.len()
    );
    assert!(
        found.iter().any(|d| d.resolved),
        "alerts resolve after the failure"
    );
    // The window is all the state a host keeps.
    assert!(run.state_bytes() <= 2 * 12 * std::mem::size_of::<(i64, Sample)>() + 64);
}

#[test]
fn a_detector_reads_what_its_model_needs() {
    let cases = [
        // A classifier with one query.
        (
            CLASSIFIER.replace(
                "features: { cpu: c, memory: m, disk_io: d, error_rate: e }",
                "query: q",
            ),
            "give `features:`",
            6,
        ),
        // An anomaly model with features.
        (
            CLASSIFIER.replace(
                "{ classifier: { model: hf } }",
                "{ anomaly: { method: robust } }",
            ),
            "`features:` is for a classifier",
            6,
        ),
        // A feature missing, and one misspelt.
        (
            CLASSIFIER.replace("error_rate: e", "error_rat: e"),
            "unknown feature `error_rat`",
            6,
        ),
        (
            CLASSIFIER.replace("error_rate: e", "error_rat: e"),
            "feature `error_rate` has no query",
            6,
        ),
    ];
    for (text, why, line) in cases {
        let b = Bundle::from_source(Path::new("hf.yaml"), &text);
        assert!(
            b.diagnostics
                .iter()
                .any(|d| d.message.contains(why) && d.line == line),
            "{why}: {:?}",
            b.diagnostics
        );
    }
    let b = Bundle::from_source(
        Path::new("hf.yaml"),
        &CLASSIFIER.replace("error_rate: e", "error_rat: e"),
    );
    let d = b
        .diagnostics
        .iter()
        .find(|d| d.message.contains("unknown feature"))
        .expect("diagnostic");
    assert_eq!(d.hint.as_deref(), Some("did you mean `error_rate`?"));
}
