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
use std::future::Future as _;
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
    #[error("execution `{id}` is {status}, not awaiting approval")]
    NotAwaiting { id: String, status: &'static str },
    #[error(
        "execution `{id}`: the plan changed since you reviewed it (you approved {expected}, it is now {current}); review it again"
    )]
    StalePlan {
        id: String,
        expected: String,
        current: String,
    },
    #[error(
        "execution `{id}` waited too long for approval and was handed to a human (the policy's fallback)"
    )]
    ApprovalExpired { id: String },
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
    /// Who asked: `manual` (a person at the CLI or API) or `automatic` (a trigger).
    pub origin: String,
    /// A policy asked for approval: the execution waits before acting.
    pub gate: bool,
    /// How long an approval may take; past it, the wait ends in the policy's
    /// fallback (page) instead of running.
    pub approval_timeout: Option<Duration>,
}

impl Request {
    /// A manual request with no approval gate.
    pub fn manual(
        runbook: Arc<Runbook>,
        source: String,
        params: Map<String, Value>,
        incident: Value,
    ) -> Request {
        Request {
            runbook,
            source,
            params,
            incident,
            origin: "manual".into(),
            gate: false,
            approval_timeout: None,
        }
    }

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
    /// The allowlisted environment, visible to expressions as `env`.
    env: Value,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

/// Everything a step task needs, shared.
/// What the report shows about a step, gathered as its events are journaled.
#[derive(Debug, Default)]
struct StepTrace {
    attempts: u32,
    first_start_ms: Option<i64>,
    last_ms: i64,
    input: Option<Value>,
}

struct RunCtx {
    /// The execution id (also in `record`; kept apart to avoid locking for it).
    id: Arc<str>,
    record: Mutex<ExecutionRecord>,
    trace: Mutex<std::collections::HashMap<String, StepTrace>>,
    /// `params`, `incident` and `env`, converted once per execution.
    base: Bindings,
    runbook: Arc<Runbook>,
    store: Store,
    catalog: Arc<dyn ActionCatalog>,
    exprs: Arc<ExprEngine>,
    observer: Option<Observer>,
}

impl RunCtx {
    fn id(&self) -> String {
        self.id.to_string()
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
        let ev = self.store.append(&self.id, ev)?;
        self.notify(&ev);
        Ok(())
    }

    /// Shows a transition (trace and observer) without journaling it.
    fn announce(
        &self,
        step: Option<&str>,
        kind: EventKind,
        attempt: u32,
        detail: Option<String>,
        output: Option<Value>,
    ) {
        let ev = Event {
            seq: 0,
            ts_ms: now_ms(),
            step: step.map(str::to_string),
            kind,
            attempt,
            detail,
            output,
        };
        self.notify(&ev);
    }

    fn notify(&self, ev: &Event) {
        self.trace(ev);
        if let (Some(obs), Ok(rec)) = (&self.observer, self.record.lock()) {
            obs(&rec, ev);
        }
    }

