//! Entities (`entities/<name>.yaml`): fields, constraints, numbering, forms, list views, rules.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, Color, Filter, Label, ValueExpr};

/// One kind of business record, stored as one table. The file name is the entity's name.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    /// What people call one record of this entity.
    pub label: Label,
    /// A longer explanation shown in the designer and the API documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Label>,
    /// The field that names a record in links, titles and search results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The fields, in form order. Keys are field names (`^[a-z][a-z0-9_]*$`).
    pub fields: IndexMap<String, Field>,
    /// A numbering series that fills a text field on create (`SO-{yyyy}{mm}{dd}-{seq:4}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numbering: Option<Numbering>,
    /// Uniqueness rules over one or more fields, optionally only for records matching `when`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique: Vec<UniqueKey>,
    /// Extra indexes for frequent filters and sorts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<Index>,
    /// Makes the entity a category tree: children inherit the listed fields from their parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<Tree>,
    /// Fields searched by the quick-search box of every list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// The layout of the record form. Without it, fields are shown in declaration order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<Form>,
    /// Named list views (table, kanban, calendar).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub views: IndexMap<String, View>,
    /// Rhai rules: validations, computations and hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Buttons outside the workflow (share, assign, copy): same shape as a transition without `from`/`to`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

/// The type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// One line of text.
    Text,
    /// Several lines of text.
    LongText,
    /// A whole number.
    Integer,
    /// An exact decimal number (`precision`, `scale`).
    Decimal,
    /// An exact amount of money (`currency`, default scale 2).
    Money,
    /// A percentage, stored as a decimal (`12.5` means 12.5 %).
    Percent,
    /// Yes or no.
    Boolean,
    /// A calendar date (`2026-01-31`).
    Date,
    /// A point in time (`2026-01-31T09:30:00Z`).
    Datetime,
    /// One value from `options`.
    Select,
    /// Several values from `options` (tags).
    MultiSelect,
    /// A reference to a record of `target` (`customer` or `crm.customer`).
    Link,
    /// Line items: a child table whose columns are `fields`.
    Table,
    /// A platform user account.
    User,
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A web address.
    Url,
    /// One or more uploaded files.
    Attachment,
    /// Free-form JSON.
    Json,
}

/// A field: its type and what values it accepts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// The field type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// The field's label; defaults to the field name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// Help text shown under the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<Label>,
    /// A value must be given.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// A value must be given when the record matches this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_when: Option<Filter>,
    /// The initial value: a literal, `$today`, `$now`, `$user.id`, or `=expression`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ValueExpr>,
    /// The smallest accepted number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest accepted number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The fewest accepted characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    /// The most accepted characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// A regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The message shown when `pattern` does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_message: Option<Label>,
    /// People cannot edit the field (rules, numbering and workflows still can).
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// The field is read-only when the record matches this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_when: Option<Filter>,
    /// The field is shown only when the record matches this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_when: Option<Filter>,
    /// A Rhai expression computing the value on every save (`qty * price`,
    /// `lines.reduce(|sum, l| sum + l.amount, 0.0)`). Computed fields are read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed: Option<String>,
    /// No two records may hold the same value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
    /// Index the column for filters and sorts.
    #[serde(default, skip_serializing_if = "is_false")]
    pub index: bool,
    /// The choices of a `select` or `multi_select` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<SelectOption>>,
    /// The linked entity of a `link` field: `customer`, or `crm.customer` in another app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A `link`, `user` or `attachment` field holds several values.
    #[serde(default, skip_serializing_if = "is_false")]
    pub multiple: bool,
    /// What deleting the linked record does: `restrict` (default), `cascade` or `set_null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_delete: Option<OnDelete>,
    /// Limits the records a `link` field may choose (filter over the target entity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_filter: Option<Filter>,
    /// Total digits of a `decimal`, `money` or `percent` field (default 18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<u8>,
    /// Digits after the point (default 2 for money and percent, 4 for decimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u8>,
    /// The ISO currency of a `money` field (default `CNY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The columns of a `table` field (line items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<IndexMap<String, Field>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One choice of a select field: a bare value, or a value with a label and a colour.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SelectOption {
    /// The stored value, also used as the label.
    Value(String),
    /// The stored value with its label and colour.
    Full(OptionSpec),
}

/// A select option with its label and colour.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionSpec {
    /// The stored value: letters, digits, `_` and `-`.
    pub value: String,
    /// What people read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// The badge colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
}

impl SelectOption {
    /// The stored value.
    pub fn value(&self) -> &str {
        match self {
            SelectOption::Value(v) => v,
            SelectOption::Full(spec) => &spec.value,
        }
    }
}

