//! Reading `timestamp,value` CSV (NAB's format, or unix seconds) with errors that say
//! which line is wrong and how to fix it.

use chrono::NaiveDateTime;

/// One input row; `raw_timestamp` is kept verbatim so output can echo it exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line number in the file.
    pub line: usize,
    pub raw_timestamp: String,
    /// Unix seconds (UTC for calendar timestamps).
    pub t: i64,
    pub value: f64,
}

/// A CSV that cannot be read, with the line and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("line 1: the file is empty; expected a header `timestamp,value`")]
    Empty,
    #[error("line 1: expected the header `timestamp,value`, found {found:?}")]
    BadHeader { found: String },
    #[error("line {line}: expected 2 columns `timestamp,value`, found {found}")]
    WrongColumns { line: usize, found: usize },
    #[error("line {line}: timestamp {text:?} is neither `YYYY-MM-DD HH:MM:SS` nor unix seconds")]
    BadTimestamp { line: usize, text: String },
    #[error("line {line}: value {text:?} is not a finite number")]
    BadValue { line: usize, text: String },
    #[error(
        "line {line}: timestamp {text:?} is not after the previous row's; sort the file by time and drop duplicates"
    )]
    NotIncreasing { line: usize, text: String },
    #[error("no data rows after the header; need at least one `timestamp,value` row")]
    NoRows,
}

impl InputError {
    /// The 1-based line the error is about, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Empty | Self::BadHeader { .. } => Some(1),
            Self::WrongColumns { line, .. }
            | Self::BadTimestamp { line, .. }
            | Self::BadValue { line, .. }
            | Self::NotIncreasing { line, .. } => Some(*line),
            Self::NoRows => None,
        }
    }
}

/// Parses a timestamp: `YYYY-MM-DD HH:MM:SS` (optionally with `T` and fractional seconds)
/// as UTC, or integer/fractional unix seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let s = text.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Some(secs);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs.abs() < 1e15).then_some(secs.floor() as i64);
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.fZ",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp());
        }
    }
    None
}

/// What to do with a row whose timestamp is not after the previous row's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOrder {
    /// Refuse it with [`InputError::NotIncreasing`].
    Strict,
    /// Keep it, in file order (real exports have daylight-saving repeats and duplicates;
    /// scoring every row in file order is what NAB expects). [`Parsed::out_of_order`] lists them.
    FileOrder,
}

/// A parsed file.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub rows: Vec<Row>,
    /// Lines whose timestamp was not after the previous row's (kept in [`TimeOrder::FileOrder`]).
    pub out_of_order: Vec<usize>,
}

/// Reads the whole CSV. Timestamps must strictly increase; blank lines are skipped.
pub fn parse_csv(text: &str) -> Result<Vec<Row>, InputError> {
    parse_csv_with(text, TimeOrder::Strict).map(|p| p.rows)
}

/// Reads the whole CSV with the given policy for timestamps that do not increase.
pub fn parse_csv_with(text: &str, order: TimeOrder) -> Result<Parsed, InputError> {
    let mut lines = text.lines().enumerate();
    let header = loop {
        match lines.next() {
            None => return Err(InputError::Empty),
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => break l,
        }
    };
    let cols: Vec<String> = header
        .split(',')
        .map(|c| c.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    if cols.len() != 2 || cols[1] != "value" || !(cols[0] == "timestamp" || cols[0] == "time") {
        return Err(InputError::BadHeader {
            found: header.to_string(),
        });
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut out_of_order = Vec::new();
    for (i, l) in lines {
        let line = i + 1;
        if l.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = l.split(',').collect();
        let [ts, val] = fields.as_slice() else {
            return Err(InputError::WrongColumns {
                line,
                found: fields.len(),
            });
        };
        let t = parse_timestamp(ts).ok_or_else(|| InputError::BadTimestamp {
            line,
            text: ts.to_string(),
        })?;
        let value = val
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| InputError::BadValue {
                line,
                text: val.to_string(),
            })?;
        if rows.last().is_some_and(|r| r.t >= t) {
            if order == TimeOrder::Strict {
                return Err(InputError::NotIncreasing {
                    line,
                    text: ts.to_string(),
                });
            }
            out_of_order.push(line);
        }
        rows.push(Row {
            line,
            raw_timestamp: ts.to_string(),
            t,
            value,
        });
    }
    if rows.is_empty() {
        return Err(InputError::NoRows);
    }
    Ok(Parsed { rows, out_of_order })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nab_and_unix_timestamps() {
        let rows =
            parse_csv("timestamp,value\n2014-02-14 14:30:00,0.132\n1392388500,2\n").expect("valid");
        assert_eq!(rows[0].t, 1_392_388_200);
        assert_eq!(rows[0].raw_timestamp, "2014-02-14 14:30:00");
        assert_eq!(rows[1].t, 1_392_388_500);
        assert_eq!(rows[1].line, 3);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_csv("timestamp,value\n1,2\n2,abc\n").expect_err("bad value");
        assert_eq!(e.line(), Some(3));
        assert!(e.to_string().contains("line 3"));
        assert!(matches!(
            parse_csv("a,b\n"),
            Err(InputError::BadHeader { .. })
        ));
        assert!(matches!(
            parse_csv("timestamp,value\n2,1\n1,1\n"),
            Err(InputError::NotIncreasing { line: 3, .. })
        ));
        assert!(matches!(
            parse_csv("timestamp,value\n1,NaN\n"),
            Err(InputError::BadValue { .. })
        ));
        assert_eq!(parse_csv(""), Err(InputError::Empty));
        assert_eq!(parse_csv("timestamp,value\n"), Err(InputError::NoRows));
        let lenient =
            parse_csv_with("timestamp,value\n2,1\n2,1\n1,1\n", TimeOrder::FileOrder).expect("kept");
        assert_eq!(lenient.rows.len(), 3);
        assert_eq!(lenient.out_of_order, vec![3, 4]);
    }
}
