//! Roles and permissions (`roles.yaml`): what each role may do with each entity,
//! which records it sees, and which fields it may not see or change.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Field, Filter, Label};

/// The roles an app declares and the permissions it grants.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesFile {
    /// Attributes of user accounts that row filters can use as `$user.<name>`
    /// (`supplier: {type: link, target: supplier}` binds a portal account to its company).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub user_attributes: IndexMap<String, Field>,
    /// The roles, by name. Role names are shared by all apps; `admin` always exists.
    #[serde(default)]
    pub roles: IndexMap<String, Role>,
}

/// A role and what it may do.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// What people read.
    pub label: Label,
    /// A longer explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// Portal accounts of outside parties (suppliers, customers, forwarders).
    #[serde(default)]
    pub external: bool,
    /// Entity (`customer`, or `crm.customer` of another app) → what the role may do with it.
    #[serde(default)]
    pub permissions: IndexMap<String, Permission>,
}

/// What a role may do with one entity.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// The allowed operations.
    pub allow: Vec<Operation>,
    /// Only records matching this filter exist for the role (`{owner: $user.id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<Filter>,
    /// Fields the role may not see (`hidden`) or may not change (`read_only`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub fields: IndexMap<String, FieldAccess>,
}

/// An operation on records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Read,
    Update,
    Delete,
    Export,
    Import,
    Print,
}

/// A field restriction for a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldAccess {
    /// Never returned to the role.
    Hidden,
    /// Returned, but a write is refused.
    ReadOnly,
}
