//! `vigil detect` / `vigil forecast` as a user runs them.

use std::io::Write;
use std::process::Command;

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

/// Runs `cmd`, which must succeed (else its stderr is the failure), and returns its stdout.
fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn csv(rows: &[String]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(f, "timestamp,value").expect("write");
    for r in rows {
        writeln!(f, "{r}").expect("write");
    }
    f
}

#[test]
fn nab_output_has_one_row_per_input_row_with_timestamps_echoed() {
    let rows: Vec<String> = (0..400)
        .map(|i| {
            let v = if i == 350 {
                500.0
            } else {
                10.0 + (i % 7) as f64
            };
            format!("2014-02-14 {:02}:{:02}:00,{v}", (i / 60) % 24, i % 60)
        })
        .collect();
    // Keep timestamps increasing: 400 minutes from midnight.
    let f = csv(&rows);
    let text = stdout_of(
        vigil()
            .args(["detect", "--output", "nab", "--input"])
            .arg(f.path()),
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "timestamp,value,anomaly_score");
    assert_eq!(lines.len(), rows.len() + 1);
    for (line, row) in lines[1..].iter().zip(&rows) {
        let ts = row.split(',').next().expect("ts");
        assert!(line.starts_with(ts), "{line} vs {row}");
        let score: f64 = line
            .rsplit(',')
            .next()
            .expect("score")
            .parse()
            .expect("number");
        assert!((0.0..=1.0).contains(&score));
    }
    let spike: f64 = lines[351]
        .rsplit(',')
        .next()
        .expect("score")
        .parse()
        .expect("number");
    assert!(spike > 0.5, "{}", lines[351]);
}

/// `--print-config` shows every field of the method's configuration, and feeding that back
/// through `--model-config` is the same detector: identical scores on a series.
#[test]
fn printed_config_round_trips_through_model_config() {
    let printed = stdout_of(vigil().args(["detect", "--model", "ensemble", "--print-config"]));
    let config: serde_json::Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(config["method"], "ensemble");
    assert!(config["robust"]["window"].is_u64(), "{printed}");
    assert!(config["weights"]["context"].is_f64(), "{printed}");

    let rows: Vec<String> = (0..600)
        .map(|i| {
            let v = if i == 500 {
                90.0
            } else {
                10.0 + ((i * 7) % 11) as f64
            };
            format!("{},{v}", 1_400_000_000 + i * 300)
        })
        .collect();
    let f = csv(&rows);
    let score = |extra: &[&str]| {
        stdout_of(
            vigil()
                .args(["detect", "--output", "nab", "--input"])
                .arg(f.path())
                .args(extra),
        )
    };
    let by_name = score(&["--model", "ensemble"]);
    assert_eq!(by_name.lines().count(), rows.len() + 1);
    assert_eq!(by_name, score(&["--model-config", &printed]));
}

#[test]
fn bad_input_exits_2_with_file_and_line() {
    let f = csv(&["1,2".to_string(), "2,oops".to_string()]);
    let out = vigil()
        .args(["detect", "--input"])
        .arg(f.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3", f.path().display())), "{err}");
    let out = vigil()
        .args(["detect", "--model", "magic", "--input"])
        .arg(f.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown anomaly method"));
    let out = vigil()
        .args(["detect", "--input", "/nonexistent/file.csv"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn forecast_reports_time_to_exhaustion() {
    let rows: Vec<String> = (0..24 * 14)
        .map(|i| format!("{},{}", 1_700_000_000 + i * 3600, 50.0 + 0.1 * i as f64))
        .collect();
    let f = csv(&rows);
    let text = stdout_of(
        vigil()
            .args(["forecast", "--horizon", "7d", "--limit", "90", "--input"])
            .arg(f.path()),
    );
    assert!(text.contains("limit 90 reached in"), "{text}");
    let out = vigil()
        .args(["forecast", "--horizon", "soon", "--input"])
        .arg(f.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}
