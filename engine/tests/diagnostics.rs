//! Data-driven diagnostics tests: every file in `fixtures/invalid/` is a broken
//! resource whose `# expect: LINE:COL message | hint` lines say exactly what
//! `vigil validate` must report. Run through the built binary, as a user would.

use serde_json::Value;
use std::path::Path;
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
