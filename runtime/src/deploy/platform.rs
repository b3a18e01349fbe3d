//! The platform's own tables, laid out and deployed like any app's, so that
//! every node sharing a database agrees on users, sessions, revisions, counters,
//! job leases and the outbox.

use crate::store::{Column, ColumnKind, Layout, Table, TableIndex};

/// Deployments: the layout each one left behind.
pub const REVISIONS: &str = "trellis_revisions";
/// The audit trail: who changed which record, when, from what to what.
pub const AUDIT: &str = "trellis_audit";
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
        "trellis_jobs",
        &[
            ("id", Id, false),
            ("name", Text, false),
            ("leased_by", Text, true),
            ("leased_until", DateTime, true),
            ("last_started_at", DateTime, true),
            ("last_finished_at", DateTime, true),
            ("last_result", Text, true),
        ],
        &[(&["name"], true)],
    ),
    (
        "trellis_outbox",
        &[
            ("id", Id, false),
            ("created_at", DateTime, false),
            ("topic", Text, false),
            ("target", Text, true),
            ("payload", Text, false),
            ("attempts", Integer, false),
            ("next_attempt_at", DateTime, true),
            ("delivered_at", DateTime, true),
            ("last_error", Text, true),
        ],
        &[(&["delivered_at", "next_attempt_at"], false)],
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
