//! What an operator does to a vigil — pause and resume automation, promote a runbook,
//! read the audit log, the executions and the daemon's status — written once over the
//! store, so the CLI (holding the store itself) and the API (the daemon holding it) do
//! exactly the same thing and answer with the same records.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vigil_bundle::Bundle;
use vigil_core::audit::AuditAction;
use vigil_core::now_ms;
use vigil_exec::record::{AuditEntry, ExecStatus, ExecutionRecord, ExecutionStore, PauseState};
use vigil_runtime::runner::LastRun;
use vigil_store::{Store, StoreError};

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no runbook `{name}`; {hint}")]
    NoRunbook { name: String, hint: String },
    #[error("{what}: {message}")]
    Invalid { what: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stops every automatic run until [`resume`]; persisted, audited as `user:<who>`.
pub fn pause(store: &Store, who: &str, reason: &str) -> Result<PauseState, StoreError> {
    let state = PauseState {
        by: who.to_string(),
        reason: reason.to_string(),
        since_ms: now_ms(),
    };
    store.set_paused(Some(&state))?;
    store.audit(AuditEntry::new(
        format!("user:{who}"),
        AuditAction::Pause,
        "automation",
        reason,
    ))?;
    Ok(state)
}

/// Lets automatic runs start again.
pub fn resume(store: &Store, who: &str) -> Result<(), StoreError> {
    store.set_paused(None)?;
    store.audit(AuditEntry::new(
        format!("user:{who}"),
        AuditAction::Resume,
        "automation",
        "resumed",
    ))?;
    Ok(())
}

/// Lets a runbook under `dry_run_first` act for real from now on.
pub fn promote(store: &Store, bundle: &Bundle, who: &str, runbook: &str) -> Result<(), OpsError> {
    if bundle.runbook(runbook).is_none() {
        return Err(OpsError::NoRunbook {
            name: runbook.to_string(),
            hint: vigil_core::suggest::hint(
                runbook,
                bundle.runbooks.iter().map(|r| r.name.as_str()),
            ),
        });
    }
    store.audit(AuditEntry::new(
        format!("user:{who}"),
        AuditAction::Promote,
        runbook,
        "may act automatically",
    ))?;
    Ok(())
}

/// Which audit entries to show; every field narrows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries whose actor contains this (`policy:`, `user:alice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_action"
    )]
    pub action: Option<AuditAction>,
    /// Entries about this execution or runbook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Entries newer than this long ago (`1h`, `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The newest this many (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// An action the audit log knows: a typo is an error, not a filter matching nothing.
fn known_action<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<AuditAction>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// The audit entries `q` selects, oldest first.
pub fn audit(store: &Store, q: &AuditQuery) -> Result<Vec<AuditEntry>, OpsError> {
    let since = match &q.since {
        Some(s) => {
            let d = vigil_core::duration::Duration::parse(s).map_err(|e| OpsError::Invalid {
                what: "since",
                message: format!("{}; e.g. `1h`", e.message),
            })?;
            now_ms().saturating_sub(d.as_std().as_millis() as i64)
        }
        None => i64::MIN,
    };
    let mut entries: Vec<AuditEntry> = store
        .audit_entries()?
        .into_iter()
        .filter(|e| e.ts_ms >= since)
        .filter(|e| {
            q.actor
                .as_ref()
                .is_none_or(|a| e.actor.contains(a.as_str()))
        })
        .filter(|e| q.action.is_none_or(|a| e.action == a))
        .filter(|e| q.subject.as_ref().is_none_or(|s| &e.subject == s))
        .collect();
    let skip = entries.len().saturating_sub(q.limit.unwrap_or(50));
    entries.drain(..skip);
    Ok(entries)
}

/// Checks every link of the audit log's hash chain.
pub fn verify_audit(store: &Store) -> Result<vigil_exec::record::AuditVerdict, StoreError> {
    Ok(vigil_exec::record::verify_audit(&store.audit_entries()?))
}

/// The newest `limit` executions, newest first.
pub fn executions(store: &Store, limit: usize) -> Result<Vec<ExecutionRecord>, StoreError> {
    Ok(store.executions()?.into_iter().take(limit).collect())
}

/// A running daemon at a glance (`vigil status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub started_ms: i64,
    pub uptime_s: u64,
    /// The kill switch, when on.
    #[serde(default)]
    pub paused: Option<PauseState>,
    /// Unfinished executions by status (`running`, `awaiting_approval`, `in_doubt`).
    pub executions: BTreeMap<String, usize>,
    /// Executions being driven by the daemon now.
    pub in_flight: Vec<String>,
    pub incidents_open: usize,
    /// Each detector's most recent run (none yet: absent).
    pub detectors: BTreeMap<String, Option<LastRun>>,
    pub store_bytes: u64,
    /// Records per table, and the ingest log's bytes: what retention bounds.
    #[serde(default)]
    pub records: BTreeMap<String, u64>,
}

