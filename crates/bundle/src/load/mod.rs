//! Loading a bundle (a directory or a single file) and checking it.
//!
//! Loading never stops at the first problem: every file is read, every document
//! and step decoded on its own, and every problem becomes a [`Diagnostic`].
//!
//! This file reads files into documents and dispatches them by kind; `check` holds
//! what every resource's check shares, and `config`, `detector` and `runbook` check
//! one kind each.

mod check;
mod config;
mod detector;
mod runbook;

pub use runbook::param_type_matches;

use super::de::{DeError, Spanned, from_node};
use super::model::*;
use super::template::{Template, file_pos};
use super::yaml::{Node, Value, parse_documents};
use crate::graph::{Cycle, Dag};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use vigil_core::diag::{self, Diagnostic};
use vigil_core::outcome::RunOutcome;
use vigil_core::span::Span;
use vigil_core::suggest;
use vigil_policy::expr::ExprEngine;

/// Everything loaded from a bundle, with the problems found.
#[derive(Debug, Default)]
pub struct Bundle {
    /// The bundle directory (where `vigil.yaml`, `runbooks/`, `policies/` live).
    pub root: Option<PathBuf>,
    pub config: Config,
    pub runbooks: Vec<Runbook>,
    pub detectors: Vec<Detector>,
    pub policies: Vec<PolicyFile>,
    /// The text of every file read, to render diagnostics with source lines.
    pub sources: BTreeMap<PathBuf, String>,
    pub diagnostics: Vec<Diagnostic>,
    /// How many files were read.
    pub files: usize,
    /// Where the config could not be read in full (its file, and where its first
    /// problem is): parts of it were left out after reporting why, so what rests on
    /// it (plugin dirs, sources) may be missing for that reason alone.
    pub config_incomplete: Option<(PathBuf, Span)>,
    /// Where the config writes `plugins.dirs` (else `plugins:`), to point at when no
    /// plugin is found there.
    pub plugin_dirs_span: Option<Span>,
}

impl Bundle {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn runbook(&self, name: &str) -> Option<&Runbook> {
        self.runbooks.iter().find(|r| r.name == name)
    }

    pub fn policy(&self, name: &str) -> Option<&PolicyFile> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// Loads a bundle directory, or a single resource file (finding its bundle root,
    /// if any, for policy references).
    pub fn load(path: &Path) -> io::Result<Bundle> {
        let mut bundle = Bundle::default();
        let exprs = ExprEngine::new();
        if path.is_dir() {
            bundle.root = Some(path.to_path_buf());
            bundle.load_policies(&path.join("policies"))?;
            for file in bundle_files(path)? {
                bundle.load_file(&file, &exprs)?;
            }
        } else {
            let root = find_root(path);
            if let Some(root) = &root {
                bundle.load_policies(&root.join("policies"))?;
            }
            bundle.root = root;
            bundle.load_file(path, &exprs)?;
        }
        bundle.check_policy_references();
        diag::sort(&mut bundle.diagnostics);
        Ok(bundle)
    }

    /// Loads resources from text (used by tests and the API).
    pub fn from_source(file: &Path, text: &str) -> Bundle {
        let mut bundle = Bundle::default();
        bundle.load_text(file, text.to_string(), &ExprEngine::new());
        diag::sort(&mut bundle.diagnostics);
        bundle
    }

