//! The database connection: SQLite embedded by default, PostgreSQL when a
//! `postgres://` URL is given. One code path; the differences live in [`Dialect`].

mod dialect;
pub mod filter_sql;
pub mod layout;

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

pub use crate::clock::Clock;
pub use dialect::Dialect;
pub use layout::{Column, ColumnKind, Layout, LayoutError, Table, TableIndex};

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to {target}: {source}")]
    Connect { target: String, source: DbErr },
    #[error("unsupported database URL `{0}`: use sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// An open database, and the clock record logic reads (see [`Clock`]).
#[derive(Debug, Clone)]
pub struct Store {
    conn: DatabaseConnection,
    dialect: Dialect,
    clock: Clock,
}

impl Store {
    /// Connects to `sqlite://path?mode=rwc` or `postgres://user:pass@host/db`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let dialect =
            Dialect::of_url(url).ok_or_else(|| StoreError::UnsupportedUrl(redact(url)))?;
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false);
        match dialect {
            Dialect::Sqlite => {
                // sea-orm defaults SQLite to one connection, which serialises all I/O;
                // WAL lets readers run beside the single writer.
                options
                    .max_connections(4)
                    .min_connections(1)
                    .map_sqlx_sqlite_opts(|o| {
                        o.journal_mode(SqliteJournalMode::Wal)
                            .synchronous(SqliteSynchronous::Normal)
                            .busy_timeout(Duration::from_secs(10))
                            .foreign_keys(true)
                            // 64 MiB of page cache per connection (the default is 2 MiB):
                            // index maintenance on big tables otherwise thrashes.
                            .pragma("cache_size", "-65536")
                            // Checkpoint every 50,000 WAL pages (~200 MiB) rather than
                            // 1,000: index pages written many times between checkpoints
                            // are copied once. Bulk loads run a third faster than at 10,000.
                            .pragma("wal_autocheckpoint", "50000")
                            .pragma("mmap_size", "268435456")
                            .pragma("temp_store", "memory")
                    });
            }
            Dialect::Postgres => {
                options.max_connections(16).min_connections(1);
            }
        }
        let conn = Database::connect(options)
            .await
            .map_err(|source| StoreError::Connect {
                target: redact(url),
                source,
            })?;
        Ok(Store {
            conn,
            dialect,
            clock: Clock::real(),
        })
    }

    /// Opens (creating it if needed) the SQLite database of a data directory.
    pub async fn open_data_dir(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Connect {
            target: dir.display().to_string(),
            source: DbErr::Custom(e.to_string()),
        })?;
        Store::connect(&format!(
            "sqlite://{}?mode=rwc",
            dir.join("trellis.db").display()
        ))
        .await
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The same database, with record logic on `clock` (an app test's date).
    /// Clones share the connection pool; each keeps its own clock.
    pub fn with_clock(mut self, clock: Clock) -> Store {
        self.clock = clock;
        self
    }

    /// The clock of record logic: defaults, `$today` in filters, workflow times,
    /// scheduled runs. Sessions, delivery and metrics keep the real time.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred read that later writes can fail with
    /// `SQLITE_BUSY` when another connection wrote in between.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok(self.conn.begin_with_options(options).await?)
    }

    /// Connections in the pool, and how many of them are idle.
    pub fn pool_stats(&self) -> (u32, usize) {
        match self.dialect {
            Dialect::Sqlite => {
                let pool = self.conn.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            Dialect::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
        }
    }

    /// Runs one SQL statement that returns no rows.
    pub async fn execute_sql(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.execute_unprepared(sql).await?;
        Ok(())
    }

    /// Drops a PostgreSQL database, such as a test's or a benchmark's scratch one.
    /// `WITH (FORCE)` ends sessions left open on it, but is refused to a role
    /// that is not a superuser while autovacuum works there (typically just
    /// after a bulk load); plain `DROP DATABASE` stops autovacuum itself.
    pub async fn drop_database(&self, name: &str) -> Result<(), StoreError> {
        let name = name.replace('"', "\"\"");
        if self
            .execute_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.execute_sql(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .await
    }

    /// Closes the pool.
    pub async fn close(self) -> Result<(), StoreError> {
        Ok(self.conn.close().await?)
    }
}

/// The current time as stored in SQLite text columns: fixed-width UTC, so that
/// text order is time order.
pub fn now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            super::redact("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            super::redact("sqlite://data/trellis.db"),
            "sqlite://data/trellis.db"
        );
    }
}
