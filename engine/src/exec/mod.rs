//! The executor: walks a runbook's DAG, runs steps through [`action::Action`]s, and
//! journals every transition before the next side effect.

pub mod action;
pub mod core;