    fn load_policies(&mut self, dir: &Path) -> io::Result<()> {
        if !dir.is_dir() {
            return Ok(());
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
            .collect();
        files.sort();
        for file in files {
            let Some(bytes) = read_capped(&file)? else {
                self.diagnostics.push(
                    Diagnostic::error(
                        &file,
                        Span::at(vigil_core::span::Pos { line: 1, col: 1 }),
                        format!(
                            "policy is larger than {} MiB; refusing to load it",
                            MAX_FILE_BYTES >> 20
                        ),
                    )
                    .with_hint("a policy is a short script: check that this is the file you meant"),
                );
                continue;
            };
            let source = String::from_utf8(bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.policies.push(PolicyFile { name, file, source });
        }
        Ok(())
    }

    fn load_file(&mut self, file: &Path, exprs: &ExprEngine) -> io::Result<()> {
        let Some(bytes) = read_capped(file)? else {
            self.diagnostics.push(
                Diagnostic::error(
                    file,
                    Span::at(vigil_core::span::Pos { line: 1, col: 1 }),
                    format!(
                        "file is larger than {} MiB; refusing to load it",
                        MAX_FILE_BYTES >> 20
                    ),
                )
                .with_hint("a bundle file is a few resources: split it, or check that this is the file you meant"),
            );
            return Ok(());
        };
        match String::from_utf8(bytes) {
            Ok(text) => self.load_text(file, text, exprs),
            Err(e) => {
                let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let text = String::from_utf8_lossy(valid);
                let line = text.lines().count().max(1) as u32;
                self.diagnostics.push(
                    Diagnostic::error(
                        file,
                        Span::at(vigil_core::span::Pos { line, col: 1 }),
                        "file is not valid UTF-8",
                    )
                    .with_hint("save the file as UTF-8"),
                );
            }
        }
        Ok(())
    }

    fn load_text(&mut self, file: &Path, text: String, exprs: &ExprEngine) {
        self.files += 1;
        let docs = match parse_documents(&text) {
            Ok(docs) => docs,
            Err(e) => {
                self.diagnostics.push(
                    Diagnostic::error(file, e.span, format!("YAML syntax error: {}", e.message))
                        .with_hint("check indentation and quoting around this position"),
                );
                self.sources.insert(file.to_path_buf(), text);
                return;
            }
        };
        for doc in &docs {
            if doc.value == Value::Null {
                continue;
            }
            let mut checker = Checker {
                file,
                diags: Vec::new(),
                exprs,
            };
            match doc_kind(doc) {
                Err(d) => checker.push(d.into_diag(file)),
                Ok(kind) => match kind.as_str() {
                    "Runbook" => {
                        if let Some(rb) = checker.runbook(doc) {
                            if let Some(prev) = self.runbooks.iter().find(|r| r.name == rb.name) {
                                let span = doc.get("name").map_or(doc.span, |n| n.span);
                                checker.push(
                                    Diagnostic::error(
                                        file,
                                        span,
                                        format!("duplicate runbook name `{}`", rb.name),
                                    )
                                    .with_hint(format!(
                                        "`{}` is already defined in {}",
                                        rb.name,
                                        prev.file.display()
                                    )),
                                );
                            } else {
                                self.runbooks.push(rb);
                            }
                        }
                    }
                    "Detector" => {
                        if let Some(d) = checker.detector(doc) {
                            self.detectors.push(d);
                        }
                    }
                    "Config" => {
                        let (config, left_out) = checker.config(doc);
                        if let Some(c) = config {
                            self.config = c;
                            let plugins = doc.get("plugins");
                            self.plugin_dirs_span = plugins
                                .and_then(|p| p.get("dirs"))
                                .or(plugins)
                                .map(|n| n.span);
                        }
                        if let Some(span) = left_out {
                            self.config_incomplete = Some((file.to_path_buf(), span));
                        }
                    }
                    other => {
                        let span = doc.get("kind").map_or(doc.span, |n| n.span);
                        checker.push(
                            Diagnostic::error(file, span, format!("unknown kind `{other}`"))
                                .with_hint(suggest::hint(other, KINDS)),
                        );
                    }
                },
            }
            self.diagnostics.append(&mut checker.diags);
        }
        self.sources.insert(file.to_path_buf(), text);
    }

    fn check_policy_references(&mut self) {
        let names: Vec<String> = self.policies.iter().map(|p| p.name.clone()).collect();
        for rb in &self.runbooks {
            let Some(policy) = &rb.policy else { continue };
            if self.root.is_none() || names.contains(policy) {
                continue;
            }
            let span = rb.policy_span;
            self.diagnostics.push(
                Diagnostic::error(
                    &rb.file,
                    span,
                    format!("policy `{policy}` not found in policies/"),
                )
                .with_hint(
                    match suggest::closest(policy, names.iter().map(String::as_str)) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!(
                            "create policies/{policy}.rhai with a `decide(incident, plan)` function"
                        ),
                    },
                ),
            );
        }
    }
}

/// The resource files of a bundle: `vigil.yaml`, `runbooks/`, `detectors/`, and any
/// other `*.yaml` at the top level.
fn bundle_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in [
        root.to_path_buf(),
        root.join("runbooks"),
        root.join("detectors"),
    ] {
        if !dir.is_dir() {
            continue;
        }
        let mut here: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        here.sort();
        files.extend(here);
    }
    Ok(files)
}

/// The largest bundle file (YAML or policy) read into memory. A bundle is a few
/// resources; a file past this is a mistake or an attack, and is refused unread.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The file's bytes, or `None` when it is larger than [`MAX_FILE_BYTES`]. Reads at most
/// one byte past the cap, whatever the file's metadata says (it may grow meanwhile).
fn read_capped(file: &Path) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(file)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= MAX_FILE_BYTES).then_some(bytes))
}

