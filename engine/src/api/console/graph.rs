//! A runbook's step graph as an SVG drawn on the server, layered by level (the
//! bundle's [`Dag`]), each node coloured by its step's state as the journal tells it.
//! The same drawing shows an incident's services and what they depend on.

use super::html::esc;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use vigil_bundle::graph::Dag;
use vigil_exec::record::{Event, EventKind, ExecStatus};

/// One step as the console shows it.
#[derive(Clone, Debug, Serialize)]
pub struct StepView {
    pub id: String,
    #[serde(skip)]
    pub uses: String,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped`, `awaiting_approval`,
    /// `in_doubt`, `cancelled`, `rejected` or `not_run`: the node's colour.
    pub state: &'static str,
    /// What the node says (`approved`, `compensated`, `attempt 2`, …).
    pub label: String,
    #[serde(skip)]
    pub attempts: u32,
    #[serde(skip)]
    pub first_ms: Option<i64>,
    #[serde(skip)]
    pub last_ms: Option<i64>,
    /// The rendered input (journaled when an impure step starts).
    #[serde(skip)]
    pub input: Option<Value>,
    #[serde(skip)]
    pub output: Option<Value>,
    #[serde(skip)]
    pub detail: Option<String>,
}

/// Each step's state from the journal. A pure step is journaled only when it ends,
/// so while the execution runs, a step whose dependencies all succeeded and that has
/// no entry yet is shown running; once it has ended, such a step did not run.
pub fn step_states(
    steps: &[(String, String, Vec<usize>)],
    status: ExecStatus,
    events: &[Event],
) -> Vec<StepView> {
    let mut views: Vec<StepView> = steps
        .iter()
        .map(|(id, uses, _)| StepView {
            id: id.clone(),
            uses: uses.clone(),
            state: "pending",
            label: "pending".into(),
            attempts: 0,
            first_ms: None,
            last_ms: None,
            input: None,
            output: None,
            detail: None,
        })
        .collect();
    let mut seen = vec![false; steps.len()];
    for ev in events {
        let Some(i) = ev
            .step
            .as_deref()
            .and_then(|s| steps.iter().position(|(id, _, _)| id == s))
        else {
            continue;
        };
        let v = &mut views[i];
        seen[i] = true;
        if ev.kind == EventKind::Started {
            v.first_ms.get_or_insert(ev.ts_ms);
        }
        v.last_ms = Some(ev.ts_ms);
        v.attempts = v.attempts.max(ev.attempt);
        if ev.detail.is_some() {
            v.detail = ev.detail.clone();
        }
        let (state, label): (&'static str, &str) = match ev.kind {
            EventKind::Queued => ("pending", "queued"),
            EventKind::Started => {
                v.input = ev.output.clone();
                ("running", "running")
            }
            EventKind::Retrying => ("running", "retrying"),
            EventKind::Succeeded => {
                v.output = ev.output.clone();
                ("succeeded", "succeeded")
            }
            EventKind::Compensated => {
                v.output = ev.output.clone();
                ("succeeded", "compensated")
            }
            EventKind::Failed => ("failed", "failed"),
            EventKind::Skipped => ("skipped", "skipped"),
            EventKind::AwaitingApproval => {
                v.output = ev.output.clone();
                ("awaiting_approval", "awaiting approval")
            }
            EventKind::Approved => ("running", "approved"),
            EventKind::Rejected => ("rejected", "rejected"),
            EventKind::Cancelled => ("cancelled", "cancelled"),
            EventKind::InDoubt => ("in_doubt", "in doubt"),
            EventKind::ExecutionStarted
            | EventKind::ExecutionResumed
            | EventKind::ExecutionFinished => continue,
        };
        v.state = state;
        v.label = if v.attempts > 1 && state == "running" {
            format!("{label} (attempt {})", v.attempts)
        } else {
            label.to_string()
        };
    }
    for (i, (_, _, needs)) in steps.iter().enumerate() {
        if seen[i] {
            continue;
        }
        let ready = needs
            .iter()
            .all(|&n| views.get(n).is_some_and(|d| d.state == "succeeded"));
        let (state, label) = match status {
            ExecStatus::Running if ready => ("running", "running"),
            ExecStatus::Running | ExecStatus::AwaitingApproval => ("pending", "pending"),
            _ => ("not_run", "not run"),
        };
        views[i].state = state;
        views[i].label = label.into();
    }
    views
}

/// What a node shows.
#[derive(Debug)]
pub struct Node<'a> {
    pub id: &'a str,
    /// The smaller second line (a step's `uses`).
    pub sub: &'a str,
    pub state: &'a str,
    pub label: &'a str,
    /// Extra classes (`root`).
    pub class: &'a str,
    /// Where the node links to, if anywhere.
    pub href: Option<String>,
}

const W: usize = 176;
const H: usize = 54;
const GAP_X: usize = 56;
const GAP_Y: usize = 16;
const PAD: usize = 8;

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The graph as an SVG: columns by level (a step's longest chain of `needs`), edges
/// from each dependency to its dependent. `title` labels it for screen readers.
pub fn dag_svg(title: &str, nodes: &[Node<'_>], needs: &[Vec<usize>]) -> String {
    let levels = Dag::build(needs)
        .map(|d| d.levels())
        .unwrap_or_else(|_| vec![(0..nodes.len()).collect()]);
    let rows = levels.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let width = PAD * 2 + levels.len().max(1) * (W + GAP_X) - GAP_X;
    let height = PAD * 2 + rows * (H + GAP_Y) - GAP_Y;
    let mut at = vec![(0usize, 0usize); nodes.len()];
    for (l, level) in levels.iter().enumerate() {
        let offset = (rows - level.len()) * (H + GAP_Y) / 2;
        for (r, &i) in level.iter().enumerate() {
            if i < at.len() {
                at[i] = (PAD + l * (W + GAP_X), PAD + offset + r * (H + GAP_Y));
            }
        }
    }
    let mut s = String::with_capacity(512 + nodes.len() * 400);
    let _ = write!(
        s,
        "<svg class=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"group\" aria-label=\"{}\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#4b5563\"/></marker></defs>",
        esc(title)
    );
    for (i, deps) in needs.iter().enumerate() {
        for &d in deps {
            if d >= at.len() || i >= at.len() {
                continue;
            }
            let (x1, y1) = (at[d].0 + W, at[d].1 + H / 2);
            let (x2, y2) = (at[i].0, at[i].1 + H / 2);
            let mid = GAP_X / 2;
            let _ = write!(
                s,
                "<path class=\"edge\" marker-end=\"url(#arrow)\" d=\"M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}\"/>",
                x1 + mid,
                x2.saturating_sub(mid)
            );
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = at[i];
        let open = match &n.href {
            Some(h) => format!("<a href=\"{}\">", esc(h)),
            None => String::new(),
        };
        let close = if n.href.is_some() { "</a>" } else { "" };
        let _ = write!(
            s,
            "{open}<g class=\"node s-{} {}\" data-step=\"{}\" data-state=\"{}\" tabindex=\"0\" role=\"img\" aria-label=\"{}: {}\">\
             <title>{} — {}{}</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"6\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>\
             <text class=\"state\" x=\"{}\" y=\"{}\">{}</text></g>{close}",
            esc(n.state),
            esc(n.class),
            esc(n.id),
            esc(n.state),
            esc(n.id),
            esc(n.label),
            esc(n.id),
            esc(n.label),
            if n.sub.is_empty() {
                String::new()
            } else {
                format!(" ({})", esc(n.sub))
            },
            x + 10,
            y + 21,
            esc(&clip(n.id, 22)),
            x + 10,
            y + 40,
            esc(&clip(
                &if n.sub.is_empty() {
                    n.label.to_string()
                } else {
                    format!("{} · {}", n.label, n.sub)
                },
                28
            )),
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ev(seq: u64, step: &str, kind: EventKind) -> Event {
        let mut e = Event::at(seq as i64 * 1000, Some(step), kind, 1, None, None);
        e.seq = seq;
        e
    }

    fn steps() -> Vec<(String, String, Vec<usize>)> {
        vec![
            ("a".into(), "core/log".into(), vec![]),
            ("b".into(), "core/sleep".into(), vec![0]),
            ("c".into(), "core/log".into(), vec![1]),
            ("d".into(), "core/log".into(), vec![0]),
        ]
    }

    #[test]
    fn states_follow_the_journal_and_pure_steps_in_progress_show_running() {
        let events = vec![
            ev(1, "a", EventKind::Succeeded),
            ev(2, "d", EventKind::Started),
        ];
        let v = step_states(&steps(), ExecStatus::Running, &events);
        let st: Vec<&str> = v.iter().map(|s| s.state).collect();
        assert_eq!(st, ["succeeded", "running", "pending", "running"]);
        let events = vec![
            ev(1, "a", EventKind::Succeeded),
            ev(2, "b", EventKind::AwaitingApproval),
            ev(3, "d", EventKind::Failed),
        ];
        let v = step_states(&steps(), ExecStatus::AwaitingApproval, &events);
        let st: Vec<&str> = v.iter().map(|s| s.state).collect();
        assert_eq!(st, ["succeeded", "awaiting_approval", "pending", "failed"]);
        let events = vec![
            ev(1, "a", EventKind::Succeeded),
            ev(2, "b", EventKind::InDoubt),
        ];
        let v = step_states(&steps(), ExecStatus::InDoubt, &events);
        let st: Vec<&str> = v.iter().map(|s| s.state).collect();
        assert_eq!(st, ["succeeded", "in_doubt", "not_run", "not_run"]);
    }

    #[test]
    fn the_graph_is_layered_by_level_with_an_edge_per_need() {
        let s = steps();
        let v = step_states(&s, ExecStatus::Running, &[]);
        let nodes: Vec<Node<'_>> = v
            .iter()
            .map(|v| Node {
                id: &v.id,
                sub: &v.uses,
                state: v.state,
                label: &v.label,
                class: "",
                href: None,
            })
            .collect();
        let needs: Vec<Vec<usize>> = s.iter().map(|x| x.2.clone()).collect();
        let svg = dag_svg("steps <of> x", &nodes, &needs);
        assert_eq!(svg.matches("class=\"edge\"").count(), 3);
        assert_eq!(svg.matches("<g class=\"node").count(), 4);
        assert!(svg.contains("aria-label=\"steps &lt;of&gt; x\""));
        // `a` is in the first column, `b` and `d` in the second, `c` in the third.
        assert!(svg.contains(&format!("<rect x=\"{PAD}\"")));
        assert!(svg.contains(&format!("<rect x=\"{}\"", PAD + 2 * (W + GAP_X))));
        assert!(!svg.contains("style="), "the CSP allows no inline style");
    }
}
