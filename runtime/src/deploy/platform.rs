//! The platform's own tables, laid out and deployed like any app's, so that
//! every node sharing a database agrees on users, sessions, revisions, counters,
//! job leases, notifications and the outbox.

use crate::store::{Column, ColumnKind, Layout, Table, TableIndex};

/// Deployments: the layout each one left behind.
pub const REVISIONS: &str = "trellis_revisions";
/// The audit trail: who changed which record, when, from what to what.
pub const AUDIT: &str = "trellis_audit";
/// Workflow decisions: transitions, approvals, withdrawals, transfers, add-signs.
pub const WORKFLOW_HISTORY: &str = "trellis_workflow_history";
/// Deputies acting for absent approvers over a period.
pub const DELEGATIONS: &str = "trellis_delegations";
/// Numbering series counters.
pub const SEQUENCES: &str = "trellis_sequences";

use ColumnKind::{Boolean, DateTime, Id, Integer, Json, Text};

/// (table, columns as (name, kind, nullable), indexes as (columns, unique)).
type TableSpec = (
    &'static str,
    &'static [(&'static str, ColumnKind, bool)],
    &'static [(&'static [&'static str], bool)],
);

const TABLES: &[TableSpec] = &[
    (
        REVISIONS,
        &[
            ("id", Id, false),
            ("applied_at", DateTime, false),
            ("layout", Text, false),
            ("comment", Text, true),
        ],
        &[],
    ),
    (
        AUDIT,
        &[
            ("id", Id, false),
            ("at", DateTime, false),
            ("user_id", Integer, true),
            ("app", Text, false),
            ("entity", Text, false),
            ("record_id", Integer, false),
            ("operation", Text, false),
            ("changes", Text, false),
        ],
        &[(&["app", "entity", "record_id"], false)],
    ),
    (
        SEQUENCES,
        &[
            ("id", Id, false),
            ("series", Text, false),
            ("value", Integer, false),
        ],
        &[(&["series"], true)],
    ),
    (
        "trellis_users",
        &[
            ("id", Id, false),
            ("username", Text, false),
            ("display_name", Text, true),
            ("email", Text, true),
            ("password_hash", Text, true),
            ("disabled", Boolean, false),
            ("attributes", Json, true),
            ("created_at", DateTime, false),
        ],
        &[(&["username"], true)],
    ),
    (
        "trellis_user_roles",
        &[
            ("id", Id, false),
            ("user_id", Integer, false),
            ("role", Text, false),
        ],
        &[(&["user_id", "role"], true)],
    ),
    (
        "trellis_sessions",
        &[
            ("id", Id, false),
            ("token_hash", Text, false),
            ("user_id", Integer, false),
            // Named sessions are API tokens for integrations.
            ("name", Text, true),
            ("created_at", DateTime, false),
            ("expires_at", DateTime, false),
            ("last_seen_at", DateTime, true),
        ],
        &[(&["token_hash"], true), (&["user_id"], false)],
    ),
    (
        crate::session::LOGIN_LOG,
        &[
            ("id", Id, false),
            ("at", DateTime, false),
            ("username", Text, false),
            ("user_id", Integer, true),
            ("ip", Text, true),
            ("success", Boolean, false),
        ],
        &[(&["username", "at"], false), (&["at"], false)],
    ),
    (
        crate::oplog::OPERATION_LOG,
        &[
            ("id", Id, false),
            ("at", DateTime, false),
            ("user_id", Integer, true),
            ("method", Text, false),
            ("path", Text, false),
            ("app", Text, true),
            ("entity", Text, true),
            ("record_id", Integer, true),
            ("status", Integer, false),
            ("duration_us", Integer, false),
            ("ip", Text, true),
        ],
        &[
            (&["at"], false),
            (&["user_id", "at"], false),
            (&["app", "entity", "record_id"], false),
        ],
    ),
    (
        WORKFLOW_HISTORY,
        &[
            ("id", Id, false),
            ("at", DateTime, false),
            ("app", Text, false),
            ("entity", Text, false),
            ("record_id", Integer, false),
            ("kind", Text, false),
            ("action", Text, true),
            ("from_state", Text, true),
            ("to_state", Text, true),
            ("user_id", Integer, true),
            ("via", Text, true),
            ("target_user", Integer, true),
            ("comment", Text, true),
        ],
        &[
            (&["app", "entity", "record_id"], false),
            (&["target_user"], false),
        ],
    ),
    (
        DELEGATIONS,
        &[
            ("id", Id, false),
            ("user_id", Integer, false),
            ("deputy_id", Integer, false),
            ("starts_on", Text, false),
            ("ends_on", Text, false),
            ("created_at", DateTime, false),
        ],
        &[(&["deputy_id"], false), (&["user_id"], false)],
    ),
    (
        crate::schedule::JOBS,
        &[
            ("id", Id, false),
            ("name", Text, false),
            ("leased_by", Text, true),
            ("leased_until", DateTime, true),
            ("last_started_at", DateTime, true),
            ("last_finished_at", DateTime, true),
            ("last_result", Text, true),
            // What follows came with the scheduler (see `schedule`).
            ("schedule", Text, true),
            ("next_run_at", DateTime, true),
        ],
        &[(&["name"], true)],
    ),
    (
        crate::workflow::due::DUE,
        &[
            ("id", Id, false),
            ("app", Text, false),
            ("entity", Text, false),
            ("record_id", Integer, false),
            ("state", Text, false),
            ("due_at", DateTime, false),
            ("remind_at", DateTime, true),
            ("reminded_at", DateTime, true),
            ("escalated_at", DateTime, true),
        ],
        &[
            (&["app", "entity", "record_id"], false),
            (&["due_at"], false),
        ],
    ),
    (
        crate::schedule::RUNS,
        &[
            ("id", Id, false),
            ("name", Text, false),
            // The user who asked for a manual run; none for scheduled runs.
            ("manual_by", Integer, true),
            ("node", Text, false),
            ("due_at", DateTime, true),
            ("started_at", DateTime, false),
            ("finished_at", DateTime, true),
            ("matched", Integer, true),
            ("notified", Integer, true),
            // `ok` or `failed`; none while running (or when the node died).
            ("result", Text, true),
            ("error", Text, true),
        ],
        &[(&["name", "id"], false)],
    ),
    (
        crate::schedule::ALERT_HITS,
        &[
            ("id", Id, false),
            ("alert", Text, false),
            ("record_id", Integer, false),
            ("first_matched_at", DateTime, false),
            ("notified_at", DateTime, false),
        ],
        &[(&["alert", "record_id"], true)],
    ),
    (
        crate::notify::OUTBOX,
        &[
            ("id", Id, false),
            ("created_at", DateTime, false),
            ("topic", Text, false),
            // The configured channel's name (`email` for SMTP).
            ("target", Text, true),
            ("payload", Text, false),
            ("attempts", Integer, false),
            ("next_attempt_at", DateTime, true),
            ("delivered_at", DateTime, true),
            ("last_error", Text, true),
            // What follows came with the dispatcher (see `notify::outbox`).
            ("channel", Text, true),
            ("status", Text, true),
            ("leased_by", Text, true),
            ("leased_until", DateTime, true),
            ("last_attempt_at", DateTime, true),
            ("attempts_before_retry", Integer, true),
            ("retried_at", DateTime, true),
            ("retried_by", Integer, true),
        ],
        &[(&["status", "next_attempt_at"], false), (&["topic"], false)],
    ),
    (
        crate::notify::ATTEMPTS,
        &[
            ("id", Id, false),
            ("outbox_id", Integer, false),
            ("attempt", Integer, false),
            ("at", DateTime, false),
            ("target", Text, false),
            ("success", Boolean, false),
            ("status_code", Integer, true),
            ("error", Text, true),
            ("response", Text, true),
            ("duration_us", Integer, false),
        ],
        &[(&["outbox_id", "attempt"], false)],
    ),
    (
        crate::notify::NOTIFICATIONS,
        &[
            ("id", Id, false),
            ("user_id", Integer, false),
            ("created_at", DateTime, false),
            ("subject", Text, true),
            ("message", Text, false),
            // The Chinese texts, when the model's labels have them.
            ("subject_zh", Text, true),
            ("message_zh", Text, true),
            ("app", Text, true),
            ("entity", Text, true),
            ("record_id", Integer, true),
            ("read_at", DateTime, true),
        ],
        &[(&["user_id", "read_at"], false)],
    ),
    (
        crate::notify::CHANNELS,
        &[
            ("id", Id, false),
            ("name", Text, false),
            ("kind", Text, false),
            ("url", Text, false),
            ("secret", Text, true),
            ("template", Text, true),
            ("topics", Json, true),
            ("enabled", Boolean, false),
            ("updated_at", DateTime, false),
        ],
        &[(&["name"], true)],
    ),
];

/// The platform's own tables.
pub fn platform_layout() -> Layout {
    let mut layout = Layout::default();
    for (name, columns, indexes) in TABLES {
        let mut table = Table::empty();
        for (column, kind, nullable) in *columns {
            table.columns.insert(
                (*column).to_owned(),
                Column {
                    kind: *kind,
                    nullable: *nullable,
                },
            );
        }
        for (columns, unique) in *indexes {
            let suffix = if *unique { "key" } else { "idx" };
            table.indexes.insert(
                format!("{name}__{}_{suffix}", columns.join("_")),
                TableIndex {
                    columns: columns.iter().map(|c| (*c).to_owned()).collect(),
                    unique: *unique,
                    condition: None,
                },
            );
        }
        layout.tables.insert((*name).to_owned(), table);
    }
    layout
}