/// The bundle a file belongs to: the nearest ancestor directory with a `vigil.yaml`.
fn find_root(file: &Path) -> Option<PathBuf> {
    let mut dir = file.parent()?;
    for _ in 0..4 {
        let candidate = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if candidate.join("vigil.yaml").is_file() {
            return Some(candidate.to_path_buf());
        }
        dir = dir.parent()?;
    }
    None
}

/// A problem found before a file is known.
struct Problem {
    span: Span,
    message: String,
    hint: Option<String>,
}

impl Problem {
    fn into_diag(self, file: &Path) -> Diagnostic {
        Diagnostic::error(file, self.span, self.message).with_hint_opt(self.hint)
    }
}

fn doc_kind(doc: &Node) -> Result<String, Problem> {
    if doc.as_map().is_none() {
        return Err(Problem {
            span: doc.span,
            message: format!("expected a resource (a mapping), found {}", doc.type_name()),
            hint: Some("start the document with `apiVersion: vigil/v1` and `kind: Runbook`".into()),
        });
    }
    match doc.get("kind") {
        Some(k) => k.as_str().map(str::to_string).ok_or_else(|| Problem {
            span: k.span,
            message: format!("`kind` must be a string, found {}", k.type_name()),
            hint: Some(format!("one of {}", KINDS.join(", "))),
        }),
        None => Err(Problem {
            span: doc.span,
            message: "missing required key `kind`".into(),
            hint: Some(format!("add `kind: Runbook` (or {})", KINDS.join(", "))),
        }),
    }
}

/// Checks one document, collecting diagnostics.
struct Checker<'a> {
    file: &'a Path,
    diags: Vec<Diagnostic>,
    exprs: &'a ExprEngine,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references() {
        use super::runbook::references;
        let r = references(
            "steps.a.output.value > steps[\"b-c\"].x && my_steps.z",
            "steps",
        );
        assert_eq!(r, vec![("a".to_string(), 6), ("b-c".to_string(), 30)]);
    }

    #[test]
    fn a_typo_in_the_config_leaves_out_only_what_it_spoils() {
        let file = Path::new("/b/vigil.yaml");
        let text = "apiVersion: vigil/v1\nkind: Config\nplugins: { dirs: [p] }\n\
                    api: { listn: x }\nexecutor: { max_concurrency: lots }\npluginz: {}\n";
        let b = Bundle::from_source(file, text);
        let found: Vec<(u32, u32, &str, Option<&str>)> = b
            .diagnostics
            .iter()
            .map(|d| (d.line, d.col, d.message.as_str(), d.hint.as_deref()))
            .collect();
        assert_eq!(found.len(), 3, "{found:#?}");
        assert_eq!(
            found[0],
            (4, 8, "unknown key `listn`", Some("did you mean `listen`?"))
        );
        assert_eq!((found[1].0, found[1].1), (5, 30), "{found:#?}");
        assert_eq!(
            found[2],
            (
                6,
                1,
                "unknown key `pluginz`",
                Some("did you mean `plugins`?")
            )
        );
        // The rest is read: the plugin dirs above all.
        assert_eq!(b.config.file.as_deref(), Some(file));
        assert_eq!(b.config.plugin_dirs, vec![PathBuf::from("/b/p")]);
        let (at, span) = b.config_incomplete.expect("incomplete");
        assert_eq!(
            (at.as_path(), span.start.line, span.start.col),
            (file, 4, 8)
        );
        assert_eq!(b.plugin_dirs_span.map(|s| s.start.line), Some(3));
        // A config read in full is not marked.
        let ok = Bundle::from_source(file, "apiVersion: vigil/v1\nkind: Config\n");
        assert!(ok.diagnostics.is_empty() && ok.config_incomplete.is_none());
    }

    #[test]
    fn an_oversized_file_is_a_diagnostic_not_a_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let big = dir.path().join("big.yaml");
        // Sparse: the size is there, the disk is not used.
        std::fs::File::create(&big)
            .and_then(|f| f.set_len(MAX_FILE_BYTES + 1))
            .expect("big file");
        let bundle = Bundle::load(&big).expect("loads");
        assert!(bundle.has_errors());
        let d = &bundle.diagnostics[0];
        assert!(d.message.contains("larger than 16 MiB"), "{}", d.message);
        assert_eq!(read_capped(&big).expect("read"), None);
        // One byte less is read in full.
        std::fs::File::options()
            .write(true)
            .open(&big)
            .and_then(|f| f.set_len(MAX_FILE_BYTES))
            .expect("shrink");
        let bytes = read_capped(&big).expect("read").expect("under the cap");
        assert_eq!(bytes.len() as u64, MAX_FILE_BYTES);
    }
}
