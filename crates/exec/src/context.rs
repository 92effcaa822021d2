//! The shared context of one execution: its record, its runbook, and how its
//! transitions reach the journal, the live observer and the final report.

use crate::record::ExecutionStore;
use crate::record::{Event, EventKind, ExecStatus, ExecutionRecord};
use crate::report::{ExecutionReport, Observer, StepReport, StepStatus};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use vigil_bundle::model::Runbook;
use vigil_core::action::ActionCatalog;
use vigil_core::now_ms;
use vigil_policy::expr::{Bindings, ExprEngine};
use vigil_store::{Store, StoreError};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum State {
    Pending { next_attempt: u32 },
    Running,
    Done(StepStatus, Option<Value>, Option<String>),
}

/// What the report shows about a step, gathered as its events are journaled.
#[derive(Debug, Default)]
pub(super) struct StepTrace {
    attempts: u32,
    first_start_ms: Option<i64>,
    last_ms: i64,
    input: Option<Value>,
}

/// Everything a step task needs, shared.
pub(super) struct RunCtx {
    /// The execution id (also in `record`; kept apart to avoid locking for it).
    pub(super) id: Arc<str>,
    pub(super) record: Mutex<ExecutionRecord>,
    pub(super) trace: Mutex<std::collections::HashMap<String, StepTrace>>,
    /// `params`, `incident` and `env`, converted once per execution.
    pub(super) base: Bindings,
    pub(super) runbook: Arc<Runbook>,
    pub(super) store: Store,
    pub(super) catalog: Arc<dyn ActionCatalog>,
    pub(super) exprs: Arc<ExprEngine>,
    pub(super) observer: Option<Observer>,
    /// Whether each step's action is pure (by step index): what the action says of
    /// itself, cleared once its plan declares an effect (a plan outranks a claim).
    pub(super) pure: Vec<AtomicBool>,
    /// Outcomes of pure steps not yet written: nothing needs them durable (a pure
    /// step can always run again), so they are written in batches, and always
    /// before any other journal entry.
    pub(super) pending: Mutex<Vec<Event>>,
}

/// Deferred outcomes written at once when this many accumulate.
const PENDING_BATCH: usize = 256;

impl RunCtx {
    pub(super) fn id(&self) -> String {
        self.id.to_string()
    }

    /// Whether step `idx` is treated as pure (journaled lazily, not gated as an effect).
    pub(super) fn is_pure(&self, idx: usize) -> bool {
        self.pure
            .get(idx)
            .is_some_and(|p| p.load(Ordering::Relaxed))
    }

    /// Step `idx`'s plan declares effects: whatever its action says, it is not pure.
    pub(super) fn mark_impure(&self, idx: usize) {
        if let Some(p) = self.pure.get(idx) {
            p.store(false, Ordering::Relaxed);
        }
    }

    pub(super) fn journal(
        &self,
        step: Option<&str>,
        kind: EventKind,
        attempt: u32,
        detail: Option<String>,
        output: Option<Value>,
    ) -> Result<(), StoreError> {
        let ev = Event::at(now_ms(), step, kind, attempt, detail, output);
        self.flush_pending()?;
        let ev = self.store.append(&self.id, ev)?;
        self.notify(&ev);
        Ok(())
    }

    /// Journals the outcome of a pure step, possibly later (see `pending`).
    pub(super) fn journal_deferred(
        &self,
        step: &str,
        kind: EventKind,
        detail: Option<String>,
        output: Option<Value>,
    ) -> Result<(), StoreError> {
        let ev = Event::at(now_ms(), Some(step), kind, 0, detail, output);
        self.notify(&ev);
        let full = match self.pending.lock() {
            Ok(mut pending) => {
                pending.push(ev);
                pending.len() >= PENDING_BATCH
            }
            Err(_) => return Err(StoreError::Io("journal buffer poisoned".into())),
        };
        if full { self.flush_pending() } else { Ok(()) }
    }

