//! Detectors: schedule, source, query or features, and the model decoded once.

use super::*;

/// Longest history a detector's first run may load: a year.
pub(super) const MAX_HISTORY_SECS: u64 = 366 * 86_400;

impl Checker<'_> {
    pub(super) fn detector(&mut self, doc: &Node) -> Option<Detector> {
        let d: DetectorDoc = self.decode(doc)?;
        self.api_version(&d.api_version);
        self.name(&d.name, "detector");
        let schedule = d.schedule.value.trim();
        // Five fields (no seconds) are accepted as cron users expect: run at second 0.
        let six = if schedule.split_whitespace().count() == 5 {
            format!("0 {schedule}")
        } else {
            schedule.to_string()
        };
        if let Err(e) = six.parse::<cron::Schedule>() {
            self.error(
                d.schedule.span,
                format!("invalid cron schedule `{schedule}`: {e}"),
                "use `sec min hour day month weekday`, e.g. `*/30 * * * * *` for every 30 seconds",
            );
        }
        let model = match from_node::<crate::detector::ModelDoc>(&d.model) {
            Err(e) => {
                self.de_error(d.model.span, e);
                None
            }
            Ok(doc) => match crate::detector::DetectorModel::check(doc) {
                Ok(model) => Some(model),
                Err(why) => {
                    self.error(
                        d.model.span,
                        format!("invalid detector model: {why}"),
                        "e.g. `model: { anomaly: { method: ensemble }, threshold: 0.5 }`",
                    );
                    None
                }
            },
        };
        let wants_features = model.as_ref().is_some_and(|m| m.classifier().is_some());
        let features = self.detector_input(&d, wants_features, doc.span);
        if let Some(history) = &d.history
            && !(1..=MAX_HISTORY_SECS).contains(&history.value.as_std().as_secs())
        {
            self.error(
                history.span,
                format!("history `{}` is out of range", history.value),
                "give between 1s and a year, e.g. `history: 8w`",
            );
        }
        Some(Detector {
            model: model?,
            name: d.name.value,
            description: d.description,
            file: self.file.to_path_buf(),
            schedule: six,
            source_span: d.source.span,
            source: d.source.value,
            query: d.query.map(|q| q.value).unwrap_or_default(),
            features,
            alert: d.alert,
            history: d.history.map(|h| h.value),
        })
    }

    /// Checks that a detector reads what its model needs: `query:` for a model of one
    /// series, `features:` (each of the classifier's features, once) for a classifier.
    pub(super) fn detector_input(
        &mut self,
        d: &DetectorDoc,
        wants_features: bool,
        doc_span: Span,
    ) -> BTreeMap<String, String> {
        use vigil_detect::classifier::FEATURE_METRICS;
        match (&d.query, &d.features, wants_features) {
            (Some(_), None, false) => BTreeMap::new(),
            (None, Some(f), true) => {
                for (name, query) in &f.value {
                    if !FEATURE_METRICS.contains(&name.as_str()) {
                        self.error(
                            query.span,
                            format!("unknown feature `{name}`"),
                            vigil_core::suggest::hint(name, FEATURE_METRICS.iter().copied()),
                        );
                    }
                }
                for want in FEATURE_METRICS {
                    if !f.value.contains_key(want) {
                        self.error(
                            f.span,
                            format!("feature `{want}` has no query"),
                            format!(
                                "the classifier reads {}: give each a query",
                                FEATURE_METRICS.join(", ")
                            ),
                        );
                    }
                }
                f.value
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect()
            }
            (Some(q), _, true) => {
                self.error(
                    q.span,
                    "a classifier reads several series: give `features:`, not `query:`",
                    format!(
                        "write `features: {{ {} }}`, a query for each",
                        FEATURE_METRICS
                            .iter()
                            .map(|m| format!("{m}: …"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                BTreeMap::new()
            }
            (_, Some(f), false) => {
                self.error(
                    f.span,
                    "`features:` is for a classifier model; this model scores one series",
                    "give `query:` instead, or use `model: { classifier: { model: NAME } }`",
                );
                BTreeMap::new()
            }
            (None, None, _) => {
                self.error(
                    doc_span,
                    "a detector needs `query:` (or `features:` for a classifier)",
                    "e.g. `query: \"rate(http_requests_total[5m])\"`",
                );
                BTreeMap::new()
            }
        }
    }
}
