pub mod de;
pub mod diag;
pub mod span;
pub mod suggest;
pub mod yaml;
