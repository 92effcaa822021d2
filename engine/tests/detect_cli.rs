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

/// The operator's case the NAB tuning alone missed: a steady gauge drops to zero. The
/// default ensemble scores the first zero over 0.8, a stricter threshold than its
/// default 0.5, which nothing reached in the day before, and says why in words.
#[test]
fn an_outage_of_a_quiet_gauge_is_flagged_at_once_and_explained() {
    // Two days of 5-minute points, 40 ± 2 (a sum of uniforms from xorshift), then the
    // exporter's host goes down.
    let onset = 2 * 288;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let rows: Vec<String> = (0..onset + 6)
        .map(|i| {
            let noise = 2.0 * (uniform() + uniform() + uniform() - 1.5);
            let v = if i >= onset { 0.0 } else { 40.0 + noise };
            format!("{},{v}", 1_700_000_000 + 300 * i)
        })
        .collect();
    let f = csv(&rows);
    let text = stdout_of(
        vigil()
            .args(["detect", "--output", "json", "--input"])
            .arg(f.path()),
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let first_zero = &lines[onset];
    assert!(
        first_zero["score"].as_f64().expect("score") >= 0.8,
        "{first_zero}"
    );
    let why = first_zero["explanation"].as_str().expect("explanation");
    assert!(why.contains("below the recent range"), "{why}");
    // Before it, once the first day is learnt, nothing reached 0.8 (context learning,
    // new to the series, reaches about 0.52 on day two).
    let before = lines[288..onset]
        .iter()
        .map(|l| l["score"].as_f64().expect("score"))
        .fold(0.0, f64::max);
    assert!(
        before < 0.8,
        "a quiet gauge scored {before} before the outage"
    );
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
    // A malformed duration says what it is and how to write one, in one readable line.
    let out = vigil()
        .args([
            "detect",
            "--model-config",
            r#"{"method":"extreme","window":"8x"}"#,
            "--input",
        ])
        .arg(f.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid duration `8x`; write a whole number"),
        "{err}"
    );
    assert!(err.contains("`8w`") && !err.contains('\u{1}'), "{err}");
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

/// `vigil detect ... | head -1`: the reader leaves after one row. vigil stops writing
/// and exits 0, with no panic and no error (ripgrep and every Unix filter do the same).
#[test]
fn a_reader_that_leaves_early_is_no_error() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let rows: Vec<String> = (0..200_000)
        .map(|i| format!("{},{}", 1_400_000_000 + i * 60, 10 + i % 7))
        .collect();
    let input = csv(&rows);
    for output in ["json", "nab", "table"] {
        let mut child = vigil()
            .args(["detect", "--input"])
            .arg(input.path())
            .args(["--output", output])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut first)
            .expect("a first line");
        // The read end is dropped here, long before 200,000 rows are written.
        assert!(!first.is_empty(), "{output}: no first line");
        let out = child.wait_with_output().expect("exits");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{output}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{output}: {stderr}");
        assert!(!stderr.contains("error"), "{output}: {stderr}");
    }
}
