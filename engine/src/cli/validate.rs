//! `vigil validate`

use super::{Global, invalid};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
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
    check_plugins(g, &mut bundle)?;
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

/// Checks what rests on the plugins: the sources, every step's action, every
/// detector's source. One cause is reported once: when the config could not be read
/// in full, what it may have left out is not checked (one note says so); when no
/// plugin was found at all, one error says where they were looked for and how to
/// build them, instead of one per source, step and detector.
fn check_plugins(g: &Global, bundle: &mut Bundle) -> Result<()> {
    let load = super::plugin::load_plugins(g, bundle, &|_| {})?;
    let config_incomplete = bundle.config_incomplete.clone();
    let none_found = load.none_found();
    let searched = load.searched();
    let failed: BTreeSet<&str> = load.failed.iter().map(|f| f.name.as_str()).collect();
    // Whether a source's absence may be the fault of something reported elsewhere.
    let not_its_fault =
        |source: &str| config_incomplete.is_some() || none_found || failed.contains(source);

    let mut found = Vec::new();
    let mut unchecked = Unchecked::default();
    for f in &load.failed {
        if config_incomplete.is_some() || (none_found && f.missing_plugin.is_some()) {
            unchecked.sources.push(f.name.clone());
            continue;
        }
        let (file, span) = load.source_at(bundle, f.index);
        let (message, hint) = load.explain(f);
        found.push(Diagnostic::error(&file, span, message).with_hint(hint));
    }

    let mut catalog = Catalog::with_core();
    let plugins = load.catalog.map(Arc::new);
    if let Some(p) = &plugins {
        catalog.add_catalog(p.clone());
    }
    let uses: BTreeMap<(&Path, u32, u32), &str> = bundle
        .runbooks
        .iter()
        .flat_map(|rb| {
            rb.steps.iter().map(|s| {
                let at = s.uses_span.start;
                ((rb.file.as_path(), at.line, at.col), s.uses.as_str())
            })
        })
        .collect();
    for d in vigil_exec::check_actions(bundle, &catalog) {
        let source = d
            .message
            .starts_with("unknown action `")
            .then(|| uses.get(&(d.file.as_path(), d.line, d.col)))
            .flatten()
            .and_then(|u| u.split_once('/'))
            .map(|(source, _)| source)
            .filter(|s| *s != "core");
        match source {
            Some(s) if not_its_fault(s) => unchecked.steps += 1,
            _ => found.push(d),
        }
    }

    // Every detector's source must be a configured connector (when there is a config
    // to configure it in).
    if bundle.config.file.is_some() {
        for d in &bundle.detectors {
            if plugins
                .as_ref()
                .and_then(|p| p.connector(&d.source))
                .is_some()
            {
                continue;
            }
            if not_its_fault(&d.source) {
                unchecked.detectors += 1;
                continue;
            }
            found.push(
                Diagnostic::error(&d.file, d.source_span, format!("detector `{}` reads from `{}`, which is not a configured connector", d.name, d.source))
                    .with_hint("add it under `sources:` in vigil.yaml (e.g. `- name: sim`) and list its plugin dir under `plugins.dirs`"),
            );
        }
    }

    if !unchecked.is_empty() {
        if let Some((file, span)) = &config_incomplete {
            let name = file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            found.push(
                Diagnostic::warning(
                    file,
                    *span,
                    format!("{} were not checked because {name} is invalid", unchecked.what()),
                )
                .with_hint(format!(
                    "the plugins they need may be in what the error above left out; fix {name} and validate again"
                )),
            );
        } else if none_found {
            let file = bundle.config.file.clone().unwrap_or_default();
            let span = bundle
                .plugin_dirs_span
                .or_else(|| bundle.config.sources.as_ref().map(|n| n.span))
                .unwrap_or_default();
            found.push(
                Diagnostic::error(&file, span, format!("no plugins found in {searched}"))
                    .with_hint(format!(
                        "{}; until then {} are not checked",
                        super::plugin::HOW_TO_GET_PLUGINS,
                        unchecked.what()
                    )),
            );
        }
    }
    bundle.diagnostics.append(&mut found);
    Ok(())
}

/// What was not checked, because what it needs could not be loaded for a reason
/// reported once elsewhere.
#[derive(Default)]
struct Unchecked {
    sources: Vec<String>,
    steps: usize,
    detectors: usize,
}

impl Unchecked {
    fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.steps == 0 && self.detectors == 0
    }

    /// `the sources sim and http, 8 steps and 4 detectors`.
    fn what(&self) -> String {
        let count = |n: usize, one: &str, many: &str| match n {
            0 => None,
            1 => Some(format!("1 {one}")),
            n => Some(format!("{n} {many}")),
        };
        let sources = match self.sources.as_slice() {
            [] => None,
            [one] => Some(format!("the source {one}")),
            [rest @ .., last] => Some(format!("the sources {} and {last}", rest.join(", "))),
        };
        let parts: Vec<String> = [
            sources,
            count(self.steps, "plugin step", "plugin steps"),
            count(self.detectors, "detector", "detectors"),
        ]
        .into_iter()
        .flatten()
        .collect();
        match parts.as_slice() {
            [] => String::new(),
            [one] => one.clone(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        }
    }
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
