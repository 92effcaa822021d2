//! The executor: starts, resumes and approves executions.
//!
//! One driver task owns the execution's state; each running step is a task that
//! reports back. Every transition is appended to the journal, and the journal is
//! made durable before any step with side effects starts (pure steps need no flush).

use super::context::{RunCtx, State, report};
use super::render::{Unknowns, render};
use super::walk::{Sched, Walk, approved_steps};
use crate::record::ExecutionStore;
use crate::record::{Event, EventKind, ExecStatus, ExecutionRecord};
pub use crate::report::{ExecError, ExecutionReport, Observer, StepReport, StepStatus};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
use vigil_bundle::model::Runbook;
use vigil_core::action::ActionCatalog;
use vigil_core::audit::AuditAction;
use vigil_core::now_ms;
use vigil_policy::expr::{Bindings, ExprEngine};
use vigil_store::{Store, StoreError};

/// A request to run a runbook.
#[derive(Clone, Debug)]
pub struct Request {
    pub runbook: Arc<Runbook>,
    /// The runbook file's text, journaled so a resume runs the same definition.
    pub source: String,
    pub params: Map<String, Value>,
    pub incident: Value,
    /// Who asked: `manual` (a person at the CLI or API) or `automatic` (a trigger).
    pub origin: crate::record::Origin,
    /// A policy asked for approval: the execution waits before acting.
    pub gate: bool,
    /// How long an approval may take; past it, the wait ends in the policy's
    /// fallback (page) instead of running.
    pub approval_timeout: Option<Duration>,
    /// A policy let this run without a human on a dry-run showing this much: a step
    /// whose plan goes past it waits for approval.
    pub ceiling: Option<vigil_core::action::Ceiling>,
    /// Who may approve its steps (a policy's `approvers`); empty: anyone allowed to.
    pub approvers: Vec<String>,
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
            origin: crate::record::Origin::Manual,
            gate: false,
            approval_timeout: None,
            ceiling: None,
            approvers: Vec::new(),
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
        format!("{:016x}", vigil_core::fingerprint::fnv1a64(text.as_bytes()))
    }
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
    /// Executions being driven in this process, each with the switch that cancels it
    /// (carrying who cancelled), shared by every clone.
    running: InFlight,
}

