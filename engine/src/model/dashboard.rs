//! Dashboards (`dashboards/<name>.yaml`): KPI cards, charts and tables over entities.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Filter, Label};

/// A page of widgets with shared filters.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// The dashboard's title.
    pub label: Label,
    /// Roles that may open it (default: everyone with read access to its entities).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Filters at the top of the page, applied to every widget over an entity with that field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<DashboardFilter>,
    /// The widgets, in reading order.
    pub widgets: Vec<Widget>,
}

/// A filter shown at the top of a dashboard.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardFilter {
    /// The field filtered on (a select, link, user, date or datetime field).
    pub field: String,
    /// The filter's label (default: the field's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
}

/// What a widget draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WidgetKind {
    /// One number.
    Kpi,
    /// Bars per group.
    Bar,
    /// A line over ordered groups (dates).
    Line,
    /// Slices per group.
    Pie,
    /// Stages of a funnel, in the group field's order.
    Funnel,
    /// A table of groups and measures, or of records.
    Table,
}

/// One KPI card, chart or table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Widget {
    /// The widget's name, unique in the dashboard.
    pub name: String,
    /// The widget's title.
    pub label: Label,
    /// What it draws.
    pub kind: WidgetKind,
    /// The entity measured.
    pub entity: String,
    /// What is measured: `count`, or `sum:`, `avg:`, `min:`, `max:`, `count_distinct:` a
    /// field, or `percent` (the share of records matching `percent_of`).
    #[serde(default = "count")]
    pub measure: String,
    /// For `percent`: the records counted against all records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_of: Option<Filter>,
    /// Up to two grouping fields; date fields take a bucket: `created_at:month`
    /// (`day`, `week`, `month`, `quarter`, `year`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Only records matching this filter are measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// For record tables: the columns shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Sort: `value`, `-value` or a group field (`-` for descending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// The most groups or rows shown (top N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Clicking a group filters the other widgets of the dashboard by it (linkage).
    #[serde(default)]
    pub linked: bool,
    /// Width in twelfths of the page (1 to 12, default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 12))]
    pub width: Option<u8>,
}

fn count() -> String {
    "count".to_owned()
}