    /// Keeps what the final report needs about each step, so the report does not
    /// have to read the journal back.
    fn trace(&self, ev: &Event) {
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

    /// The values a step's expressions may read. Only the outputs the step refers to
    /// are bound, so the cost does not grow with the size of the runbook.
    fn bindings(&self, step: usize, outputs: &Map<String, Value>) -> Bindings {
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
            env: json!({}),
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

    /// Makes the named environment variables visible to expressions as `env.NAME`.
    pub fn with_env_allowlist(mut self, names: &[String]) -> Self {
        let vars: Map<String, Value> = names
            .iter()
            .filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), Value::String(v))))
            .collect();
        self.env = Value::Object(vars);
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
            origin: req.origin.clone(),
            gate: req.gate,
            approval_timeout_ms: req.approval_timeout.map(|d| d.as_millis() as i64),
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
        let mut base = Bindings::new();
        base.set("params", &record.params);
        base.set("incident", &record.incident);
        base.set("env", &self.env);
        RunCtx {
            id: Arc::from(record.id.as_str()),
            base,
            trace: Mutex::new(std::collections::HashMap::new()),
            record: Mutex::new(record),
            runbook,
            store: self.store.clone(),
            catalog: self.catalog.clone(),
            exprs: self.exprs.clone(),
            observer: self.observer.clone(),
        }
    }

    /// Approves (and continues) or rejects (and fails) the step an execution waits on.
    /// The approval binds to the plan hash the execution is waiting with; with
    /// `expected_hash`, an approval of a different plan is refused.
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        actor: &str,
        comment: Option<&str>,
        expected_hash: Option<&str>,
    ) -> Result<Option<ExecutionReport>, ExecError> {
        let mut rec = self.store.execution(id)?;
        if rec.status != ExecStatus::AwaitingApproval {
            return Err(ExecError::NotAwaiting {
                id: id.into(),
                status: rec.status.as_str(),
            });
        }
        if self.expire_approval(&rec, now_ms()).await? {
            return Err(ExecError::ApprovalExpired { id: id.into() });
        }
        let events = self.store.events(id)?;
        let waiting = events
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::AwaitingApproval);
        let step = waiting.and_then(|e| e.step.clone());
        let hash = waiting
            .and_then(|e| e.output.as_ref())
            .and_then(|o| o["plan_hash"].as_str())
            .map(str::to_string);
        if let (Some(expected), Some(current)) = (expected_hash, &hash) {
            if expected != current {
                return Err(ExecError::StalePlan {
                    id: id.into(),
                    expected: expected.into(),
                    current: current.clone(),
                });
            }
        }
        let detail = format!(
            "by {actor}{}",
            comment.map(|c| format!(": {c}")).unwrap_or_default()
        );
        let kind = if approve {
            EventKind::Approved
        } else {
            EventKind::Rejected
        };
        let ev = Event {
            seq: 0,
            ts_ms: now_ms(),
            step: step.clone(),
            kind,
            attempt: 0,
            detail: Some(detail.clone()),
            output: Some(json!({ "plan_hash": hash })),
        };
        self.store.append(id, ev)?;
        let entry = crate::store::AuditEntry::new(
            actor,
            if approve { "approve" } else { "reject" },
            id,
            if approve { "approved" } else { "rejected" },
        )
        .with_inputs(json!({ "step": step, "comment": comment }))
        .with_plan_hash(hash);
        self.store.audit(entry)?;
        if !approve {
            rec.status = ExecStatus::Failed;
            rec.reason = Some(format!(
                "step `{}` rejected {detail}",
                step.unwrap_or_default()
            ));
            rec.updated_ms = now_ms();
            self.store.put_execution(&rec)?;
            self.store.sync().await?;
            return Ok(None);
        }
        self.store.sync().await?;
        self.resume(id).await.map(Some)
    }

    /// Ends every wait for approval whose deadline passed: the step is rejected and
    /// the execution fails with the policy's fallback — page a human. Returns the
    /// executions expired.
    pub async fn expire_approvals(&self, now: i64) -> Result<Vec<String>, ExecError> {
        let mut expired = Vec::new();
        for rec in self.store.executions()? {
            if rec.status == ExecStatus::AwaitingApproval && self.expire_approval(&rec, now).await?
            {
                expired.push(rec.id);
            }
        }
        Ok(expired)
    }

    async fn expire_approval(&self, rec: &ExecutionRecord, now: i64) -> Result<bool, ExecError> {
        if rec.status != ExecStatus::AwaitingApproval {
            return Ok(false);
        }
        let events = self.store.events(&rec.id)?;
        let Some(waiting) = events
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::AwaitingApproval)
        else {
            return Ok(false);
        };
        let deadline = waiting
            .output
            .as_ref()
            .and_then(|o| o["deadline_ms"].as_i64());
        if !deadline.is_some_and(|d| now > d) {
            return Ok(false);
        }
        let waited =
            crate::runbook::duration::Duration::from_millis((now - waiting.ts_ms).max(0) as u64);
        let reason = format!(
            "no approval within the policy's timeout (waited {waited}); falling back to paging a human"
        );
        let ev = Event {
            seq: 0,
            ts_ms: now,
            step: waiting.step.clone(),
            kind: EventKind::Rejected,
            attempt: 0,
            detail: Some(reason.clone()),
            output: None,
        };
        self.store.append(&rec.id, ev)?;
        let mut rec = rec.clone();
        rec.status = ExecStatus::Failed;
        rec.reason = Some(reason.clone());
        rec.updated_ms = now;
        self.store.put_execution(&rec)?;
        self.store.audit(crate::store::AuditEntry::new(
            "guardrail:approval-timeout",
            "page",
            &rec.id,
            reason,
        ))?;
        self.store.sync().await?;
        Ok(true)
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
        for ev in &events {
            ctx.trace(ev);
        }
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
                &ctx.bindings(idx, &outputs),
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
        states: Vec<State>,
        outputs: Map<String, Value>,
    ) -> Result<ExecutionReport, ExecError> {
        let started = Instant::now();
        let rb = ctx.runbook.clone();
        let deadline = rb.timeout.map(|t| tokio::time::Instant::now() + t.as_std());
        let mut cancel = self.cancel.clone();
        let mut walk = Walk {
            approvals: approved_steps(&ctx)?,
            sched: Sched::new(&rb, &states),
            limit: rb
                .concurrency
                .map_or(self.max_concurrency, |c| c.max(1) as usize),
            ctx: ctx.clone(),
            states,
            outputs,
            tasks: JoinSet::new(),
            running: 0,
            stop: None,
        };

        loop {
            walk.launch_ready().await?;
            if walk.running == 0 {
                break;
            }
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, walk.tasks.join_next())
                        .await
                        .ok(),
                    None => Some(walk.tasks.join_next().await),
                }
            };
            tokio::select! {
                joined = next => match joined {
                    None => {
                        let limit = rb.timeout.map(|t| t.to_string()).unwrap_or_default();
                        walk.stop = Some((ExecStatus::TimedOut, format!("runbook timeout of {limit} reached")));
                        break;
                    }
                    Some(None) => break,
                    Some(Some(Ok((idx, result)))) => {
                        walk.running -= 1;
                        walk.complete(idx, result).await?;
                    }
                    Some(Some(Err(join_err))) => {
                        walk.running -= 1;
                        walk.stop.get_or_insert((ExecStatus::Failed, format!("a step task crashed: {join_err}")));
                    }
                },
                _ = cancel.changed() => {
                    if *cancel.borrow() {
                        walk.stop = Some((ExecStatus::Cancelled, "cancelled by the operator".into()));
                        break;
                    }
                }
            }
            if walk.stop.is_some() && walk.running == 0 {
                break;
            }
        }
        walk.finish(started).await
    }
}

