//! Data-driven diagnostics tests: every file in `fixtures/invalid/` is a broken
//! resource whose `# expect: LINE:COL message | hint` lines say exactly what
//! `vigil validate` must report. Run through the built binary, as a user would.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Expect {
    line: u64,
    col: u64,
    message: String,
    hint: String,
}

fn expectations(text: &str) -> Vec<Expect> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|e| {
            let (pos, rest) = e
                .split_once(' ')
                .expect("expect line: `L:C message | hint`");
            let (line, col) = pos.split_once(':').expect("L:C");
            let (message, hint) = rest.split_once(" | ").unwrap_or((rest, ""));
            Expect {
                line: line.parse().unwrap(),
                col: col.parse().unwrap(),
                message: message.into(),
                hint: hint.into(),
            }
        })
        .collect()
}

#[test]
fn every_fixture_reports_exactly_its_expected_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 15,
        "the corpus should cover every error kind"
    );
    let mut failures = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = expectations(&text);
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["validate", "--output", "json"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "{} panicked: {stderr}",
            file.display()
        );
        assert_eq!(out.status.code(), Some(2), "{}: exit code", file.display());
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let diags = report["diagnostics"].as_array().unwrap();
        let errors: Vec<&Value> = diags.iter().filter(|d| d["severity"] == "error").collect();
        for e in &expected {
            let found = errors.iter().any(|d| {
                d["line"] == e.line
                    && d["col"] == e.col
                    && d["message"].as_str().unwrap_or("").contains(&e.message)
                    && d["hint"].as_str().unwrap_or("").contains(&e.hint)
            });
            if !found {
                failures.push(format!(
                    "{}: expected {}:{} `{}` (hint `{}`), got:\n{}",
                    file.file_name().unwrap().to_string_lossy(),
                    e.line,
                    e.col,
                    e.message,
                    e.hint,
                    serde_json::to_string_pretty(&errors).unwrap()
                ));
            }
        }
        if errors.len() != expected.len() {
            failures.push(format!(
                "{}: {} errors reported, {} expected: {}",
                file.display(),
                errors.len(),
                expected.len(),
                serde_json::to_string_pretty(&errors).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_default_bundle_is_valid_and_human_output_points_at_the_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ok = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("validate")
        .arg(root.join("runbooks"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("5 runbook(s)"));

    let bad = root.join("engine/tests/fixtures/invalid/unknown-key.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["validate", "--color", "never"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("unknown-key.yaml:9:5"), "{text}");
    assert!(text.contains("9 |     neds: [a]"), "{text}");
    assert!(text.contains("hint: did you mean `needs`?"), "{text}");
}

/// A copy of the default bundle (`runbooks/`) in `dir`, as a newcomer's checkout has
/// it; `edit` changes its `vigil.yaml`.
fn default_bundle_in(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    let to = dir.join("runbooks");
    copy(&common::workspace_root().join("runbooks"), &to);
    let config = to.join("vigil.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, edit(text)).unwrap();
    to
}

/// `vigil validate runbooks --output json` in `dir`: (exit code, errors, warnings).
fn validate_json(dir: &Path) -> (Option<i32>, Vec<Value>, Vec<Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(dir)
        .args(["validate", "runbooks", "--output", "json"])
        .env_remove("VIGIL_CONFIG")
        .env_remove("VIGIL_STORE")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let diags = report["diagnostics"].as_array().unwrap().clone();
    let (errors, warnings) = diags.into_iter().partition(|d| d["severity"] == "error");
    (out.status.code(), errors, warnings)
}

/// (line, col) of the first occurrence of `needle` in `text`, 1-based.
fn position(text: &str, needle: &str) -> (u64, u64) {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the config"));
    (i as u64 + 1, line.find(needle).unwrap() as u64 + 1)
}

/// What the default bundle has that rests on plugins: its steps that use a plugin
/// action, and its detectors.
fn plugin_steps_and_detectors() -> (usize, usize) {
    let root = common::workspace_root().join("runbooks");
    let steps = std::fs::read_dir(root.join("runbooks"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|t| {
            t.lines()
                .filter(|l| l.trim_start().starts_with("uses:") && !l.contains("core/"))
                .count()
        })
        .sum();
    let detectors = std::fs::read_dir(root.join("detectors")).unwrap().count();
    (steps, detectors)
}

fn diag_at(d: &Value) -> (u64, u64, &str, &str) {
    (
        d["line"].as_u64().unwrap(),
        d["col"].as_u64().unwrap(),
        d["message"].as_str().unwrap(),
        d["hint"].as_str().unwrap_or(""),
    )
}

/// Before `make plugins`, validating the default bundle says once where plugins were
/// looked for and how to get them, at the line naming the directory — not "no plugin
/// named `sim` (loaded: )" with no place, and not one error per step and detector.
#[test]
fn before_make_plugins_one_error_says_where_plugins_were_looked_for_and_how_to_build_them() {
    let tmp = tempfile::tempdir().unwrap();
    default_bundle_in(tmp.path(), |t| t);
    let config = std::fs::read_to_string(tmp.path().join("runbooks/vigil.yaml")).unwrap();
    let (line, col) = position(&config, "[../target/plugins]");
    let (steps, detectors) = plugin_steps_and_detectors();
    let (code, errors, warnings) = validate_json(tmp.path());
    assert_eq!(code, Some(2));
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["file"], "runbooks/vigil.yaml");
    assert_eq!(
        diag_at(&errors[0]),
        (
            line,
            col,
            "no plugins found in target/plugins (it does not exist)",
            format!(
                "build the bundled plugins with `make plugins` (they go to target/plugins), \
                 or list a directory of .wasm plugins under `plugins.dirs` in vigil.yaml; \
                 until then the sources sim and http, {steps} plugin steps and {detectors} \
                 detectors are not checked"
            )
            .as_str()
        )
    );

    // As a person reads it: where, the line, what to do.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(tmp.path())
        .args(["validate", "runbooks", "--color", "never"])
        .env_remove("VIGIL_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("--> runbooks/vigil.yaml:{line}:{col}")),
        "{text}"
    );
    assert!(text.contains("dirs: [../target/plugins]"), "{text}");
    assert!(
        text.contains("hint: build the bundled plugins with `make plugins`"),
        "{text}"
    );
    assert!(text.contains("✗ 1 error(s)"), "{text}");

    // A command that needs the plugins says the same, with the place of the source.
    let (line, col) = position(&config, "- name: sim");
    let col = col + "- name: ".len() as u64;
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(tmp.path())
        .args(["demo", "--color", "never", "--timeout", "1s"])
        .env("VIGIL_STORE", tmp.path().join("store"))
        .env_remove("VIGIL_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!(
            "error: runbooks/vigil.yaml:{line}:{col}: source `sim`: no plugin named `sim` in \
             target/plugins (it does not exist); build the bundled plugins with `make plugins`"
        )),
        "{text}"
    );
}

/// One typo in `vigil.yaml` is one error, with a suggestion — not one more per plugin
/// action of the bundle. What the typo spoils is left out and the rest is read: a typo
/// elsewhere leaves every action checked; a typo that loses the plugins says, in one
/// note, that what needs them was not checked.
#[test]
fn one_typo_in_vigil_yaml_is_one_error_with_a_suggestion() {
    let dir = common::plugin_dir();
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let plugins = dir.display().to_string();
    let with_plugins = move |t: String| t.replace("[../target/plugins]", &format!("[{plugins:?}]"));
    let (steps, detectors) = plugin_steps_and_detectors();

    // `api: { listn: … }`: the plugins load, every action is checked, one error.
    let tmp = tempfile::tempdir().unwrap();
    let w = with_plugins.clone();
    default_bundle_in(tmp.path(), move |t| w(t).replace("  listen:", "  listn:"));
    let config = std::fs::read_to_string(tmp.path().join("runbooks/vigil.yaml")).unwrap();
    let (line, col) = position(&config, "listn:");
    let (code, errors, warnings) = validate_json(tmp.path());
    assert_eq!(code, Some(2));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        diag_at(&errors[0]),
        (line, col, "unknown key `listn`", "did you mean `listen`?")
    );
    assert!(warnings.is_empty(), "{warnings:#?}");

    // `pluginz:`: the plugin dirs are lost with it; one error, and one note instead of
    // an "unknown action" per step and a "not a connector" per detector.
    let tmp = tempfile::tempdir().unwrap();
    let w = with_plugins.clone();
    default_bundle_in(tmp.path(), move |t| {
        w(t).replace("\nplugins:", "\npluginz:")
    });
    let config = std::fs::read_to_string(tmp.path().join("runbooks/vigil.yaml")).unwrap();
    let (line, col) = position(&config, "pluginz:");
    let (code, errors, warnings) = validate_json(tmp.path());
    assert_eq!(code, Some(2));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        diag_at(&errors[0]),
        (
            line,
            col,
            "unknown key `pluginz`",
            "did you mean `plugins`?"
        )
    );
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(
        diag_at(&warnings[0]),
        (
            line,
            col,
            format!(
                "the sources sim and http, {steps} plugin steps and {detectors} detectors \
                 were not checked because vigil.yaml is invalid"
            )
            .as_str(),
            "the plugins they need may be in what the error above left out; \
             fix vigil.yaml and validate again"
        )
    );

    // A source naming no plugin found: one error where it is named, with the plugins
    // found; its steps and detectors are not reported again.
    let tmp = tempfile::tempdir().unwrap();
    default_bundle_in(tmp.path(), move |t| {
        with_plugins(t).replace("  - name: sim\n", "  - name: simm\n")
    });
    let config = std::fs::read_to_string(tmp.path().join("runbooks/vigil.yaml")).unwrap();
    let (line, col) = position(&config, "simm");
    let (code, errors, warnings) = validate_json(tmp.path());
    assert_eq!(code, Some(2));
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let (l, c, message, hint) = diag_at(&errors[0]);
    assert_eq!((l, c), (line, col));
    assert!(
        message.starts_with("source `simm`: no plugin named `simm` in ")
            && message.ends_with(&format!(" ({} plugins)", found.len())),
        "{message}"
    );
    assert_eq!(
        hint,
        format!("did you mean `sim`? (found: {})", found.join(", "))
    );
}
