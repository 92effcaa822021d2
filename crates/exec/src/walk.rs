//! One DAG walk: which steps are ready, running them (inline when they finish at
//! once, as tasks otherwise), their attempts, retries, timeouts and assertions,
//! `on_failure`, approvals, and settling the outcome.

use super::context::{RunCtx, State, report};
use super::render::{Unknowns, render};
use crate::record::ExecutionStore;
use crate::record::{EventKind, ExecStatus};
use crate::report::{ExecError, ExecutionReport, StepStatus};
use serde_json::{Map, Value, json};
use std::future::Future as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use vigil_bundle::model::{Approval, OnFailure, Runbook, Step};
use vigil_core::action::{Action, ActionCall, ActionError, ActionPlan};
use vigil_core::now_ms;
use vigil_policy::expr::Bindings;
use vigil_store::StoreError;

pub(super) type StepResult = Result<(Value, u32), (String, u32)>;

/// The mutable state of one DAG walk, owned by the driver.
pub(super) struct Walk {
    pub(super) ctx: Arc<RunCtx>,
    pub(super) states: Vec<State>,
    pub(super) outputs: Map<String, Value>,
    pub(super) sched: Sched,
    pub(super) tasks: JoinSet<(usize, StepResult)>,
    pub(super) running: usize,
    pub(super) limit: usize,
    /// Approvals recorded in the journal: step and the plan hash approved.
    pub(super) approvals: Vec<(usize, Option<String>)>,
    /// Why the execution stops early, once it does.
    pub(super) stop: Option<(ExecStatus, String)>,
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
    pub(super) async fn launch_ready(&mut self) -> Result<(), ExecError> {
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
            // A step that may need a human is planned here, once: the plan the
            // approval binds to is the plan that runs, and a plan that fails fails
            // the step instead of skipping its gate.
            let mut prepared = None;
            if self.may_need_approval(idx) {
                let bindings = ctx.bindings(idx, &self.outputs);
                let p = match prepare(&ctx, idx, &bindings).await {
                    Ok(p) => p,
                    Err(reason) => {
                        self.settle(idx, StepStatus::Failed, None, Some(reason.clone()))?;
                        self.on_failure(idx, &reason)?;
                        continue;
                    }
                };
                match self.gate(idx, &p)? {
                    Gate::Open(approved) => prepared = Some(Prepared { approved, ..p }),
                    Gate::Wait { why, hash } => {
                        let timeout = ctx.record.lock().ok().and_then(|r| r.approval_timeout_ms);
                        let deadline = timeout.map(|t| now_ms() + t);
                        ctx.journal(
                            Some(&step.id),
                            EventKind::AwaitingApproval,
                            next_attempt,
                            Some(why.clone()),
                            Some(json!({ "plan_hash": hash, "deadline_ms": deadline })),
                        )?;
                        self.states[idx] =
                            State::Done(StepStatus::AwaitingApproval, None, Some(why.clone()));
                        self.stop = Some((ExecStatus::AwaitingApproval, why));
                        break;
                    }
                }
            }
            self.states[idx] = State::Running;
            self.spawn_or_finish(idx, next_attempt, prepared).await?;
        }
        Ok(())
    }

    /// Whether step `idx` could have to wait for a human: it says so itself, or a
    /// policy asked for approval of this execution.
    fn may_need_approval(&self, idx: usize) -> bool {
        let (gate, ceiling) = self
            .ctx
            .record
            .lock()
            .map(|r| (r.gate, r.ceiling.is_some()))
            .unwrap_or((true, true));
        gate || ceiling || self.ctx.runbook.steps[idx].approval == Approval::Required
    }

    /// Whether prepared step `idx` must wait for a human, and for which plan hash.
    /// An approval binds to that hash: if the plan changed since, the approval is
    /// void and the step waits again. Purity comes from the plan, not the claim.
    fn gate(&mut self, idx: usize, p: &Prepared) -> Result<Gate, ExecError> {
        let ctx = self.ctx.clone();
        let rb = &ctx.runbook;
        let step = &rb.steps[idx];
        let (gate, ceiling) = ctx
            .record
            .lock()
            .map(|r| (r.gate, r.ceiling))
            .unwrap_or((true, None));
        // A policy let this run on a dry-run; a plan that now goes past what it saw
        // needs a human, like a plan that changed after an approval.
        let past_ceiling = ceiling.and_then(|c| c.exceeded_by(&p.plan));
        let required = past_ceiling.is_some()
            || match step.approval {
                Approval::Required => true,
                Approval::Policy => gate,
                // The policy asked for approval but no step names `approval: policy`: one
                // approval, before the first step with side effects, covers the execution.
                Approval::None => {
                    gate && !ctx.is_pure(idx)
                        && !rb.steps.iter().any(|s| s.approval == Approval::Policy)
                        && self.approvals.is_empty()
                }
            };
        if !required {
            return Ok(Gate::Open(None));
        }
        let hash = p.plan.approval_hash(&p.input);
        let approved_here: Vec<&Option<String>> = self
            .approvals
            .iter()
            .filter(|(i, _)| *i == idx)
            .map(|(_, h)| h)
            .collect();
        // An approval without a hash approved no plan in particular: it opens nothing.
        if approved_here
            .iter()
            .any(|h| h.as_deref() == Some(hash.as_str()))
        {
            return Ok(Gate::Open(Some(hash)));
        }
        let why = if let (Some(past), true) = (&past_ceiling, approved_here.is_empty()) {
            format!(
                "step `{}` needs approval: {past}: `vigil executions approve {}`",
                step.id,
                ctx.id()
            )
        } else if approved_here.is_empty() {
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
        Ok(Gate::Wait { why, hash })
    }

    /// Runs a step. A step that completes on its first poll (pure actions such as
    /// `core/set`) is finished inline; only a step that must wait gets a task.
    async fn spawn_or_finish(
        &mut self,
        idx: usize,
        attempt: u32,
        prepared: Option<Prepared>,
    ) -> Result<(), ExecError> {
        let mut fut = Box::pin(run_step(
            self.ctx.clone(),
            idx,
            attempt,
            self.ctx.bindings(idx, &self.outputs),
            prepared,
        ));
        // The context lives only for this poll, so the walk's future stays `Send`.
        let first_poll = {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            fut.as_mut().poll(&mut cx)
        };
        match first_poll {
            std::task::Poll::Ready((idx, result)) => self.complete(idx, result).await,
            std::task::Poll::Pending => {
                self.running += 1;
                self.tasks.spawn(fut);
                Ok(())
            }
        }
    }

    /// A step finished all its attempts.
    pub(super) async fn complete(
        &mut self,
        idx: usize,
        result: StepResult,
    ) -> Result<(), ExecError> {
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
                if !ctx.is_pure(idx) {
                    ctx.store.sync().await?;
                }
            }
            Err((reason, _attempts)) => {
                self.settle(idx, StepStatus::Failed, None, Some(reason.clone()))?;
                if step.compensation {
                    // Replaces the "compensated by" the failure announced: it was not.
                    // A stop for another cause (cancelled, timed out) stands.
                    if matches!(self.stop, None | Some((ExecStatus::Failed, _))) {
                        self.stop = Some((
                            ExecStatus::Failed,
                            format!("compensation step `{}` failed: {reason}", step.id),
                        ));
                    }
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
                    self.tasks.spawn(run_step(
                        ctx.clone(),
                        c,
                        1,
                        ctx.bindings(c, &self.outputs),
                        None,
                    ));
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
    pub(super) async fn finish(mut self, started: Instant) -> Result<ExecutionReport, ExecError> {
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
        ctx.flush_pending()?;
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
pub(super) struct Sched {
    pub(super) waiting: Vec<usize>,
    pub(super) dependents: Vec<Vec<usize>>,
    pub(super) ready: std::collections::VecDeque<usize>,
}

impl Sched {
    pub(super) fn new(rb: &Runbook, states: &[State]) -> Sched {
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
pub(super) fn approved_steps(ctx: &RunCtx) -> Result<Vec<(usize, Option<String>)>, StoreError> {
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
    let deferrable = matches!(
        kind,
        EventKind::Succeeded | EventKind::Failed | EventKind::Skipped
    );
    if ctx.is_pure(idx) && deferrable {
        ctx.journal_deferred(&step.id, kind, reason.clone(), output.clone())?;
    } else {
        ctx.journal(Some(&step.id), kind, 0, reason.clone(), output.clone())?;
    }
    outputs.insert(
        step.id.clone(),
        json!({ "output": output.clone().unwrap_or(Value::Null), "status": status }),
    );
    states[idx] = State::Done(status, output, reason);
    Ok(())
}

/// Whether a step may run now, and under which approval.
enum Gate {
    /// Run, with the approval hash that opened the gate, if one had to.
    Open(Option<String>),
    /// Wait for a human to approve the plan with this hash.
    Wait { why: String, hash: String },
}

/// A step ready to run: its action, its rendered input and the one plan that every
/// attempt executes (the plan an approval, if any, was bound to).
pub(super) struct Prepared {
    action: Arc<dyn Action>,
    input: Value,
    plan: ActionPlan,
    /// The approval hash this plan opened its gate with; checked again before execute.
    approved: Option<String>,
}

/// Resolves, renders, validates and plans step `idx`. A plan that declares effects
/// makes the step impure from here on, whatever its action says of itself.
async fn prepare(ctx: &RunCtx, idx: usize, bindings: &Bindings) -> Result<Prepared, String> {
    let step = &ctx.runbook.steps[idx];
    let action = ctx
        .catalog
        .resolve(&step.uses)
        .ok_or_else(|| format!("unknown action `{}`", step.uses))?;
    let input = render(&step.with, &ctx.exprs, bindings, Unknowns::Error)
        .map_err(|e| format!("inputs: {e}"))?;
    action.validate(&input).map_err(|e| e.to_string())?;
    let plan = action
        .plan(&input)
        .await
        .map_err(|e| format!("plan: {e}"))?;
    if plan.declares_effects() {
        ctx.mark_impure(idx);
    }
    Ok(Prepared {
        action,
        input,
        plan,
        approved: None,
    })
}

/// Why a step that reached a task unplanned (a compensation, which runs while the
/// execution stops and has no gate of its own) may not run: it asked for a human,
/// or its plan goes past what a policy decided on. It fails instead of running.
fn needs_a_human(ctx: &RunCtx, step: &Step, plan: &ActionPlan) -> Option<String> {
    let (gate, ceiling) = ctx
        .record
        .lock()
        .map(|r| (r.gate, r.ceiling))
        .unwrap_or((true, None));
    let asked = match step.approval {
        Approval::Required => true,
        Approval::Policy => gate,
        Approval::None => false,
    };
    if asked {
        return Some(format!(
            "step `{}` requires approval, and a compensation cannot wait for one: not run",
            step.id
        ));
    }
    ceiling.and_then(|c| c.exceeded_by(plan)).map(|past| {
        format!(
            "step `{}` was not run: {past}, and a compensation cannot wait for approval",
            step.id
        )
    })
}

/// One step, through all its attempts. Returns the output, or the final error.
async fn run_step(
    ctx: Arc<RunCtx>,
    idx: usize,
    first_attempt: u32,
    bindings: Bindings,
    prepared: Option<Prepared>,
) -> (usize, Result<(Value, u32), (String, u32)>) {
    let result = run_attempts(&ctx, idx, first_attempt, &bindings, prepared).await;
    (idx, result)
}

async fn run_attempts(
    ctx: &RunCtx,
    idx: usize,
    first_attempt: u32,
    bindings: &Bindings,
    prepared: Option<Prepared>,
) -> Result<(Value, u32), (String, u32)> {
    let step = &ctx.runbook.steps[idx];
    let Prepared {
        action,
        input,
        plan,
        approved,
    } = match prepared {
        Some(p) => p,
        None => {
            let p = prepare(ctx, idx, bindings).await.map_err(|e| (e, 0))?;
            if let Some(why) = needs_a_human(ctx, step, &p.plan) {
                return Err((why, 0));
            }
            p
        }
    };
    // What runs is what was approved: the hash is checked at execution too.
    if let Some(hash) = &approved
        && plan.approval_hash(&input) != *hash
    {
        return Err((
            format!("the plan of `{}` is not the one approved ({hash})", step.id),
            0,
        ));
    }
    let pure = ctx.is_pure(idx);
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
            deadline: step.timeout.map(|t| Instant::now() + t.as_std()),
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
    vigil_core::duration::Duration(d).to_string()
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
