//! Command-line glue (clap + anyhow + printing); the work is in the library.

pub mod plugin;
