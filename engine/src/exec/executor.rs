//! The DAG walker.
//!
//! One driver task owns the execution's state; each running step is a task that
//! reports back. Every transition is appended to the journal, and the journal is
//! made durable before any step with side effects starts (pure steps need no flush).

use super::action::{ActionCall, ActionCatalog, ActionError, ActionPlan};
use super::render::{Unknowns, render};
use crate::policy::expr::{Bindings, ExprEngine};
use crate::runbook::model::{Approval, OnFailure, Runbook, Step};
use crate::store::{Event, EventKind, ExecStatus, ExecutionRecord, Store, StoreError, now_ms};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Called with every journal event as it happens (live progress).
pub type Observer = Arc<dyn Fn(&ExecutionRecord, &Event) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("execution `{0}` is already finished ({1})")]
    Finished(String, &'static str),
    #[error("the journal of execution `{id}` holds a runbook that no longer parses: {detail}")]
    BadSource { id: String, detail: String },
}

/// What happened to one step.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    Compensated,
    AwaitingApproval,
    InDoubt,
    /// Dry-run: would run.
    WouldRun,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub id: String,
    pub uses: String,
    pub status: StepStatus,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<ActionPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExecutionReport {
    pub id: String,
    pub runbook: String,
    pub dry_run: bool,
    pub status: ExecStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Steps in execution order.
    pub steps: Vec<StepReport>,
    pub duration_ms: u64,
}

/// A request to run a runbook.
#[derive(Clone, Debug)]
pub struct Request {
    pub runbook: Arc<Runbook>,
    /// The runbook file's text, journaled so a resume runs the same definition.
    pub source: String,
    pub params: Map<String, Value>,
    pub incident: Value,
}