/// What a daemon reports about itself beyond its store.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub started_ms: i64,
    pub in_flight: Vec<String>,
    pub incidents_open: usize,
    pub detectors: BTreeMap<String, Option<LastRun>>,
}

/// The status of a vigil whose store is `store`.
pub fn status(store: &Store, live: Live) -> Result<Status, StoreError> {
    let mut executions = BTreeMap::new();
    for r in store.executions()? {
        if !r.status.is_final() {
            *executions.entry(r.status.as_str().to_string()).or_insert(0) += 1;
        }
    }
    for s in [
        ExecStatus::Running,
        ExecStatus::AwaitingApproval,
        ExecStatus::InDoubt,
    ] {
        executions.entry(s.as_str().to_string()).or_insert(0);
    }
    Ok(Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_ms: live.started_ms,
        uptime_s: (now_ms().saturating_sub(live.started_ms).max(0) / 1000) as u64,
        paused: store.paused()?,
        executions,
        in_flight: live.in_flight,
        incidents_open: live.incidents_open,
        detectors: live.detectors,
        store_bytes: store.size_on_disk()?,
        records: store
            .table_sizes()
            .into_iter()
            .map(|(name, n)| (name, n as u64))
            .chain([("ingest-log bytes".to_string(), store.log_bytes())])
            .collect(),
    })
}

/// What automation did with one runbook an incident matched.
#[derive(Debug, Serialize)]
pub struct Triggered {
    pub runbook: String,
    #[serde(flatten)]
    pub outcome: vigil_exec::automation::Outcome,
}

