//! Failure prediction.
