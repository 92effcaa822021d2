//! One DAG walk: which steps are ready, running them (inline when they finish at
//! once, as tasks otherwise), their attempts, retries, timeouts and assertions,
//! `on_failure`, approvals, and settling the outcome.

use super::action::{ActionCall, ActionError};
use super::context::{RunCtx, State, report};
use super::executor::{ExecError, ExecutionReport, StepStatus};
use super::render::{Unknowns, render};
use crate::policy::expr::Bindings;
use crate::runbook::model::{Approval, OnFailure, Runbook, Step};
use crate::store::{EventKind, ExecStatus, StoreError, now_ms};
use serde_json::{Map, Value, json};
use std::future::Future as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

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
                if !ctx.pure[idx] {
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
    if ctx.pure[idx] && deferrable {
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