type StepResult = Result<(Value, u32), (String, u32)>;

/// The mutable state of one DAG walk, owned by the driver.
struct Walk {
    ctx: Arc<RunCtx>,
    states: Vec<State>,
    outputs: Map<String, Value>,
    sched: Sched,
    tasks: JoinSet<(usize, StepResult)>,
    running: usize,
    limit: usize,
    /// Approvals recorded in the journal: step and the plan hash approved.
    approvals: Vec<(usize, Option<String>)>,
    /// Why the execution stops early, once it does.
    stop: Option<(ExecStatus, String)>,
}

impl Walk {
    fn settle(
        &mut self,
        idx: usize,
        status: StepStatus,
        output: Option<Value>,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        settle(
            &self.ctx,
            &mut self.states,
            &mut self.outputs,
            idx,
            status,
            output,
            reason,
        )?;
        self.sched.done(idx);
        Ok(())
    }

    /// Starts (or settles without running) every ready step, within the concurrency limit.
    async fn launch_ready(&mut self) -> Result<(), ExecError> {
        let ctx = self.ctx.clone();
        let rb = ctx.runbook.clone();
        while self.stop.is_none() && self.running < self.limit {
            let Some(idx) = self.sched.ready.pop_front() else {
                break;
            };
            let step = &rb.steps[idx];
            let State::Pending { next_attempt } = self.states[idx] else {
                continue;
            };
            let blocker = step
                .needs
                .iter()
                .find(|&&n| !matches!(self.states[n], State::Done(StepStatus::Succeeded, ..)));
            if let Some(&blocker) = blocker {
                let reason = format!("`{}` did not succeed", rb.steps[blocker].id);
                self.settle(idx, StepStatus::Skipped, None, Some(reason))?;
                continue;
            }
            if let Some(when) = &step.when {
                match ctx
                    .exprs
                    .eval_bool(&when.source, &ctx.bindings(idx, &self.outputs))
                {
                    Ok(true) => {}
                    Ok(false) => {
                        self.settle(
                            idx,
                            StepStatus::Skipped,
                            None,
                            Some(format!("condition `{}` is false", when.source)),
                        )?;
                        continue;
                    }
                    Err(e) => {
                        let reason = format!("`when` failed (line {}): {e}", when.pos.line);
                        self.settle(idx, StepStatus::Failed, None, Some(reason.clone()))?;
                        self.on_failure(idx, &reason)?;
                        continue;
                    }
                }
            }
            if let Some(reason) = self.approval_needed(idx).await? {
                let timeout = ctx.record.lock().ok().and_then(|r| r.approval_timeout_ms);
                let deadline = timeout.map(|t| now_ms() + t);
                ctx.journal(
                    Some(&step.id),
                    EventKind::AwaitingApproval,
                    next_attempt,
                    Some(reason.0.clone()),
                    Some(json!({ "plan_hash": reason.1, "deadline_ms": deadline })),
                )?;
                self.states[idx] =
                    State::Done(StepStatus::AwaitingApproval, None, Some(reason.0.clone()));
                self.stop = Some((ExecStatus::AwaitingApproval, reason.0));
                break;
            }
            self.states[idx] = State::Running;
            self.spawn_or_finish(idx, next_attempt).await?;
        }
        Ok(())
    }

