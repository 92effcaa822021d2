//! `vigil graph`

use super::Global;
use anyhow::Result;
use std::process::ExitCode;
use vigil_bundle::graph::{self, Dag, NodeLabel};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dot,
    Mermaid,
}

pub fn run(g: &Global, which: &str, format: Format) -> Result<ExitCode> {
    let (_, rb, _) = super::load_runbook(g, which)?;
    let needs: Vec<Vec<usize>> = rb.steps.iter().map(|s| s.needs.clone()).collect();
    let labels: Vec<NodeLabel> = rb
        .steps
        .iter()
        .map(|s| NodeLabel {
            id: s.id.clone(),
            detail: if s.compensation {
                format!("{} (compensation)", s.uses)
            } else {
                s.uses.clone()
            },
        })
        .collect();
    if g.json() {
        let dag = Dag::build(&needs).map_err(|_| super::invalid("the runbook has a cycle"))?;
        let (_, critical) = dag.critical_path(|i| {
            rb.steps[i]
                .timeout
                .map_or(1, |t| t.as_std().as_millis() as u64)
        });
        let names = |v: &[usize]| {
            v.iter()
                .map(|&i| rb.steps[i].id.clone())
                .collect::<Vec<_>>()
        };
        let levels: Vec<Vec<String>> = dag.levels().iter().map(|l| names(l)).collect();
        println!(
            "{}",
            serde_json::json!({ "runbook": rb.name, "levels": levels, "critical_path": names(&critical) })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let text = match format {
        Format::Dot => graph::to_dot(&rb.name, &labels, &needs),
        Format::Mermaid => graph::to_mermaid(&labels, &needs),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
