//! Property tests of the payload parsers: whatever bytes arrive, parsing gives an
//! alert list or an error naming a field — never a panic — and what parses feeds
//! the engine without a panic either.

use proptest::prelude::*;
use serde_json::{Value, json};
use vigil_alert::Engine;
use vigil_alert::payload::{Limits, PayloadError, parse_events, parse_webhook};
use vigil_bundle::model::Alerting;

const VALID: &str = r#"{"version":"4","status":"firing","receiver":"r","groupKey":"g","truncatedAlerts":0,
"groupLabels":{"alertname":"A"},"commonLabels":{},"commonAnnotations":{},"externalURL":"",
"alerts":[{"status":"firing","labels":{"alertname":"A","service":"db"},"annotations":{"value":"1"},
"startsAt":"2024-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"x"}]}"#;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("firing"),
            Just("resolved"),
            Just("2024-01-01T00:00:00Z"),
            Just("4")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("alerts".to_string()),
                    Just("labels".to_string()),
                    Just("annotations".to_string()),
                    Just("status".to_string()),
                    Just("startsAt".to_string()),
                    Just("endsAt".to_string()),
                    Just("version".to_string()),
                    Just("name".to_string()),
                    "[a-z_]{1,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check(body: &[u8]) {
    let limits = Limits {
        max_alerts: 50,
        max_labels: 20,
        ..Limits::default()
    };
    let mut engine = Engine::new(Alerting::default(), &Default::default());
    match parse_webhook(body, &limits) {
        Ok(w) => {
            for a in w.alerts {
                assert!(!a.labels.is_empty());
                engine.ingest(a, 1);
            }
            engine.tick(1_000_000);
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if let PayloadError::Field { field, .. } = &e {
                assert!(!field.is_empty());
            }
        }
    }
    if let Ok(events) = parse_events(body, &limits) {
        for a in events {
            engine.ingest(a, 2);
        }
        engine.tick(2_000_000);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check(&bytes);
    }

    #[test]
    fn mutated_valid_payloads_never_panic(pos in 0usize..VALID.len(), len in 0usize..20, insert in ".{0,8}") {
        let mut text = VALID.as_bytes().to_vec();
        let end = (pos + len).min(text.len());
        text.splice(pos..end, insert.bytes());
        check(&text);
    }

    #[test]
    fn arbitrary_json_shapes_never_panic(v in json_value()) {
        check(&serde_json::to_vec(&v).unwrap());
        check(&serde_json::to_vec(&json!({"alerts": [v.clone()]})).unwrap());
        check(&serde_json::to_vec(&json!({"alerts": [{"labels": v}]})).unwrap());
    }
}

#[test]
fn the_valid_sample_parses() {
    let w = parse_webhook(VALID.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(w.alerts.len(), 1);
}