    /// Whether step `idx` must wait for a human, and why, with the hash of the plan
    /// to approve. An approval binds to that hash: if the plan changed since, the
    /// approval is void and the step waits again.
    async fn approval_needed(&mut self, idx: usize) -> Result<Option<(String, String)>, ExecError> {
        let ctx = self.ctx.clone();
        let rb = &ctx.runbook;
        let step = &rb.steps[idx];
        let gate = ctx.record.lock().map(|r| r.gate).unwrap_or(false);
        let action = ctx.catalog.resolve(&step.uses);
        let pure = action.as_ref().is_some_and(|a| a.info().pure);
        let required = match step.approval {
            Approval::Required => true,
            Approval::Policy => gate,
            // The policy asked for approval but no step names `approval: policy`: one
            // approval, before the first step with side effects, covers the execution.
            Approval::None => {
                gate && !pure
                    && !rb.steps.iter().any(|s| s.approval == Approval::Policy)
                    && self.approvals.is_empty()
            }
        };
        if !required {
            return Ok(None);
        }
        let Some(action) = action else {
            return Ok(None);
        };
        let input = render(
            &step.with,
            &ctx.exprs,
            &ctx.bindings(idx, &self.outputs),
            Unknowns::Error,
        )
        .unwrap_or(Value::Null);
        // The approval covers exactly this input and this plan.
        let hash = match action.plan(&input).await {
            Ok(plan) => format!(
                "{:016x}",
                super::action::fnv1a64(format!("{}|{input}", plan.hash()).as_bytes())
            ),
            Err(_) => return Ok(None), // the step fails on its own when it runs
        };
        let approved_here = self
            .approvals
            .iter()
            .filter(|(i, _)| *i == idx)
            .collect::<Vec<_>>();
        if approved_here
            .iter()
            .any(|(_, h)| h.as_deref() == Some(hash.as_str()) || h.is_none())
        {
            return Ok(None);
        }
        if step.approval == Approval::None && gate && !self.approvals.is_empty() {
            return Ok(None);
        }
        let why = if approved_here.is_empty() {
            format!(
                "step `{}` requires approval: `vigil executions approve {}`",
                step.id,
                ctx.id()
            )
        } else {
            ctx.journal(
                Some(&step.id),
                EventKind::Rejected,
                0,
                Some(format!(
                    "approval void: the plan changed since it was approved (now {hash})"
                )),
                None,
            )?;
            self.approvals.retain(|(i, _)| *i != idx);
            format!(
                "the plan of `{}` changed since it was approved; approve again: `vigil executions approve {}`",
                step.id,
                ctx.id()
            )
        };
        Ok(Some((why, hash)))
    }

