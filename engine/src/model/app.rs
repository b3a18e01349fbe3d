//! The app manifest (`app.yaml`): name, labels, dependencies and menus.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Label;

/// The manifest of an app folder.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    /// The app's name: the first part of its API paths (`/api/v1/{app}/...`).
    pub name: String,
    /// What people read.
    pub label: Label,
    /// The app's version (`1.2.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What the app is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// Apps whose entities and roles this app uses (`crm`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends: Vec<String>,
    /// The app's menu.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub menu: Vec<MenuItem>,
}

/// A menu entry: a list view, a dashboard, or a group of entries.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuItem {
    /// The text (default: the entity's or dashboard's label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// Opens the list of this entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// With `entity`: which of its views.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    /// Opens this dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<String>,
    /// Only these roles see the entry (default: those who may read its target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Sub-entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<MenuItem>,
}
