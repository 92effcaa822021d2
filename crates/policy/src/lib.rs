//! The home of Rhai: `${{ }}` expressions in runbooks and the escalation policies
//! that decide what happens to an incident. No other crate names `rhai`.
//!
//! - [`expr`]: the sandboxed expression engine with its compiled-AST cache;
//! - [`decide`]: loading policy files and asking them for a decision;
//! - [`docs`]: the documents a policy reads beside its script.

pub mod decide;
pub mod docs;
pub mod expr;
