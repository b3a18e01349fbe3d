//! The model language: the typed form of every YAML file an app is made of.
//!
//! These types are the single source of truth for the language. `trellis schema`
//! generates `schemas/*.schema.json` from them, the loader validates every file
//! against those schemas before deserializing it, and the checker resolves the
//! references between them. Doc comments here become editor hover text.

mod access;
mod app;
mod apptest;
mod automation;
mod connector;
mod dashboard;
mod entity;
mod label;
mod workflow;

pub use access::{FieldAccess, Operation, Permission, Role, RolesFile};
pub use app::{AppManifest, MenuItem};
pub use apptest::{AppTest, DataFile, Expect, ExpectError, GivenRecord, Step, TestUser};
pub use automation::{Alert, Channel, Job, Recipient};
pub use connector::{
    BasicAuth, BearerAuth, Connector, ConnectorAuth, ConnectorOperation, HeaderAuth, HttpMethod,
    Push,
};
pub use dashboard::{Dashboard, DashboardFilter, Widget, WidgetKind};
pub use entity::{
    Entity, Field, FieldType, Form, Index, Numbering, OnDelete, OptionSpec, Rule, RuleEvent,
    RuleLevel, Section, SelectOption, Tab, Tree, UniqueKey, View, ViewKind,
};
pub use label::{Color, Label, Translations};
pub use workflow::{
    Action, Approval, CreateAccount, CreateRecord, Due, Effect, Guard, LineMapping, Notify,
    OneOrMany, State, UpdateLinked, Workflow,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A filter in the declarative filter language, compiled to SQL by the runtime.
///
/// Keys are field names (or `and`, `or`, `not`); a value is either a literal
/// (equality) or a map of operators: `eq`, `ne`, `lt`, `lte`, `gt`, `gte`, `in`,
/// `not_in`, `contains`, `starts_with`, `ends_with`, `between`, `is_null`.
/// Values may use `$user.<attribute>`, `$today`, `$now`, and relative dates
/// such as `$today-30d` or `$now+2h`.
///
/// ```yaml
/// {status: {in: [open, late]}, owner: $user.id, due: {lt: $today}}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Filter(pub serde_json::Map<String, serde_json::Value>);

/// A literal value, or a Rhai expression when the text starts with `=`
/// (`=qty * price`), or a variable (`$today`, `$now`, `$user.id`).
pub type ValueExpr = serde_json::Value;
