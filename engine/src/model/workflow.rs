//! Workflows (`workflows/<name>.yaml`): a state machine over one entity, and the
//! actions (transitions and entity buttons) with their approvals, guards and effects.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Channel, Color, Filter, Label, Push, Recipient, ValueExpr};

/// A state machine over the records of one entity.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// The entity whose records move through the states.
    pub entity: String,
    /// The state field. The workflow owns it: do not declare it in the entity.
    pub field: String,
    /// The workflow's name in the designer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// The states, by name.
    pub states: IndexMap<String, State>,
    /// The transitions between states.
    pub transitions: Vec<Action>,
}

/// A state of a workflow.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// What people read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// The badge colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
    /// New records start here (exactly one state).
    #[serde(default, rename = "initial")]
    pub is_initial: bool,
    /// The record's life ends here; no transition is required out of it.
    #[serde(default, rename = "final")]
    pub is_final: bool,
    /// Records in this state cannot be edited (only actions move them).
    #[serde(default)]
    pub locked: bool,
    /// Fields that must hold a value to enter this state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<String>,
    /// When a record must leave this state, with reminder and escalation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Due>,
    /// Effects run whenever a record enters this state (`set` a probability, `notify`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_enter: Vec<Effect>,
}

/// A due time for a state.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Due {
    /// How long after `from`: a number with a unit, `30m`, `4h`, `3d`, `2w`.
    pub after: String,
    /// A date or datetime field to count from (default: when the record entered the state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Remind the people who can act this long before the due time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remind_before: Option<String>,
    /// Who is told when the due time passes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate_to: Vec<Recipient>,
}

/// One name or several.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single name.
    One(String),
    /// Several names.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The names, in order.
    pub fn names(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(n) => vec![n.as_str()],
            OneOrMany::Many(ns) => ns.iter().map(String::as_str).collect(),
        }
    }
}

/// An action a person takes on a record: a workflow transition (`from` → `to`)
/// or, under an entity's `actions`, a button that keeps the state.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// The action's name, used in the API (`/actions/{name}`).
    pub action: String,
    /// The button text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Label>,
    /// The state or states the action starts from (`*` for any non-final state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<OneOrMany>,
    /// The state the action leads to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Roles whose members may take the action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// User fields of the record whose users may take the action (`owner`, `approver`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// How many of the eligible people must decide: any one, all (countersign), or a quorum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// A Rhai condition that must hold, with the message shown when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
    /// Fields that must hold a value before the action runs (e.g. `lost_reason`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<String>,
    /// Fields the person may fill in when taking the action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input: Vec<String>,
    /// A comment must be given (a rejection reason).
    #[serde(default)]
    pub comment_required: bool,
    /// A question to confirm before the action runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<Label>,
    /// What the action does, in order, in the same transaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<Effect>,
}

/// How many eligible approvers must decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// The first decision counts.
    Any,
    /// Every eligible approver must approve (countersign).
    All,
    /// One approval from each listed role (a manager and finance), whoever gives it.
    EachRole,
    /// At least N approvers must approve (`{quorum: 2}`).
    Quorum(u32),
}

/// A Rhai condition on the record, with the message shown when it is false.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// A Rhai expression over the record's fields, `user`, `today` and `now`.
    pub script: String,
    /// The message shown when the expression is false.
    pub message: Label,
}

/// One effect of an action or of entering a state.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Set fields of the record: `{win_probability: 100, closed_on: $today, total: =sum}`.
    Set(IndexMap<String, ValueExpr>),
    /// Create records of another entity from this one (conversions, splits).
    Create(CreateRecord),
    /// Set fields of a linked record.
    Update(UpdateLinked),
    /// Tell people.
    Notify(Notify),
    /// Create a platform login for the record (a supplier's portal account); the
    /// generated password goes to the account's e-mail.
    CreateAccount(CreateAccount),
    /// Run a Rhai hook with `record` and the record API.
    Run(String),
    /// Send the record to another system through a connector operation
    /// (`{connector: erp, operation: write_back}`): written to the outbox with
    /// the action, delivered after it commits, retried until it arrives.
    Push(Push),
}

/// Creates records from the current one.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRecord {
    /// The entity to create (`sales_order` or `order.sales_order`).
    pub entity: String,
    /// Target field → value (a literal, or `=expression` over the source record).
    #[serde(default)]
    pub fields: IndexMap<String, ValueExpr>,
    /// Target table field → how to fill its lines from a table of the source.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub lines: IndexMap<String, LineMapping>,
    /// Create one record per distinct value of this field of the source lines
    /// (one purchase order per supplier); only those lines go into each, and
    /// `fields` expressions see the value as `split` (`supplier: =split`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_by: Option<String>,
    /// A link field of the source that receives the new record (the first one when split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_back: Option<String>,
}

/// How lines are carried into a created record.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LineMapping {
    /// The source's table field.
    pub from: String,
    /// Target line field → value (`=expression` over the source line, which also sees `parent`).
    pub fields: IndexMap<String, ValueExpr>,
    /// Only source lines matching this filter are carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Filter>,
}

/// A user account created by an action.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// The login name: a literal or `=expression` over the record (`=email`).
    pub username: ValueExpr,
    /// Where the generated password is sent (`=email`).
    pub email: ValueExpr,
    /// The name shown for the account (`=name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<ValueExpr>,
    /// The roles the account gets (usually an external role).
    pub roles: Vec<String>,
    /// Values of declared user attributes, binding the account to records (`supplier: =id`).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub attributes: IndexMap<String, ValueExpr>,
    /// A user field of the record that receives the new account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_back: Option<String>,
}

/// Sets fields of the record a link field points to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLinked {
    /// The link field of this record.
    pub link: String,
    /// Field of the linked record → value (`=expression` over this record).
    pub set: IndexMap<String, ValueExpr>,
}

/// A notification.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Who is told.
    pub to: Vec<Recipient>,
    /// How (default: in-app).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<Channel>,
    /// The subject, for e-mail (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Label>,
    /// The message, a template with `{{ record.<field> }}` placeholders.
    pub message: Label,
}
