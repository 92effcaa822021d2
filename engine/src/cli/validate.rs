//! `vigil validate`

use super::{Global, invalid};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::ExitCode;
use vigil_bundle::Bundle;
use vigil_core::diag::{self, Diagnostic};
use vigil_exec::core::Catalog;

pub fn run(g: &Global, path: Option<&Path>) -> Result<ExitCode> {
    let target = match path {
        Some(p) => p.to_path_buf(),
        None => g.bundle_dir().ok_or_else(|| {
            invalid("no vigil.yaml here or in runbooks/; pass a file or directory to validate")
        })?,
    };
    if !target.exists() {
        return Err(invalid(format!("{} does not exist", target.display())));
    }
    let mut bundle =
        Bundle::load(&target).with_context(|| format!("reading {}", target.display()))?;
    let plugins = super::plugin::plugin_catalog(g, &bundle)?.map(std::sync::Arc::new);
    let mut catalog = Catalog::with_core();
    if let Some(p) = &plugins {
        catalog.add_catalog(p.clone());
    }
    let mut extra = vigil_exec::check_actions(&bundle, &catalog);
    bundle.diagnostics.append(&mut extra);
    // Every detector's source must be a configured connector (when there is a config
    // to configure it in).
    let detectors = if bundle.config.file.is_some() {
        bundle.detectors.clone()
    } else {
        Vec::new()
    };
    for d in &detectors {
        if plugins
            .as_ref()
            .and_then(|p| p.connector(&d.source))
            .is_none()
        {
            let span = d.source_span;
            bundle.diagnostics.push(
                Diagnostic::error(&d.file, span, format!("detector `{}` reads from `{}`, which is not a configured connector", d.name, d.source))
                    .with_hint("add it under `sources:` in vigil.yaml (e.g. `- name: sim`) and list its plugin dir under `plugins.dirs`"),
            );
        }
    }
    if let Err(errors) = vigil_policy::decide::PolicyEngine::load(&bundle.policies) {
        for e in errors {
            let pos = vigil_core::span::Pos {
                line: e.line as u32,
                col: e.col.max(1) as u32,
            };
            bundle.diagnostics.push(
                Diagnostic::error(&e.file, vigil_core::span::Span::at(pos), e.message)
                    .with_hint("policies are Rhai scripts defining `fn decide(incident, plan)`"),
            );
        }
    }
    diag::sort(&mut bundle.diagnostics);
    print_diagnostics(g, &bundle);
    let errors = bundle.diagnostics.iter().filter(|d| d.is_error()).count();
    if !g.json() {
        let p = super::Paint::new(g.color());
        if errors == 0 {
            println!(
                "{} {} file(s): {} runbook(s), {} detector(s), {} polic(ies)",
                p.green("✓ valid"),
                bundle.files,
                bundle.runbooks.len(),
                bundle.detectors.len(),
                bundle.policies.len()
            );
        } else {
            eprintln!(
                "{} {errors} error(s) in {} file(s)",
                p.red("✗"),
                bundle.files
            );
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

pub fn print_diagnostics(g: &Global, bundle: &Bundle) {
    if g.json() {
        let list: Vec<&Diagnostic> = bundle.diagnostics.iter().collect();
        let errors = list.iter().filter(|d| d.is_error()).count();
        println!(
            "{}",
            serde_json::json!({ "valid": errors == 0, "errors": errors, "diagnostics": list })
        );
        return;
    }
    for d in &bundle.diagnostics {
        let source = bundle.sources.get(&d.file).map(String::as_str);
        eprint!("{}", d.render(source, g.color()));
        eprintln!();
    }
}
