//! The home of Rhai: `${{ }}` expressions (and, later, escalation policies).
//! Nothing outside this module names `rhai`.

pub mod decide;
pub mod expr;
