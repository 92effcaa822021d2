//! Runbooks, detectors and the config as YAML resources: parsing with spans,
//! typed models, and validation into checked resources with diagnostics.

pub mod de;
pub mod load;
pub mod model;
pub mod template;
pub mod yaml;
pub use load::Bundle;