    /// Writes the deferred outcomes, in order.
    pub(super) fn flush_pending(&self) -> Result<(), StoreError> {
        let events = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => std::mem::take(&mut *pending),
            Ok(_) => return Ok(()),
            Err(_) => return Err(StoreError::Io("journal buffer poisoned".into())),
        };
        self.store.append_batch(&self.id, events)
    }

    /// Shows a transition (trace and observer) without journaling it.
    pub(super) fn announce(
        &self,
        step: Option<&str>,
        kind: EventKind,
        attempt: u32,
        detail: Option<String>,
        output: Option<Value>,
    ) {
        let ev = Event::at(now_ms(), step, kind, attempt, detail, output);
        self.notify(&ev);
    }

    pub(super) fn notify(&self, ev: &Event) {
        self.trace(ev);
        if let (Some(obs), Ok(rec)) = (&self.observer, self.record.lock()) {
            obs(&rec, ev);
        }
    }

    /// Keeps what the final report needs about each step, so the report does not
    /// have to read the journal back.
    pub(super) fn trace(&self, ev: &Event) {
        let (Some(step), Ok(mut trace)) = (ev.step.as_deref(), self.trace.lock()) else {
            return;
        };
        let t = trace.entry(step.to_string()).or_default();
        if ev.kind == EventKind::Started {
            t.first_start_ms.get_or_insert(ev.ts_ms);
            t.attempts = t.attempts.max(ev.attempt);
            t.input = ev.output.clone();
        }
        t.last_ms = ev.ts_ms;
    }

    pub(super) fn set_status(
        &self,
        status: ExecStatus,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        let rec = {
            let mut rec = self
                .record
                .lock()
                .map_err(|_| StoreError::Io("poisoned".into()))?;
            rec.status = status;
            rec.reason = reason;
            rec.updated_ms = now_ms();
            rec.clone()
        };
        self.store.put_execution(&rec)
    }

    /// The values a step's expressions may read. Only the outputs the step refers to
    /// are bound, so the cost does not grow with the size of the runbook.
    pub(super) fn bindings(&self, step: usize, outputs: &Map<String, Value>) -> Bindings {
        let s = &self.runbook.steps[step];
        if !s.has_expressions && !s.compensation {
            return Bindings::new();
        }
        let mut b = self.base.clone();
        let steps = match &s.reads {
            Some(reads) => reads
                .iter()
                .filter_map(|&i| {
                    let id = &self.runbook.steps[i].id;
                    outputs.get(id).map(|v| (id.clone(), v.clone()))
                })
                .collect(),
            None => outputs.clone(),
        };
        b.set("steps", &Value::Object(steps));
        b.set_int("now", now_ms() / 1000);
        b
    }
}

pub(super) fn report(
    ctx: &RunCtx,
    states: &[State],
    status: ExecStatus,
    reason: Option<String>,
    duration_ms: u64,
) -> ExecutionReport {
    let trace = ctx.trace.lock().ok();
    let steps = ctx
        .runbook
        .steps
        .iter()
        .zip(states)
        .filter(|(s, st)| !(s.compensation && matches!(st, State::Pending { .. })))
        .map(|(s, st)| {
            let t = trace.as_ref().and_then(|t| t.get(&s.id));
            let (status, output, why) = match st {
                State::Done(status, output, why) => (status.clone(), output.clone(), why.clone()),
                State::Running => (StepStatus::Cancelled, None, None),
                State::Pending { .. } => (StepStatus::Pending, None, None),
            };
            StepReport {
                id: s.id.clone(),
                uses: s.uses.clone(),
                status,
                attempts: t.map_or(0, |t| t.attempts),
                input: t.and_then(|t| t.input.clone()),
                output,
                plan: None,
                reason: why,
                duration_ms: t
                    .and_then(|t| t.first_start_ms.map(|f| (t.last_ms - f).max(0) as u64))
                    .unwrap_or(0),
            }
        })
        .collect();
    ExecutionReport {
        id: ctx.id(),
        runbook: ctx.runbook.name.clone(),
        dry_run: false,
        status,
        reason,
        steps,
        duration_ms,
    }
}
