//! Validating a stream of points before it reaches a method.
//!
//! Methods tolerate anything (they skip non-finite values), but a caller that wants bad
//! input reported puts a [`SeriesGuard`] in front: it rejects non-finite values and
//! timestamps that do not increase, with the index of the offending point.

use crate::anomaly::{AnomalyMethod, Score};

/// Why a point was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeriesError {
    #[error("point {index}: value {value} is not a finite number")]
    NonFinite { index: usize, value: f64 },
    #[error("point {index}: timestamp {t} repeats the previous timestamp")]
    DuplicateTimestamp { index: usize, t: i64 },
    #[error(
        "point {index}: timestamp {t} is earlier than the previous timestamp {previous}; sort the input by time"
    )]
    OutOfOrder { index: usize, t: i64, previous: i64 },
    #[error("series too short: {got} points, need at least {needed}")]
    TooShort { got: usize, needed: usize },
}

/// Checks points one at a time: finite values, strictly increasing timestamps.
#[derive(Debug, Default, Clone)]
pub struct SeriesGuard {
    previous: Option<i64>,
    index: usize,
}

impl SeriesGuard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts or refuses the next point. A refused point does not advance the guard's
    /// notion of "previous timestamp", so the stream can continue after it.
    pub fn check(&mut self, t: i64, x: f64) -> Result<(), SeriesError> {
        let index = self.index;
        self.index += 1;
        if !x.is_finite() {
            return Err(SeriesError::NonFinite { index, value: x });
        }
        match self.previous {
            Some(p) if t == p => return Err(SeriesError::DuplicateTimestamp { index, t }),
            Some(p) if t < p => {
                return Err(SeriesError::OutOfOrder {
                    index,
                    t,
                    previous: p,
                });
            }
            _ => {}
        }
        self.previous = Some(t);
        Ok(())
    }

    /// Checks the point, then scores it with `method`.
    pub fn score(
        &mut self,
        method: &mut dyn AnomalyMethod,
        t: i64,
        x: f64,
    ) -> Result<Score, SeriesError> {
        self.check(t, x)?;
        Ok(method.update(t, x))
    }
}

/// Checks a whole series: every point valid and at least `min_len` of them.
pub fn validate(points: &[(i64, f64)], min_len: usize) -> Result<(), SeriesError> {
    if points.len() < min_len {
        return Err(SeriesError::TooShort {
            got: points.len(),
            needed: min_len,
        });
    }
    let mut guard = SeriesGuard::new();
    points.iter().try_for_each(|&(t, x)| guard.check(t, x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_points_with_their_index() {
        let mut g = SeriesGuard::new();
        assert!(g.check(10, 1.0).is_ok());
        assert_eq!(
            g.check(10, 1.0),
            Err(SeriesError::DuplicateTimestamp { index: 1, t: 10 })
        );
        assert_eq!(
            g.check(5, 1.0),
            Err(SeriesError::OutOfOrder {
                index: 2,
                t: 5,
                previous: 10
            })
        );
        assert!(matches!(
            g.check(20, f64::NAN),
            Err(SeriesError::NonFinite { index: 3, .. })
        ));
        assert!(g.check(20, 2.0).is_ok());
        assert_eq!(
            validate(&[(1, 1.0)], 2),
            Err(SeriesError::TooShort { got: 1, needed: 2 })
        );
    }
}
