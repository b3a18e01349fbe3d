//! The Trellis engine: the model language and everything that can be known
//! about an app without a database or a network.
//!
//! Data flows [`load`] (YAML → typed files, every value located) → [`check`]
//! (references, workflows, filters, scripts) → [`check::CheckedModel`], the
//! only form of a model the runtime accepts.

pub mod check;
pub mod diagnostic;
pub mod filter;
pub mod graph;
pub mod load;
pub mod model;
pub mod scaffold;
pub mod schema;
pub mod script;
pub mod source;

pub use check::{CheckReport, CheckedModel, check};
pub use diagnostic::{Code, Diagnostic, Diagnostics, Severity, Span};