impl Request {
    /// Identifies "the same run": the same runbook text and inputs.
    pub fn inputs_key(&self) -> String {
        let text = serde_json::to_string(&(
            &self.runbook.name,
            &self.source,
            &self.params,
            &self.incident,
        ))
        .unwrap_or_default();
        format!("{:016x}", super::action::fnv1a64(text.as_bytes()))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum State {
    Pending { next_attempt: u32 },
    Running,
    Done(StepStatus, Option<Value>, Option<String>),
}

/// Runs runbooks.
#[derive(Clone)]
pub struct Executor {
    catalog: Arc<dyn ActionCatalog>,
    exprs: Arc<ExprEngine>,
    store: Store,
    observer: Option<Observer>,
    max_concurrency: usize,
    cancel: watch::Receiver<bool>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

/// Everything a step task needs, shared.
struct RunCtx {
    record: Mutex<ExecutionRecord>,
    runbook: Arc<Runbook>,
    params: Value,
    incident: Value,
    store: Store,
    catalog: Arc<dyn ActionCatalog>,
    exprs: Arc<ExprEngine>,
    observer: Option<Observer>,
}

impl RunCtx {
    fn id(&self) -> String {
        self.record.lock().map(|r| r.id.clone()).unwrap_or_default()
    }

    fn journal(
        &self,
        step: Option<&str>,
        kind: EventKind,
        attempt: u32,
        detail: Option<String>,
        output: Option<Value>,
    ) -> Result<(), StoreError> {
        let ev = Event {
            seq: 0,
            ts_ms: now_ms(),
            step: step.map(str::to_string),
            kind,
            attempt,
            detail,
            output,
        };
        let id = self.id();
        let ev = self.store.append(&id, ev)?;
        if let (Some(obs), Ok(rec)) = (&self.observer, self.record.lock()) {
            obs(&rec, &ev);
        }
        Ok(())
    }

    fn set_status(&self, status: ExecStatus, reason: Option<String>) -> Result<(), StoreError> {
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

    fn bindings(&self, outputs: &Map<String, Value>) -> Bindings {
        let mut b = Bindings::new();
        b.set("params", &self.params);
        b.set("incident", &self.incident);
        b.set("steps", &Value::Object(outputs.clone()));
        b.set("env", &json!({}));
        b.set_int("now", now_ms() / 1000);
        b
    }
}

impl Executor {
    pub fn new(catalog: Arc<dyn ActionCatalog>, store: Store) -> Self {
        let (_tx, rx) = watch::channel(false);
        Executor {
            catalog,
            exprs: Arc::new(ExprEngine::new()),
            store,
            observer: None,
            max_concurrency: 8,
            cancel: rx,
        }
    }

    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// Cancels running executions when the sender sends `true` (e.g. on Ctrl-C).
    pub fn with_cancel(mut self, cancel: watch::Receiver<bool>) -> Self {
        self.cancel = cancel;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// An unfinished execution of the same runbook with the same inputs, if any.
    pub fn find_resumable(&self, req: &Request) -> Result<Option<ExecutionRecord>, StoreError> {
        let key = req.inputs_key();
        Ok(self
            .store
            .executions()?
            .into_iter()
            .find(|r| r.inputs_key == key && matches!(r.status, ExecStatus::Running)))
    }

    /// Starts a new execution and runs it to the end (or to a pause).
    pub async fn start(&self, req: Request) -> Result<ExecutionReport, ExecError> {
        let id = self.store.next_execution_id()?;
        let now = now_ms();
        let record = ExecutionRecord {
            id: id.clone(),
            runbook: req.runbook.name.clone(),
            runbook_file: req.runbook.file.display().to_string(),
            source: req.source.clone(),
            inputs_key: req.inputs_key(),
            params: Value::Object(req.params.clone()),
            incident: req.incident.clone(),
            status: ExecStatus::Running,
            created_ms: now,
            updated_ms: now,
            reason: None,
        };
        self.store.put_execution(&record)?;
        let ctx = self.ctx(record, req.runbook.clone());
        ctx.journal(
            None,
            EventKind::ExecutionStarted,
            0,
            Some(format!("runbook {}", req.runbook.name)),
            Some(Value::Object(req.params)),
        )?;
        let states = vec![State::Pending { next_attempt: 1 }; ctx.runbook.steps.len()];
        self.drive(Arc::new(ctx), states, Map::new()).await
    }

    fn ctx(&self, record: ExecutionRecord, runbook: Arc<Runbook>) -> RunCtx {
        RunCtx {
            params: record.params.clone(),
            incident: record.incident.clone(),
            record: Mutex::new(record),
            runbook,
            store: self.store.clone(),
            catalog: self.catalog.clone(),
            exprs: self.exprs.clone(),
            observer: self.observer.clone(),
        }
    }

    /// Resumes an unfinished execution from its journal. Completed steps are never
    /// re-run; a step that was started but not finished is re-run only if its action
    /// is idempotent for that input, otherwise the execution stops "in doubt".
    pub async fn resume(&self, id: &str) -> Result<ExecutionReport, ExecError> {
        let record = self.store.execution(id)?;
        if record.status.is_final() {
            return Err(ExecError::Finished(id.to_string(), record.status.as_str()));
        }
        let bundle = crate::runbook::Bundle::from_source(
            std::path::Path::new(&record.runbook_file),
            &record.source,
        );
        let runbook = bundle
            .runbook(&record.runbook)
            .cloned()
            .filter(|_| !bundle.has_errors())
            .ok_or_else(|| ExecError::BadSource {
                id: id.to_string(),
                detail: bundle
                    .diagnostics
                    .first()
                    .map_or("runbook missing".into(), |d| d.message.clone()),
            })?;
        let runbook = Arc::new(runbook);
        let events = self.store.events(id)?;
        let ctx = Arc::new(self.ctx(record, runbook.clone()));
        ctx.set_status(ExecStatus::Running, None)?;
        ctx.journal(
            None,
            EventKind::ExecutionResumed,
            0,
            Some(format!("{} journal entries", events.len())),
            None,
        )?;

        let mut states = vec![State::Pending { next_attempt: 1 }; runbook.steps.len()];
        let mut outputs = Map::new();
        let mut in_flight: Vec<(usize, u32)> = Vec::new();
        for ev in &events {
            let Some(idx) = ev.step.as_deref().and_then(|s| runbook.step_index(s)) else {
                continue;
            };
            match ev.kind {
                EventKind::Started => in_flight.push((idx, ev.attempt)),
                EventKind::Retrying => {
                    in_flight.retain(|(i, _)| *i != idx);
                    states[idx] = State::Pending {
                        next_attempt: ev.attempt + 1,
                    };
                }
                EventKind::Succeeded | EventKind::Compensated => {
                    in_flight.retain(|(i, _)| *i != idx);
                    let out = ev.output.clone().unwrap_or(Value::Null);
                    outputs.insert(
                        runbook.steps[idx].id.clone(),
                        json!({ "output": out, "status": "succeeded" }),
                    );
                    let status = if ev.kind == EventKind::Compensated {
                        StepStatus::Compensated
                    } else {
                        StepStatus::Succeeded
                    };
                    states[idx] = State::Done(status, Some(out), None);
                }
                EventKind::Failed | EventKind::Skipped | EventKind::Cancelled => {
                    in_flight.retain(|(i, _)| *i != idx);
                    let status = match ev.kind {
                        EventKind::Failed => StepStatus::Failed,
                        EventKind::Skipped => StepStatus::Skipped,
                        _ => StepStatus::Cancelled,
                    };
                    outputs.insert(
                        runbook.steps[idx].id.clone(),
                        json!({ "output": null, "status": status }),
                    );
                    states[idx] = State::Done(status, None, ev.detail.clone());
                }
                _ => {}
            }
        }
        for (idx, attempt) in in_flight {
            let step = &runbook.steps[idx];
            let action = ctx.catalog.resolve(&step.uses);
            let input = render(
                &step.with,
                &ctx.exprs,
                &ctx.bindings(&outputs),
                Unknowns::Error,
            )
            .unwrap_or(Value::Null);
            let idempotent = action.as_ref().is_some_and(|a| a.idempotent(&input));
            if idempotent {
                ctx.journal(
                    Some(&step.id),
                    EventKind::Queued,
                    attempt,
                    Some("re-running an idempotent step that was interrupted".into()),
                    None,
                )?;
                states[idx] = State::Pending {
                    next_attempt: attempt,
                };
            } else {
                let reason = format!(
                    "step `{}` ({}) was started but its outcome is unknown after an interruption; it is not idempotent, so vigil will not run it again — check its effect by hand",
                    step.id, step.uses
                );
                ctx.journal(
                    Some(&step.id),
                    EventKind::InDoubt,
                    attempt,
                    Some(reason.clone()),
                    None,
                )?;
                ctx.set_status(ExecStatus::InDoubt, Some(reason.clone()))?;
                self.store.sync().await?;
                states[idx] = State::Done(StepStatus::InDoubt, None, Some(reason.clone()));
                return Ok(report(&ctx, &states, ExecStatus::InDoubt, Some(reason), 0));
            }
        }
        self.drive(ctx, states, outputs).await
    }

    async fn drive(
        &self,
        ctx: Arc<RunCtx>,
        mut states: Vec<State>,
        mut outputs: Map<String, Value>,
    ) -> Result<ExecutionReport, ExecError> {
        let started = Instant::now();
        let rb = ctx.runbook.clone();
        let limit = rb
            .concurrency
            .map_or(self.max_concurrency, |c| c.max(1) as usize);
        let deadline = rb.timeout.map(|t| tokio::time::Instant::now() + t.as_std());
        let mut tasks: JoinSet<(usize, Result<(Value, u32), (String, u32)>)> = JoinSet::new();
        let mut running = 0usize;
        let mut stop: Option<(ExecStatus, String)> = None;
        let mut cancel = self.cancel.clone();
        let approvals = approved_steps(&ctx)?;

        loop {
            // Launch or settle every step whose dependencies are done.
            let mut progressed = true;
            while progressed && stop.is_none() {
                progressed = false;
                for idx in 0..rb.steps.len() {
                    let step = &rb.steps[idx];
                    let State::Pending { next_attempt } = states[idx] else {
                        continue;
                    };
                    if step.compensation || running >= limit {
                        continue;
                    }
                    if !step
                        .needs
                        .iter()
                        .all(|&n| matches!(states[n], State::Done(..)))
                    {
                        continue;
                    }
                    progressed = true;
                    if let Some(&blocker) = step
                        .needs
                        .iter()
                        .find(|&&n| !matches!(states[n], State::Done(StepStatus::Succeeded, ..)))
                    {
                        let reason = format!("`{}` did not succeed", rb.steps[blocker].id);
                        settle(
                            &ctx,
                            &mut states,
                            &mut outputs,
                            idx,
                            StepStatus::Skipped,
                            None,
                            Some(reason),
                        )?;
                        continue;
                    }
                    if let Some(when) = &step.when {
                        match ctx.exprs.eval_bool(&when.source, &ctx.bindings(&outputs)) {
                            Ok(true) => {}
                            Ok(false) => {
                                let reason = format!("condition `{}` is false", when.source);
                                settle(
                                    &ctx,
                                    &mut states,
                                    &mut outputs,
                                    idx,
                                    StepStatus::Skipped,
                                    None,
                                    Some(reason),
                                )?;
                                continue;
                            }
                            Err(e) => {
                                let reason = format!("`when` failed (line {}): {e}", when.pos.line);
                                settle(
                                    &ctx,
                                    &mut states,
                                    &mut outputs,
                                    idx,
                                    StepStatus::Failed,
                                    None,
                                    Some(reason.clone()),
                                )?;
                                if let Some(s) = self.on_failure(
                                    &ctx,
                                    &mut states,
                                    &mut outputs,
                                    idx,
                                    &reason,
                                    &mut tasks,
                                    &mut running,
                                )? {
                                    stop = Some(s);
                                }
                                continue;
                            }
                        }
                    }
                    if step.approval == Approval::Required && !approvals.contains(&idx) {
                        let reason = format!(
                            "step `{}` requires approval: `vigil executions approve {}`",
                            step.id,
                            ctx.id()
                        );
                        ctx.journal(
                            Some(&step.id),
                            EventKind::AwaitingApproval,
                            next_attempt,
                            Some(reason.clone()),
                            None,
                        )?;
                        states[idx] =
                            State::Done(StepStatus::AwaitingApproval, None, Some(reason.clone()));
                        stop = Some((ExecStatus::AwaitingApproval, reason));
                        break;
                    }
                    states[idx] = State::Running;
                    running += 1;
                    let bindings = ctx.bindings(&outputs);
                    tasks.spawn(run_step(ctx.clone(), idx, next_attempt, bindings));
                }
            }

            if running == 0 {
                break;
            }
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, tasks.join_next()).await.ok(),
                    None => Some(tasks.join_next().await),
                }
            };
            tokio::select! {
                joined = next => match joined {
                    None => {
                        stop = Some((ExecStatus::TimedOut, format!("runbook timeout of {} reached", rb.timeout.map(|t| t.to_string()).unwrap_or_default())));
                        break;
                    }
                    Some(None) => break,
                    Some(Some(Ok((idx, result)))) => {
                        running -= 1;
                        match result {
                            Ok((output, _attempts)) => {
                                let status = if matches!(states[idx], State::Running) && rb.steps[idx].compensation { StepStatus::Compensated } else { StepStatus::Succeeded };
                                settle(&ctx, &mut states, &mut outputs, idx, status, Some(output), None)?;
                                // An effect happened: make its completion durable now, so a
                                // crash later does not leave a finished step "in doubt".
                                if !ctx.catalog.resolve(&rb.steps[idx].uses).is_some_and(|a| a.info().pure) {
                                    ctx.store.sync().await?;
                                }
                            }
                            Err((reason, _attempts)) => {
                                settle(&ctx, &mut states, &mut outputs, idx, StepStatus::Failed, None, Some(reason.clone()))?;
                                if rb.steps[idx].compensation {
                                    stop.get_or_insert((ExecStatus::Failed, format!("compensation step `{}` failed: {reason}", rb.steps[idx].id)));
                                } else if let Some(s) = self.on_failure(&ctx, &mut states, &mut outputs, idx, &reason, &mut tasks, &mut running)? {
                                    stop.get_or_insert(s);
                                }
                            }
                        }
                    }
                    Some(Some(Err(join_err))) => {
                        running -= 1;
                        stop.get_or_insert((ExecStatus::Failed, format!("a step task crashed: {join_err}")));
                    }
                },
                _ = cancel.changed() => {
                    if *cancel.borrow() {
                        stop = Some((ExecStatus::Cancelled, "cancelled by the operator".into()));
                        break;
                    }
                }
            }
            if stop.is_some() && running == 0 {
                break;
            }
        }

        // Cancel what is still running (timeout or cancellation).
        if running > 0 {
            tasks.abort_all();
            for idx in 0..states.len() {
                if states[idx] == State::Running {
                    let reason = stop.as_ref().map(|s| s.1.clone());
                    settle(
                        &ctx,
                        &mut states,
                        &mut outputs,
                        idx,
                        StepStatus::Cancelled,
                        None,
                        reason,
                    )?;
                }
            }
        }
        let (status, reason) = match stop {
            Some((status, reason)) => (status, Some(reason)),
            None => {
                let failed: Vec<&str> = rb
                    .steps
                    .iter()
                    .zip(&states)
                    .filter(|(s, st)| {
                        !s.compensation && matches!(st, State::Done(StepStatus::Failed, ..))
                    })
                    .map(|(s, _)| s.id.as_str())
                    .collect();
                if failed.is_empty() {
                    (ExecStatus::Succeeded, None)
                } else {
                    (
                        ExecStatus::Failed,
                        Some(format!(
                            "failed steps (on_failure: continue): {}",
                            failed.join(", ")
                        )),
                    )
                }
            }
        };
        // Steps never reached because the execution stopped early.
        if status != ExecStatus::AwaitingApproval {
            for idx in 0..states.len() {
                if matches!(states[idx], State::Pending { .. }) && !rb.steps[idx].compensation {
                    settle(
                        &ctx,
                        &mut states,
                        &mut outputs,
                        idx,
                        StepStatus::Skipped,
                        None,
                        Some("execution stopped before this step".into()),
                    )?;
                }
            }
        }
        ctx.set_status(status, reason.clone())?;
        if status != ExecStatus::AwaitingApproval {
            ctx.journal(
                None,
                EventKind::ExecutionFinished,
                0,
                Some(status.as_str().to_string()),
                None,
            )?;
        }
        ctx.store.sync().await?;
        Ok(report(
            &ctx,
            &states,
            status,
            reason,
            started.elapsed().as_millis() as u64,
        ))
    }

    /// Applies a failed step's `on_failure`. Returns why the execution stops, if it does.
    #[allow(clippy::too_many_arguments)]
    fn on_failure(
        &self,
        ctx: &Arc<RunCtx>,
        states: &mut [State],
        outputs: &mut Map<String, Value>,
        idx: usize,
        reason: &str,
        tasks: &mut JoinSet<(usize, Result<(Value, u32), (String, u32)>)>,
        running: &mut usize,
    ) -> Result<Option<(ExecStatus, String)>, ExecError> {
        let step = &ctx.runbook.steps[idx];
        Ok(match step.on_failure {
            OnFailure::Continue => None,
            OnFailure::Abort => Some((
                ExecStatus::Failed,
                format!("step `{}` failed: {reason}", step.id),
            )),
            OnFailure::Compensate(c) => {
                if matches!(states[c], State::Pending { .. }) {
                    ctx.journal(
                        Some(&ctx.runbook.steps[c].id),
                        EventKind::Queued,
                        1,
                        Some(format!("compensating for `{}`", step.id)),
                        None,
                    )?;
                    states[c] = State::Running;
                    *running += 1;
                    tasks.spawn(run_step(ctx.clone(), c, 1, ctx.bindings(outputs)));
                }
                Some((
                    ExecStatus::Failed,
                    format!(
                        "step `{}` failed: {reason}; compensated by `{}`",
                        step.id, ctx.runbook.steps[c].id
                    ),
                ))
            }
        })
    }
}

/// Steps with a recorded approval in the journal.
fn approved_steps(ctx: &RunCtx) -> Result<Vec<usize>, StoreError> {
    let id = ctx.id();
    Ok(ctx
        .store
        .events(&id)?
        .iter()
        .filter(|e| e.kind == EventKind::Approved)
        .filter_map(|e| e.step.as_deref().and_then(|s| ctx.runbook.step_index(s)))
        .collect())
}

/// Records a step's final state.
fn settle(
    ctx: &RunCtx,
    states: &mut [State],
    outputs: &mut Map<String, Value>,
    idx: usize,
    status: StepStatus,
    output: Option<Value>,
    reason: Option<String>,
) -> Result<(), StoreError> {
    let step = &ctx.runbook.steps[idx];
    let kind = match status {
        StepStatus::Succeeded => EventKind::Succeeded,
        StepStatus::Compensated => EventKind::Compensated,
        StepStatus::Failed => EventKind::Failed,
        StepStatus::Skipped => EventKind::Skipped,
        StepStatus::Cancelled => EventKind::Cancelled,
        StepStatus::AwaitingApproval => EventKind::AwaitingApproval,
        StepStatus::InDoubt => EventKind::InDoubt,
        StepStatus::Pending | StepStatus::WouldRun => EventKind::Queued,
    };
    ctx.journal(Some(&step.id), kind, 0, reason.clone(), output.clone())?;
    outputs.insert(
        step.id.clone(),
        json!({ "output": output.clone().unwrap_or(Value::Null), "status": status }),
    );
    states[idx] = State::Done(status, output, reason);
    Ok(())
}

/// One step, through all its attempts. Returns the output, or the final error.
async fn run_step(
    ctx: Arc<RunCtx>,
    idx: usize,
    first_attempt: u32,
    bindings: Bindings,
) -> (usize, Result<(Value, u32), (String, u32)>) {
    let result = run_attempts(&ctx, &ctx.runbook.steps[idx], first_attempt, &bindings).await;
    (idx, result)
}

async fn run_attempts(
    ctx: &RunCtx,
    step: &Step,
    first_attempt: u32,
    bindings: &Bindings,
) -> Result<(Value, u32), (String, u32)> {
    let Some(action) = ctx.catalog.resolve(&step.uses) else {
        return Err((format!("unknown action `{}`", step.uses), 0));
    };
    let input = render(&step.with, &ctx.exprs, bindings, Unknowns::Error)
        .map_err(|e| (format!("inputs: {e}"), 0))?;
    action.validate(&input).map_err(|e| (e.to_string(), 0))?;
    let plan = action
        .plan(&input)
        .await
        .map_err(|e| (format!("plan: {e}"), 0))?;
    let pure = action.info().pure;
    let mut attempt = first_attempt.max(1);
    loop {
        let journal = |kind, detail: Option<String>, output: Option<Value>| {
            ctx.journal(Some(&step.id), kind, attempt, detail, output)
                .map_err(|e| (format!("journal: {e}"), attempt))
        };
        journal(
            EventKind::Started,
            Some(plan.summary.clone()),
            Some(input.clone()),
        )?;
        if !pure {
            // The start must be durable before the world changes.
            ctx.store
                .sync()
                .await
                .map_err(|e| (format!("journal: {e}"), attempt))?;
        }
        let call = ActionCall {
            execution_id: ctx.id(),
            step_id: step.id.clone(),
            attempt,
            input: input.clone(),
            plan: plan.clone(),
        };
        let fut = action.execute(call);
        let outcome = match step.timeout {
            Some(t) => tokio::time::timeout(t.as_std(), fut)
                .await
                .unwrap_or_else(|_| Err(ActionError::Failed(format!("timed out after {t}")))),
            None => fut.await,
        };
        let outcome = outcome.and_then(|output| check_assert(ctx, step, bindings, output));
        match outcome {
            Ok(output) => return Ok((output, attempt)),
            Err(e) if e.is_retryable() && attempt < step.retry.attempts => {
                let delay = step.retry.delay_before(attempt + 1);
                journal(
                    EventKind::Retrying,
                    Some(format!("{e}; retrying in {}", fmt_delay(delay))),
                    None,
                )?;
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err((e.to_string(), attempt)),
        }
    }
}

fn fmt_delay(d: Duration) -> String {
    crate::runbook::duration::Duration(d).to_string()
}

fn check_assert(
    ctx: &RunCtx,
    step: &Step,
    bindings: &Bindings,
    output: Value,
) -> Result<Value, ActionError> {
    let Some(assert) = &step.assert else {
        return Ok(output);
    };
    let mut b = bindings.clone();
    b.set("output", &output);
    match ctx.exprs.eval_bool(&assert.source, &b) {
        Ok(true) => Ok(output),
        Ok(false) => Err(ActionError::Failed(format!(
            "assertion `{}` does not hold (output: {output})",
            assert.source
        ))),
        Err(e) => Err(ActionError::Failed(format!(
            "assertion `{}` failed to evaluate: {e}",
            assert.source
        ))),
    }
}

fn report(
    ctx: &RunCtx,
    states: &[State],
    status: ExecStatus,
    reason: Option<String>,
    duration_ms: u64,
) -> ExecutionReport {
    let events = ctx.store.events(&ctx.id()).unwrap_or_default();
    let steps = ctx
        .runbook
        .steps
        .iter()
        .zip(states)
        .filter(|(s, st)| !(s.compensation && matches!(st, State::Pending { .. })))
        .map(|(s, st)| {
            let mine = events
                .iter()
                .filter(|e| e.step.as_deref() == Some(s.id.as_str()));
            let starts: Vec<&Event> = mine
                .clone()
                .filter(|e| e.kind == EventKind::Started)
                .collect();
            let first = starts.first().map(|e| e.ts_ms);
            let last = mine.clone().last().map(|e| e.ts_ms);
            let (status, output, why) = match st {
                State::Done(status, output, why) => (status.clone(), output.clone(), why.clone()),
                State::Running => (StepStatus::Cancelled, None, None),
                State::Pending { .. } => (StepStatus::Pending, None, None),
            };
            StepReport {
                id: s.id.clone(),
                uses: s.uses.clone(),
                status,
                attempts: starts.iter().map(|e| e.attempt).max().unwrap_or(0),
                input: starts.last().and_then(|e| e.output.clone()),
                output,
                plan: None,
                reason: why,
                duration_ms: match (first, last) {
                    (Some(a), Some(b)) => (b - a).max(0) as u64,
                    _ => 0,
                },
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