/// What deleting a linked record does to the records that link to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    /// Refuse the delete while links exist.
    Restrict,
    /// Delete the linking records too.
    Cascade,
    /// Clear the link.
    SetNull,
}

/// A numbering series: a pattern with date parts and a counter.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Numbering {
    /// The text field that receives the number.
    pub field: String,
    /// The pattern: literal text with `{yyyy}`, `{yy}`, `{mm}`, `{dd}` and one `{seq:N}`
    /// (N digits). The counter restarts whenever the date part changes.
    pub pattern: String,
    /// Audited documents need numbers without gaps (slower under load); others may skip numbers.
    #[serde(default)]
    pub gap_free: bool,
}

/// A uniqueness rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UniqueKey {
    /// The fields whose combined values must be unique.
    pub fields: Vec<String>,
    /// Only records matching this filter take part (a conditional unique key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Filter>,
    /// Compare trimmed and case-insensitive text.
    #[serde(default)]
    pub normalize: bool,
    /// The error shown on a duplicate; the existing record is named after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Label>,
    /// Fields of the existing record the duplicate error names (`[code, owner]`),
    /// even to a caller who may not see that record: whoever collides with a
    /// master record has to learn whose it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub show: Vec<String>,
}

/// An index over one or more fields.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// The indexed fields, in order.
    pub fields: Vec<String>,
}

/// A category tree: `parent` links to the same entity, children inherit `inherit` fields.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// The link field to the parent record (same entity).
    pub parent: String,
    /// Fields a child takes from its parent when it leaves them empty.
    #[serde(default)]
    pub inherit: Vec<String>,
}

/// The layout of the record form: either `sections`, or `tabs` of sections.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Form {
    /// Sections shown one below the other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<Section>,
    /// Tabs, each with its sections.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tabs: Vec<Tab>,
}

/// A tab of the form.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tab {
    /// The tab's title.
    pub label: Label,
    /// The tab's sections.
    pub sections: Vec<Section>,
}

/// A group of fields laid out in columns.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// The section heading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// Number of columns (1 to 4, default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4))]
    pub columns: Option<u8>,
    /// The fields, in order.
    pub fields: Vec<String>,
    /// The section is shown only when the record matches this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_when: Option<Filter>,
    /// The section starts collapsed.
    #[serde(default)]
    pub collapsed: bool,
}

/// How a list view presents records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViewKind {
    /// Rows and columns.
    #[default]
    Table,
    /// Cards in columns grouped by `group_by`.
    Kanban,
    /// Records placed on a calendar by `date_field`.
    Calendar,
}

/// A list view.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct View {
    /// The view's name in menus and tabs.
    pub label: Label,
    /// Table, kanban or calendar.
    #[serde(default)]
    pub kind: ViewKind,
    /// The columns (table) or card fields (kanban, calendar).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Sort order: field names, `-` for descending (`-created_at`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sort: Vec<String>,
    /// Only records matching this filter are listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Fields the user can filter on in this view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// Quick-search fields (default: the entity's `search`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// The select or link field that makes the kanban columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// The date or datetime field that places a record on the calendar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_field: Option<String>,
    /// The optional end of a calendar entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_field: Option<String>,
    /// Records per page (1 to 500, default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub page_size: Option<u32>,
}

/// When a rule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleEvent {
    /// An expression that must be true for the record to be saved.
    Validate,
    /// A script that sets fields of `record` before validation, on every save.
    Compute,
    /// A hook after a record is created (same transaction).
    Create,
    /// A hook after a record is updated (same transaction).
    Update,
    /// A hook before a record is deleted; `throw` refuses the delete.
    Delete,
    /// A hook when a workflow action runs (see `actions`).
    Transition,
}

/// Whether a failed validation refuses the save or only warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleLevel {
    /// Refuse the save.
    #[default]
    Error,
    /// Save, and show the message.
    Warning,
}

/// A Rhai rule, written inline (`script`) or in a file under `rules/` (`file`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The rule's name, unique in the entity; errors name it.
    pub name: String,
    /// When it runs.
    pub on: RuleEvent,
    /// Only for records matching this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Filter>,
    /// For `transition`: only these actions (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// The Rhai source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// A `.rhai` file, relative to the app folder (`rules/pricing.rhai`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// For `validate`: the message shown when the expression is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Label>,
    /// For `validate`: the field the message belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `validate`: refuse (`error`) or only warn (`warning`).
    #[serde(default)]
    pub level: RuleLevel,
}
