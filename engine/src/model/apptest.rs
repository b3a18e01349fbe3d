//! App tests (`tests/<name>.yaml`) and demo data (`data/<name>.yaml`).
//!
//! An app test is a scenario: given records, when users take steps, expect
//! fields, states, notifications or errors. `trellis test` runs them.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Filter, Label};

/// Field name → value, as in the REST API.
pub type Values = serde_json::Map<String, serde_json::Value>;

/// A scenario.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppTest {
    /// What the scenario shows.
    pub label: Label,
    /// The date the scenario runs on (`$today`), so date rules are repeatable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub today: Option<String>,
    /// The user accounts of the scenario, by name.
    #[serde(default)]
    pub users: IndexMap<String, TestUser>,
    /// Records that exist before the steps (created as admin, rules applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<GivenRecord>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// A user account of a scenario.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestUser {
    /// The name people read (default: the account's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The user's roles.
    pub roles: Vec<String>,
    /// The user's department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The user's manager (another user of the scenario).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// Values of the declared `user_attributes` (`supplier: $s1`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: Values,
}

/// A record that exists before the steps run.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GivenRecord {
    /// The entity (`customer` or `crm.customer`).
    pub entity: String,
    /// A name for the record, used as `$name` in later values and steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The field values.
    pub values: Values,
}

/// One step: exactly one of `create`, `update`, `delete`, `action`, `run_alert`, `run_job`, `list`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The user who takes the step.
    #[serde(rename = "as")]
    pub actor: String,
    /// Create a record of this entity with `values`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<String>,
    /// Update the record `$key` with `values`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<String>,
    /// Delete the record `$key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<String>,
    /// Take this workflow or entity action on `record`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The record an `action` applies to (`$key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Run this alert now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_alert: Option<String>,
    /// Run this job now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_job: Option<String>,
    /// List records of this entity (with `filter`) as the user sees them; with
    /// `key`, the first of them (by id) is named for later steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    /// The filter of a `list` step; its values may name records (`$key`) and,
    /// in `user` fields, scenario users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Field values for `create`, `update` and `action`.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub values: Values,
    /// The comment of an `action`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// A name for the record a `create` step created or a `list` step listed
    /// first, used as `$key` later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What must hold after the step (default: it succeeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

/// The expected outcome of a step.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The step fails with this error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ExpectError>,
    /// Field values of the record after the step.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: Values,
    /// The record's workflow state after the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// For `list` and `run_alert`: how many records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Exactly the users notified by the step; `[]` means nobody, and
    /// leaving it out checks nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<Vec<String>>,
    /// Records of other entities created by the step: entity → how many.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub created: IndexMap<String, u64>,
    /// Warnings of the step's save: each text must be part of the message of
    /// some warning; `[]` means no warning, and leaving it out checks nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

/// An expected error.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectError {
    /// The error code (`required`, `unique`, `guard`, `forbidden`, `not_found`, `conflict`, `validation`).
    pub code: String,
    /// The field the error belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Text the message contains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

/// Demo data, loaded by `trellis serve --demo`: the records of one entity, or
/// the user accounts the records name.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// The entity of `records`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The records; a `_key` names a record for links from other records (`$key`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Values>,
    /// Demo user accounts by login name, named in `user` fields as `$name`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub accounts: IndexMap<String, TestUser>,
}
