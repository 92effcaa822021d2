//! Decoding what a plugin returned into engine types. Plugin output is
//! untrusted: sizes are capped, text is checked, JSON is parsed fallibly, and
//! nothing here panics (property-tested below).

use super::error::{Call, PluginError};
use super::model::{self, Batch, CapabilityKind, Event, PluginInfo, Sample, Series};
use crate::wit::types as w;
use std::collections::BTreeMap;
use std::path::Path;
use vigil_core::action::{ActionPlan, PlannedEffect, Risk};

/// Cuts `s` to at most `max` bytes on a char boundary.
pub fn truncate_chars(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while cut > 0 && !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

/// Plugin text made safe to show a person (see [`vigil_core::text::visible`]), so a plan
/// cannot redraw the screen an approver reads.
pub fn visible(s: String) -> String {
    match vigil_core::text::visible(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(o) => o,
    }
}

fn bad(plugin: &str, call: Call, detail: impl Into<String>) -> PluginError {
    PluginError::BadOutput {
        plugin: plugin.to_string(),
        call,
        detail: detail.into(),
    }
}

/// Approximate in-memory size of what a plugin returned, for the output limit.
pub fn batch_size(b: &w::Batch) -> u64 {
    let labels = |l: &[w::Label]| {
        l.iter()
            .map(|x| (x.name.len() + x.value.len() + 16) as u64)
            .sum::<u64>()
    };
    let s: u64 = b
        .series
        .iter()
        .map(|s| labels(&s.labels) + 16 * s.samples.len() as u64 + 32)
        .sum();
    let e: u64 = b
        .events
        .iter()
        .map(|e| labels(&e.labels) + e.message.len() as u64 + 32)
        .sum();
    s + e
}

pub fn plan_size(p: &w::ActionPlan) -> u64 {
    p.summary.len() as u64
        + p.preview.as_ref().map_or(0, |s| s.len() as u64)
        + p.steps
            .iter()
            .map(|s| {
                s.target.len() as u64
                    + s.effects.iter().map(|e| e.len() as u64 + 8).sum::<u64>()
                    + 32
            })
            .sum::<u64>()
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Checks and converts `describe` output.
pub fn plugin_info(raw: w::PluginInfo, path: &Path) -> Result<PluginInfo, PluginError> {
    let who = path.display().to_string();
    let err = |d: String| PluginError::BadInfo {
        plugin: who.clone(),
        detail: d,
    };
    if !is_name(&raw.name) {
        return Err(err(format!(
            "plugin name {:?} must be 1-64 of [A-Za-z0-9._-]",
            short(&raw.name)
        )));
    }
    if raw.version.len() > 64 || raw.sdk_version.len() > 64 || raw.description.len() > 4096 {
        return Err(err("version, sdk-version or description too long".into()));
    }
    if raw.config_schema.len() > 256 * 1024
        || raw.capabilities.len() > 256
        || raw.actions.len() > 256
    {
        return Err(err(
            "config schema, capabilities or actions too large".into()
        ));
    }
    let config_schema = if raw.config_schema.trim().is_empty() {
        serde_json::json!({ "type": "object" })
    } else {
        serde_json::from_str(&raw.config_schema)
            .map_err(|e| err(format!("config schema is not JSON: {e}")))?
    };
    let mut actions = Vec::with_capacity(raw.actions.len());
    for a in raw.actions {
        if !is_name(&a.name) {
            return Err(err(format!(
                "action name {:?} must be 1-64 of [A-Za-z0-9._-]",
                short(&a.name)
            )));
        }
        if actions
            .iter()
            .any(|x: &model::PluginActionInfo| x.name == a.name)
        {
            return Err(err(format!("action {:?} is declared twice", a.name)));
        }
        let mut description = visible(a.description);
        truncate_chars(&mut description, 4096);
        actions.push(model::PluginActionInfo {
            name: a.name,
            description,
            idempotent: a.idempotent,
            pure: a.pure,
        });
    }
    let capabilities = raw
        .capabilities
        .into_iter()
        .map(|c| {
            let mut scope = c.scope;
            let mut reason = visible(c.reason);
            truncate_chars(&mut scope, 1024);
            truncate_chars(&mut reason, 1024);
            model::CapabilityRequest {
                kind: match c.kind {
                    w::CapabilityKind::Log => CapabilityKind::Log,
                    w::CapabilityKind::Clock => CapabilityKind::Clock,
                    w::CapabilityKind::Http => CapabilityKind::Http,
                    w::CapabilityKind::Kv => CapabilityKind::Kv,
                    w::CapabilityKind::Secrets => CapabilityKind::Secrets,
                    w::CapabilityKind::Process => CapabilityKind::Process,
                    w::CapabilityKind::Files => CapabilityKind::Files,
                    w::CapabilityKind::Tcp => CapabilityKind::Tcp,
                },
                scope,
                reason,
            }
        })
        .collect();
    let kinds = model::Kinds {
        connector: raw.kinds.contains(w::PluginKinds::CONNECTOR),
        action: raw.kinds.contains(w::PluginKinds::ACTION),
    };
    if !kinds.connector && !kinds.action {
        return Err(err("declares neither connector nor action".into()));
    }
    if kinds.action && actions.is_empty() {
        return Err(err(
            "declares itself an action plugin but lists no actions".into()
        ));
    }
    Ok(PluginInfo {
        name: raw.name,
        version: visible(raw.version),
        kinds,
        sdk_version: visible(raw.sdk_version),
        description: visible(raw.description),
        config_schema,
        capabilities,
        actions,
    })
}

fn short(s: &str) -> String {
    let mut s = s.to_string();
    truncate_chars(&mut s, 80);
    s
}

fn labels(
    plugin: &str,
    call: Call,
    l: Vec<w::Label>,
) -> Result<BTreeMap<String, String>, PluginError> {
    let mut out = BTreeMap::new();
    for x in l {
        if x.name.is_empty() || x.name.len() > 256 || x.value.len() > 4096 {
            return Err(bad(
                plugin,
                call,
                format!("label {:?} is empty or too long", short(&x.name)),
            ));
        }
        if out.insert(x.name.clone(), x.value).is_some() {
            return Err(bad(
                plugin,
                call,
                format!("label {:?} repeated", short(&x.name)),
            ));
        }
    }
    Ok(out)
}

/// Checks and converts `fetch` output.
pub fn batch(plugin: &str, raw: w::Batch, max_bytes: u64) -> Result<Batch, PluginError> {
    let call = Call::Fetch;
    let size = batch_size(&raw);
    if size > max_bytes {
        return Err(PluginError::LimitExceeded {
            plugin: plugin.to_string(),
            call,
            limit: super::error::Limit::Output { bytes: max_bytes },
        });
    }
    let mut series = Vec::with_capacity(raw.series.len());
    for s in raw.series {
        series.push(Series {
            labels: labels(plugin, call, s.labels)?,
            samples: s
                .samples
                .into_iter()
                .map(|p| Sample {
                    timestamp: p.timestamp,
                    value: p.value,
                })
                .collect(),
        });
    }
    let mut events = Vec::with_capacity(raw.events.len());
    for e in raw.events {
        events.push(Event {
            timestamp: e.timestamp,
            labels: labels(plugin, call, e.labels)?,
            message: e.message,
        });
    }
    Ok(Batch { series, events })
}

/// Checks and converts `plan` output.
pub fn plan(plugin: &str, raw: w::ActionPlan, max_bytes: u64) -> Result<ActionPlan, PluginError> {
    let call = Call::Plan;
    if plan_size(&raw) > max_bytes {
        return Err(PluginError::LimitExceeded {
            plugin: plugin.to_string(),
            call,
            limit: super::error::Limit::Output { bytes: max_bytes },
        });
    }
    if raw.steps.len() > 10_000 {
        return Err(bad(plugin, call, "more than 10000 planned effects"));
    }
    let preview = match raw.preview {
        None => None,
        Some(t) => Some(
            serde_json::from_str(&t)
                .map_err(|e| bad(plugin, call, format!("preview is not JSON: {e}")))?,
        ),
    };
    let steps = raw
        .steps
        .into_iter()
        .map(|s| PlannedEffect {
            target: visible(s.target),
            risk: match s.risk {
                w::Risk::None => Risk::None,
                w::Risk::Low => Risk::Low,
                w::Risk::Medium => Risk::Medium,
                w::Risk::High => Risk::High,
            },
            reversible: s.reversible,
            effects: s.effects,
        })
        .collect();
    Ok(ActionPlan {
        summary: visible(raw.summary),
        steps,
        preview,
    })
}

/// The engine's plan, in WIT form, for `execute`.
pub fn plan_to_wit(p: &ActionPlan) -> w::ActionPlan {
    w::ActionPlan {
        summary: p.summary.clone(),
        steps: p
            .steps
            .iter()
            .map(|s| w::PlannedEffect {
                target: s.target.clone(),
                risk: match s.risk {
                    Risk::None => w::Risk::None,
                    Risk::Low => w::Risk::Low,
                    Risk::Medium => w::Risk::Medium,
                    Risk::High => w::Risk::High,
                },
                reversible: s.reversible,
                effects: s.effects.clone(),
            })
            .collect(),
        preview: p.preview.as_ref().map(|v| v.to_string()),
    }
}

/// Checks and parses `execute` output (JSON text).
pub fn output(plugin: &str, text: &str, max_bytes: u64) -> Result<serde_json::Value, PluginError> {
    if text.len() as u64 > max_bytes {
        return Err(PluginError::LimitExceeded {
            plugin: plugin.to_string(),
            call: Call::Execute,
            limit: super::error::Limit::Output { bytes: max_bytes },
        });
    }
    serde_json::from_str(text)
        .map_err(|e| bad(plugin, Call::Execute, format!("output is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_plan_cannot_redraw_the_approvers_screen() {
        let raw = w::ActionPlan {
            summary: "harmless\u{1b}[1A\u{1b}[2K\r✓ approved: read a status".into(),
            steps: vec![w::PlannedEffect {
                target: "db\u{202e}txt.exe\nok".into(),
                risk: w::Risk::Low,
                reversible: true,
                effects: vec![],
            }],
            preview: None,
        };
        let p = plan("evil", raw, 1 << 20).expect("plan");
        assert!(!p.summary.chars().any(char::is_control), "{:?}", p.summary);
        assert!(p.summary.contains("\\u{1b}[1A"), "{}", p.summary);
        assert_eq!(p.steps[0].target, "db\\u{202e}txt.exe\\u{a}ok");
        assert_eq!(
            visible("plain text, ünïcode ✓".into()),
            "plain text, ünïcode ✓"
        );
    }

    fn label() -> impl Strategy<Value = w::Label> {
        (".{0,20}", ".{0,40}").prop_map(|(name, value)| w::Label { name, value })
    }

    fn risk() -> impl Strategy<Value = w::Risk> {
        prop_oneof![
            Just(w::Risk::None),
            Just(w::Risk::Low),
            Just(w::Risk::Medium),
            Just(w::Risk::High)
        ]
    }

    fn kinds() -> impl Strategy<Value = w::PluginKinds> {
        (any::<bool>(), any::<bool>()).prop_map(|(c, a)| {
            let mut k = w::PluginKinds::empty();
            if c {
                k |= w::PluginKinds::CONNECTOR;
            }
            if a {
                k |= w::PluginKinds::ACTION;
            }
            k
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        #[test]
        fn batch_decoding_never_panics(
            series in prop::collection::vec((prop::collection::vec(label(), 0..4), prop::collection::vec((any::<i64>(), any::<f64>()), 0..8)), 0..6),
            events in prop::collection::vec((any::<i64>(), prop::collection::vec(label(), 0..3), ".{0,30}"), 0..4),
            cap in 0u64..4096,
        ) {
            let raw = w::Batch {
                series: series.into_iter().map(|(labels, pts)| w::Series {
                    labels,
                    samples: pts.into_iter().map(|(timestamp, value)| w::Sample { timestamp, value }).collect(),
                }).collect(),
                events: events.into_iter().map(|(timestamp, labels, message)| w::Event { timestamp, labels, message }).collect(),
            };
            let n = raw.series.iter().map(|s| s.samples.len()).sum::<usize>();
            match batch("p", raw, cap) {
                Ok(b) => prop_assert_eq!(b.sample_count(), n),
                Err(e) => {
                    let expected = matches!(e, PluginError::BadOutput { .. } | PluginError::LimitExceeded { .. });
                    prop_assert!(expected, "unexpected error {}", e);
                }
            }
        }

        #[test]
        fn plan_decoding_never_panics(
            summary in ".{0,50}",
            steps in prop::collection::vec((".{0,20}", risk(), any::<bool>(), prop::collection::vec(".{0,20}", 0..3)), 0..5),
            preview in prop::option::of(".{0,30}"),
            cap in 0u64..2048,
        ) {
            let raw = w::ActionPlan {
                summary,
                steps: steps.into_iter().map(|(target, risk, reversible, effects)| w::PlannedEffect { target, risk, reversible, effects }).collect(),
                preview,
            };
            let n = raw.steps.len();
            if let Ok(p) = plan("p", raw, cap) {
                prop_assert_eq!(p.steps.len(), n);
            }
        }

        #[test]
        fn info_decoding_never_panics(
            name in ".{0,70}",
            schema in ".{0,40}",
            k in kinds(),
            actions in prop::collection::vec((".{0,10}", any::<bool>()), 0..4),
        ) {
            let raw = w::PluginInfo {
                name: name.clone(),
                version: "1".into(),
                kinds: k,
                sdk_version: "0.1.0".into(),
                description: String::new(),
                config_schema: schema,
                capabilities: vec![],
                actions: actions.into_iter().map(|(name, idempotent)| w::ActionInfo { name, description: String::new(), idempotent, pure: false }).collect(),
            };
            if let Ok(info) = plugin_info(raw, Path::new("x.wasm")) {
                prop_assert_eq!(info.name, name);
            }
        }

        #[test]
        fn output_decoding_never_panics(text in ".{0,64}", cap in 0u64..128) {
            let _ = output("p", &text, cap);
        }

        #[test]
        fn truncation_keeps_char_boundaries(s in ".{0,64}", max in 0usize..70) {
            let mut t = s.clone();
            truncate_chars(&mut t, max);
            prop_assert!(t.len() <= max.max(s.len()) + '…'.len_utf8());
        }
    }

    #[test]
    fn oversize_batch_is_a_limit_error() {
        let raw = w::Batch {
            series: vec![w::Series {
                labels: vec![],
                samples: vec![
                    w::Sample {
                        timestamp: 0,
                        value: 0.0
                    };
                    1000
                ],
            }],
            events: vec![],
        };
        let e = batch("p", raw, 1000).expect_err("over the cap");
        assert!(e.to_string().contains("output limit of 1000 bytes"), "{e}");
    }

    #[test]
    fn duplicate_labels_are_rejected() {
        let l = w::Label {
            name: "a".into(),
            value: "1".into(),
        };
        let raw = w::Batch {
            series: vec![w::Series {
                labels: vec![l.clone(), l],
                samples: vec![],
            }],
            events: vec![],
        };
        assert!(matches!(
            batch("p", raw, 1 << 20),
            Err(PluginError::BadOutput { .. })
        ));
    }
}