    /// Runs a step. A step that completes on its first poll (pure actions such as
    /// `core/set`) is finished inline; only a step that must wait gets a task.
    async fn spawn_or_finish(&mut self, idx: usize, attempt: u32) -> Result<(), ExecError> {
        let mut fut = Box::pin(run_step(
            self.ctx.clone(),
            idx,
            attempt,
            self.ctx.bindings(idx, &self.outputs),
        ));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready((idx, result)) => self.complete(idx, result).await,
            std::task::Poll::Pending => {
                self.running += 1;
                self.tasks.spawn(fut);
                Ok(())
            }
        }
    }

    /// A step finished all its attempts.
    async fn complete(&mut self, idx: usize, result: StepResult) -> Result<(), ExecError> {
        let ctx = self.ctx.clone();
        let step = &ctx.runbook.steps[idx];
        match result {
            Ok((output, _attempts)) => {
                let status = if step.compensation {
                    StepStatus::Compensated
                } else {
                    StepStatus::Succeeded
                };
                self.settle(idx, status, Some(output), None)?;
                // An effect happened: make its completion durable now, so a crash later
                // does not leave a finished step "in doubt".
                if !ctx
                    .catalog
                    .resolve(&step.uses)
                    .is_some_and(|a| a.info().pure)
                {
                    ctx.store.sync().await?;
                }
            }
            Err((reason, _attempts)) => {
                self.settle(idx, StepStatus::Failed, None, Some(reason.clone()))?;
                if step.compensation {
                    self.stop.get_or_insert((
                        ExecStatus::Failed,
                        format!("compensation step `{}` failed: {reason}", step.id),
                    ));
                } else {
                    self.on_failure(idx, &reason)?;
                }
            }
        }
        Ok(())
    }

    /// Applies a failed step's `on_failure`: continue, abort, or compensate then stop.
    fn on_failure(&mut self, idx: usize, reason: &str) -> Result<(), ExecError> {
        let ctx = self.ctx.clone();
        let step = &ctx.runbook.steps[idx];
        let stop = match step.on_failure {
            OnFailure::Continue => None,
            OnFailure::Abort => Some(format!("step `{}` failed: {reason}", step.id)),
            OnFailure::Compensate(c) => {
                let comp = &ctx.runbook.steps[c];
                if matches!(self.states[c], State::Pending { .. }) {
                    ctx.journal(
                        Some(&comp.id),
                        EventKind::Queued,
                        1,
                        Some(format!("compensating for `{}`", step.id)),
                        None,
                    )?;
                    self.states[c] = State::Running;
                    self.running += 1;
                    self.tasks
                        .spawn(run_step(ctx.clone(), c, 1, ctx.bindings(c, &self.outputs)));
                }
                Some(format!(
                    "step `{}` failed: {reason}; compensated by `{}`",
                    step.id, comp.id
                ))
            }
        };
        if let Some(why) = stop {
            self.stop.get_or_insert((ExecStatus::Failed, why));
        }
        Ok(())
    }

    /// Cancels what still runs, settles what never ran, and records the outcome.
    async fn finish(mut self, started: Instant) -> Result<ExecutionReport, ExecError> {
        let ctx = self.ctx.clone();
        let rb = ctx.runbook.clone();
        if self.running > 0 {
            self.tasks.abort_all();
            let reason = self.stop.as_ref().map(|s| s.1.clone());
            for idx in 0..self.states.len() {
                if self.states[idx] == State::Running {
                    self.settle(idx, StepStatus::Cancelled, None, reason.clone())?;
                }
            }
        }
        let (status, reason) = match self.stop.take() {
            Some((status, reason)) => (status, Some(reason)),
            None => {
                let failed: Vec<&str> = rb
                    .steps
                    .iter()
                    .zip(&self.states)
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
            for idx in 0..self.states.len() {
                if matches!(self.states[idx], State::Pending { .. }) && !rb.steps[idx].compensation
                {
                    self.settle(
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
            &self.states,
            status,
            reason,
            started.elapsed().as_millis() as u64,
        ))
    }
}

/// Which steps are ready: counts each step's unfinished dependencies, so finding the
/// next ready step costs O(1) instead of a scan of the whole runbook.
struct Sched {
    waiting: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    ready: std::collections::VecDeque<usize>,
}

impl Sched {
    fn new(rb: &Runbook, states: &[State]) -> Sched {
        let n = rb.steps.len();
        let mut dependents = vec![Vec::new(); n];
        let mut waiting = vec![0; n];
        for (i, s) in rb.steps.iter().enumerate() {
            for &d in &s.needs {
                dependents[d].push(i);
                if !matches!(states[d], State::Done(..)) {
                    waiting[i] += 1;
                }
            }
        }
        let ready = (0..n)
            .filter(|&i| {
                waiting[i] == 0
                    && !rb.steps[i].compensation
                    && matches!(states[i], State::Pending { .. })
            })
            .collect();
        Sched {
            waiting,
            dependents,
            ready,
        }
    }

    /// Step `idx` finished: release the steps that were waiting only for it.
    fn done(&mut self, idx: usize) {
        for &d in &self.dependents[idx] {
            self.waiting[d] = self.waiting[d].saturating_sub(1);
            if self.waiting[d] == 0 {
                self.ready.push_back(d);
            }
        }
    }
}

/// Approvals recorded in the journal, with the plan hash each approved.
fn approved_steps(ctx: &RunCtx) -> Result<Vec<(usize, Option<String>)>, StoreError> {
    let id = ctx.id();
    Ok(ctx
        .store
        .events(&id)?
        .iter()
        .filter(|e| e.kind == EventKind::Approved)
        .filter_map(|e| {
            let idx = e.step.as_deref().and_then(|s| ctx.runbook.step_index(s))?;
            let hash = e
                .output
                .as_ref()
                .and_then(|o| o["plan_hash"].as_str())
                .map(str::to_string);
            Some((idx, hash))
        })
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
        if pure {
            // Nothing to recover for a pure step (re-running it is harmless), so its
            // start is shown but not journaled; its outcome is.
            ctx.announce(
                Some(&step.id),
                EventKind::Started,
                attempt,
                Some(plan.summary.clone()),
                Some(input.clone()),
            );
        } else {
            journal(
                EventKind::Started,
                Some(plan.summary.clone()),
                Some(input.clone()),
            )?;
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
