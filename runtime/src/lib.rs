//! The Trellis runtime: runs checked apps against a real SQL database.
//!
//! A checked model becomes a [`store::Layout`] of typed tables ([`deploy`]
//! plans and applies the change in one transaction); records are written
//! through one pipeline ([`write`]) and read ([`read`]) under the caller's
//! [`Access`], which [`permission`] derives from the apps' roles; [`serve`]
//! puts all of it behind the REST API.
//!
//! **Invariant:** the runtime never parses YAML; it accepts only a
//! [`trellis_engine::CheckedModel`].

pub mod account;
pub mod apptest;
pub mod catalog;
pub mod clock;
pub mod connect;
pub mod demo;
pub mod deploy;
pub mod hooks;
pub mod notify;
pub mod oplog;
pub mod permission;
pub mod read;
pub mod record;
pub mod schedule;
pub mod serve;
pub mod services;
pub mod session;
pub mod store;
pub mod workflow;
pub mod write;

pub use catalog::Catalog;
pub use clock::Clock;
pub use deploy::{DeployError, SchemaPlan, deploy, deploy_model, plan, plan_model};
pub use read::{Access, ListQuery, Page, Paging, RecordReader, Total};
pub use record::{Actor, FieldError, Record, RecordError, Saved};
pub use store::{Dialect, Layout, Store, StoreError};
pub use write::RecordWriter;
