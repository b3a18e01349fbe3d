//! Alerts (`alerts/<name>.yaml`) and scheduled jobs (`jobs/<name>.yaml`), and who they tell.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Filter, Label};

/// A filter evaluated on a schedule; each matching record notifies its recipients once.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// The alert's name.
    pub label: Label,
    /// The entity whose records are checked.
    pub entity: String,
    /// When to check: a 5-field cron expression (`0 8 * * *`) or `every 15m`.
    pub schedule: String,
    /// The records that need attention.
    pub filter: Filter,
    /// Who is told about each matching record.
    pub recipients: Vec<Recipient>,
    /// How (default: in-app).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<Channel>,
    /// The subject, for e-mail (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Label>,
    /// The message, a template with `{{ record.<field> }}` placeholders.
    pub message: Label,
    /// Tell again after this long while the record still matches (default: once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_after: Option<String>,
    /// Switched off alerts are kept but not run.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// A Rhai script run on a schedule (a daily closing, a periodic check).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The job's name.
    pub label: Label,
    /// When to run: a 5-field cron expression or `every 1h`.
    pub schedule: String,
    /// The Rhai source, with the record API (`find`, `get`, `create`, `update`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// A `.rhai` file, relative to the app folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Switched off jobs are kept but not run.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Who receives a notification.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    /// Every member of a role.
    Role(String),
    /// The user (or users) in a user field of the record.
    Field(String),
    /// A fixed user name.
    User(String),
}

/// A way to reach people or systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The in-app inbox.
    InApp,
    /// E-mail over SMTP.
    Email,
    /// Text message through the configured HTTP gateway.
    Sms,
    /// A WeCom group robot.
    Wecom,
    /// A DingTalk group robot.
    Dingtalk,
    /// A signed JSON webhook.
    Webhook,
}