/// Runs every runbook whose trigger matches `incident`'s labels, as automation
/// would (kill switch, guardrails, policy, then the execution).
pub async fn trigger(
    bundle: &Bundle,
    automation: &vigil_exec::automation::Automation,
    catalog: &dyn vigil_core::action::ActionCatalog,
    incident: &serde_json::Value,
) -> Result<Vec<Triggered>, OpsError> {
    let labels: BTreeMap<String, String> = incident["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for rb in bundle
        .runbooks
        .iter()
        .filter(|r| !r.trigger.is_empty() && r.trigger.iter().all(|m| m.matches(&labels)))
    {
        let params = vigil_exec::render::resolve_params(
            rb,
            &Default::default(),
            incident,
            &automation.exprs,
            now_ms() / 1000,
        )
        .map_err(|e| OpsError::Invalid {
            what: "incident",
            message: format!("{}: {}", rb.name, e.message),
        })?;
        let source = bundle.sources.get(&rb.file).cloned().unwrap_or_default();
        let req = vigil_exec::Request::manual(
            std::sync::Arc::new(rb.clone()),
            source,
            params,
            incident.clone(),
        );
        let outcome = automation
            .handle(catalog, req, vigil_exec::automation::Origin::Automatic)
            .await
            .map_err(|e| OpsError::Invalid {
                what: "runbook",
                message: format!("{}: {e}", rb.name),
            })?;
        out.push(Triggered {
            runbook: rb.name.clone(),
            outcome,
        });
    }
    Ok(out)
}

/// Makes `name@version` the model version that serves, audited as `user:<who>`.
pub fn promote_model(
    store: &Store,
    who: &str,
    name: &str,
    version: u32,
) -> Result<vigil_runtime::store::ModelMeta, StoreError> {
    use vigil_runtime::store::DetectorStore;
    let m = store.promote_model(name, version)?;
    store.audit(AuditEntry::new(
        format!("user:{who}"),
        AuditAction::Promote,
        m.id(),
        "serving",
    ))?;
    Ok(m)
}

/// The detector of `bundle` that serves model `name` (or the one `asked` for).
fn classifier_detector<'b>(
    bundle: &'b Bundle,
    name: &str,
    asked: Option<&str>,
) -> Result<&'b vigil_bundle::model::Detector, OpsError> {
    let serving: Vec<&vigil_bundle::model::Detector> = bundle
        .detectors
        .iter()
        .filter(|d| d.model.classifier().is_some_and(|c| c.model == name))
        .filter(|d| asked.is_none_or(|a| a == d.name))
        .collect();
    match serving.as_slice() {
        [one] => Ok(one),
        [] => Err(OpsError::Invalid {
            what: "model",
            message: format!(
                "no detector in the bundle serves model `{name}`{}; a classifier detector has `model: {{ classifier: {{ model: {name} }} }}`",
                asked.map(|a| format!(" as `{a}`")).unwrap_or_default()
            ),
        }),
        many => Err(OpsError::Invalid {
            what: "detector",
            message: format!(
                "several detectors serve `{name}` ({}); pick one with --detector",
                many.iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Trains, stores and (if it is no worse than the one serving) promotes the next
/// version of model `name` from what its detector's source says happened.
pub async fn retrain(
    bundle: &Bundle,
    store: &Store,
    sources: &vigil_runtime::runner::Sources,
    who: &str,
    name: &str,
    detector: Option<&str>,
    promote: bool,
) -> Result<crate::learn::Retrained, OpsError> {
    use vigil_runtime::store::DetectorStore;
    let d = classifier_detector(bundle, name, detector)?;
    let source = sources.get(&d.source).ok_or_else(|| OpsError::Invalid {
        what: "detector",
        message: format!(
            "detector `{}` reads source `{}`, which vigil.yaml does not define",
            d.name, d.source
        ),
    })?;
    // Up to now, or up to what the detectors last saw if their clock ran ahead.
    let until = store
        .predictions()?
        .iter()
        .map(|p| p.at * 1000)
        .max()
        .unwrap_or(0)
        .max(now_ms());
    let r = crate::learn::retrain(store, d, source.as_ref(), until, promote)
        .await
        .map_err(|e| OpsError::Invalid {
            what: "model",
            message: format!("retraining `{name}` from detector `{}`: {e}", d.name),
        })?;
    store.audit(AuditEntry::new(
        format!("user:{who}"),
        AuditAction::Retrain,
        &r.model,
        format!("asked for; {}", r.verdict),
    ))?;
    Ok(r)
}

/// Records that `who` resumed execution `id` (the executor then drives it).
pub fn resumed(store: &Store, who: &str, id: &str) -> Result<(), StoreError> {
    store.audit(AuditEntry::new(
        format!("user:{who}"),
        AuditAction::Run,
        id,
        "resumed",
    ))?;
    Ok(())
}

/// One detector's evaluation, or why it could not be evaluated.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scored {
    Evaluation(vigil_runtime::evaluate::Evaluation),
    Failed { error: String },
}

/// One model's retraining, or why it failed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Relearned {
    Retrained(crate::learn::Retrained),
    Failed { model: String, error: String },
}

/// What `vigil evaluate` found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluated {
    pub predictions: usize,
    pub window_ms: i64,
    pub evaluations: Vec<Scored>,
    #[serde(default)]
    pub retrained: Vec<Relearned>,
}

/// Scores the detectors' stored predictions against what their sources say
/// happened; with `retrain`, then retrains every classifier detector's model.
pub async fn evaluate(
    bundle: &Bundle,
    store: &Store,
    sources: &vigil_runtime::runner::Sources,
    who: &str,
    window_ms: i64,
    retrain_models: bool,
) -> Result<Evaluated, OpsError> {
    use vigil_alert::store::AlertStore;
    use vigil_runtime::store::DetectorStore;
    let predictions = store.predictions()?;
    let forecasts = store.forecasts()?;
    // Up to what the detectors last saw (their clock may have been compressed).
    let until = predictions
        .iter()
        .map(|p| p.at)
        .chain(forecasts.iter().map(|f| f.made_at))
        .max()
        .map_or_else(now_ms, |s| s * 1000);
    // From the first prediction; with none, the last window only (not all of time).
    let from = predictions
        .iter()
        .map(|p| p.at * 1000)
        .min()
        .unwrap_or(until)
        - window_ms;
    let incidents = store.incidents()?;
    let results = crate::daemon::evaluate(
        &bundle.detectors,
        sources,
        crate::daemon::Record {
            predictions: &predictions,
            forecasts: &forecasts,
            incidents: &incidents,
        },
        window_ms,
        from,
        until,
    )
    .await;
    let mut retrained = Vec::new();
    if retrain_models {
        let mut names: Vec<String> = bundle
            .detectors
            .iter()
            .filter_map(|d| d.model.classifier().map(|c| c.model.clone()))
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            retrained.push(
                match retrain(bundle, store, sources, who, &name, None, true).await {
                    Ok(r) => Relearned::Retrained(r),
                    Err(e) => Relearned::Failed {
                        model: name,
                        error: e.to_string(),
                    },
                },
            );
        }
    }
    Ok(Evaluated {
        predictions: predictions.len(),
        window_ms,
        evaluations: results
            .into_iter()
            .map(|r| match r {
                Ok(e) => Scored::Evaluation(e),
                Err(error) => Scored::Failed { error },
            })
            .collect(),
        retrained,
    })
}