/// The executions being driven, shared by every executor given the same one: a
/// reloaded daemon's executor sees (and can cancel) what the previous one still runs,
/// and does not resume it a second time.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<HashMap<String, watch::Sender<Option<String>>>>>);

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("InFlight").field(&self.ids()).finish()
    }
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Option<String>>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ids being driven now.
    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// What [`Executor::cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cancelled {
    /// The execution was running here: it stops at once (steps in flight are
    /// cancelled and journaled as such).
    Signalled,
    /// The execution was waiting (for approval, or after a crash or an in-doubt
    /// step): it is now cancelled for good.
    Ended,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
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
            running: InFlight::default(),
        }
    }

    /// Shares an expression engine (and its compiled-expression cache) with others.
    pub fn with_exprs(mut self, exprs: Arc<ExprEngine>) -> Self {
        self.exprs = exprs;
        self
    }

    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Tells `also` every transition too, after the observer already set.
    pub fn also_observed_by(mut self, also: Observer) -> Self {
        self.observer = Some(match self.observer.take() {
            Some(first) => Arc::new(move |rec, ev| {
                first(rec, ev);
                also(rec, ev);
            }),
            None => also,
        });
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

    /// Shares the record of executions in flight with other executors (see [`InFlight`]).
    pub fn with_in_flight(mut self, in_flight: InFlight) -> Self {
        self.running = in_flight;
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
        let (ctx, states) = self.begin(req)?;
        self.drive(ctx, states, Map::new()).await
    }

    /// Starts a new execution on a task of its own and answers with its id at once,
    /// once it is journaled; the task runs it to the end (or to a pause).
    pub fn start_detached(
        &self,
        req: Request,
    ) -> Result<
        (
            String,
            tokio::task::JoinHandle<Result<ExecutionReport, ExecError>>,
        ),
        ExecError,
    > {
        let (ctx, states) = self.begin(req)?;
        let id = ctx.id.to_string();
        let me = self.clone();
        Ok((
            id,
            tokio::spawn(async move { me.drive(ctx, states, Map::new()).await }),
        ))
    }

    /// Records a new execution and journals its start.
    fn begin(&self, req: Request) -> Result<(Arc<RunCtx>, Vec<State>), ExecError> {
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
            origin: req.origin,
            gate: req.gate,
            approval_timeout_ms: req.approval_timeout.map(|d| d.as_millis() as i64),
            ceiling: req.ceiling,
            approvers: req.approvers.clone(),
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
        Ok((Arc::new(ctx), states))
    }

    /// Cancels an unfinished execution as `who` (audited as `user:<who>`): one running
    /// in this process stops at once; one that waits (for approval, or after a crash)
    /// ends cancelled. A finished one is left as it is.
    pub async fn cancel(&self, id: &str, who: &str) -> Result<Cancelled, ExecError> {
        let mut rec = self.store.execution(id)?;
        if rec.status.is_final() {
            return Err(ExecError::Finished(id.into(), rec.status.as_str()));
        }
        let reason = format!("cancelled by user:{who}");
        self.store.audit(crate::record::AuditEntry::new(
            format!("user:{who}"),
            AuditAction::Cancel,
            id,
            rec.status.as_str(),
        ))?;
        let signalled = self
            .running
            .lock()
            .get(id)
            .is_some_and(|tx| tx.send(Some(reason.clone())).is_ok());
        if signalled {
            self.store.sync().await?;
            return Ok(Cancelled::Signalled);
        }
        self.store.append(
            id,
            Event::at(
                now_ms(),
                None,
                EventKind::ExecutionFinished,
                0,
                Some(format!("cancelled: {reason}")),
                None,
            ),
        )?;
        rec.status = ExecStatus::Cancelled;
        rec.reason = Some(reason);
        rec.updated_ms = now_ms();
        self.store.put_execution(&rec)?;
        self.store.sync().await?;
        Ok(Cancelled::Ended)
    }

    /// Ids of the executions being driven in this process now.
    pub fn in_flight(&self) -> Vec<String> {
        self.running.ids()
    }

    fn ctx(&self, record: ExecutionRecord, runbook: Arc<Runbook>) -> RunCtx {
        let pure = runbook_purity(&self.catalog, &runbook);
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
            pure,
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Approves (and continues) or rejects (and fails) the step an execution waits on,
    /// as the person named `who` (audited as `user:<who>`). When a policy named
    /// approvers, only they may decide; anyone else is refused and audited. The
    /// approval binds to the plan hash the execution is waiting with; with
    /// `expected_hash`, an approval of a different plan is refused.
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        who: &str,
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
        let actor = format!("user:{who}");
        if !rec.approvers.is_empty() && !rec.approvers.iter().any(|a| a == who) {
            let verb = if approve { "approve" } else { "reject" };
            self.store.audit(
                crate::record::AuditEntry::new(
                    &actor,
                    AuditAction::Refuse,
                    id,
                    format!("may not {verb}: not among the policy's approvers"),
                )
                .with_inputs(json!({ "approvers": rec.approvers, "comment": comment })),
            )?;
            self.store.sync().await?;
            return Err(ExecError::NotAnApprover {
                id: id.into(),
                who: who.into(),
                approvers: rec.approvers,
            });
        }
        let actor = actor.as_str();
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
        if let (Some(expected), Some(current)) = (expected_hash, &hash)
            && expected != current
        {
            return Err(ExecError::StalePlan {
                id: id.into(),
                expected: expected.into(),
                current: current.clone(),
            });
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
        let ev = Event::at(
            now_ms(),
            step.as_deref(),
            kind,
            0,
            Some(detail.clone()),
            Some(json!({ "plan_hash": hash })),
        );
        self.store.append(id, ev)?;
        let entry = crate::record::AuditEntry::new(
            actor,
            if approve {
                AuditAction::Approve
            } else {
                AuditAction::Reject
            },
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
        if deadline.is_none_or(|d| now <= d) {
            return Ok(false);
        }
        let waited =
            vigil_core::duration::Duration::from_millis((now - waiting.ts_ms).max(0) as u64);
        let reason = format!(
            "no approval within the policy's timeout (waited {waited}); falling back to paging a human"
        );
        let ev = Event::at(
            now,
            waiting.step.as_deref(),
            EventKind::Rejected,
            0,
            Some(reason.clone()),
            None,
        );
        self.store.append(&rec.id, ev)?;
        let mut rec = rec.clone();
        rec.status = ExecStatus::Failed;
        rec.reason = Some(reason.clone());
        rec.updated_ms = now;
        self.store.put_execution(&rec)?;
        self.store.audit(crate::record::AuditEntry::new(
            "guardrail:approval-timeout",
            AuditAction::Page,
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
        let bundle = vigil_bundle::Bundle::from_source(
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
        // Without a sender (no `with_cancel`), `changed()` is ready at once, forever:
        // stop listening instead of spinning.
        let mut cancellable = cancel.has_changed().is_ok();
        let (mine_tx, mut mine) = watch::channel(None::<String>);
        let _registered = Registered::new(&self.running, &ctx.id, mine_tx);
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
                changed = cancel.changed(), if cancellable => match changed {
                    Ok(()) if *cancel.borrow() => {
                        walk.stop = Some((ExecStatus::Cancelled, "cancelled by the operator".into()));
                        break;
                    }
                    Ok(()) => {}
                    Err(_) => cancellable = false,
                },
                Ok(()) = mine.changed() => {
                    let who = mine.borrow().clone();
                    if let Some(reason) = who {
                        walk.stop = Some((ExecStatus::Cancelled, reason));
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

/// An execution's entry among the running ones, removed when its drive ends.
struct Registered<'a> {
    running: &'a InFlight,
    id: String,
}

impl<'a> Registered<'a> {
    fn new(running: &'a InFlight, id: &str, tx: watch::Sender<Option<String>>) -> Self {
        running.lock().insert(id.to_string(), tx);
        Registered {
            running,
            id: id.to_string(),
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.running.lock().remove(&self.id);
    }
}

/// Whether each step's action says it is pure (an unknown action counts as not
/// pure); a step's plan can still take that back (`RunCtx::mark_impure`).
fn runbook_purity(
    catalog: &Arc<dyn ActionCatalog>,
    runbook: &Runbook,
) -> Vec<std::sync::atomic::AtomicBool> {
    runbook
        .steps
        .iter()
        .map(|s| {
            catalog
                .resolve(&s.uses)
                .is_some_and(|a| a.info().pure)
                .into()
        })
        .collect()
}
