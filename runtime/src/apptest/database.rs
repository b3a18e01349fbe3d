//! A fresh, empty database for each test case: SQLite in a temporary folder,
//! or a uniquely named PostgreSQL database created through an administrative
//! connection and dropped when the case is over.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::store::{Store, StoreError};

/// Where the cases' databases are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestDatabase {
    /// SQLite, one file per case in a temporary folder.
    Sqlite,
    /// PostgreSQL: `postgres://…` of a database the role may connect to, and
    /// a role that may create databases.
    Postgres(String),
}

/// One case's database, removed by [`Scratch::remove`].
pub struct Scratch {
    pub store: Store,
    cleanup: Cleanup,
}

enum Cleanup {
    /// The folder (and the database file in it) goes when this is dropped.
    Folder(tempfile::TempDir),
    Database {
        admin: Store,
        name: String,
    },
}

impl TestDatabase {
    /// Makes an empty database.
    pub async fn fresh(&self) -> Result<Scratch, StoreError> {
        match self {
            TestDatabase::Sqlite => {
                let dir = tempfile::tempdir().map_err(|e| io_error("a temporary folder", e))?;
                let store = Store::open_data_dir(dir.path()).await?;
                Ok(Scratch {
                    store,
                    cleanup: Cleanup::Folder(dir),
                })
            }
            TestDatabase::Postgres(url) => {
                let admin = Store::connect(url).await?;
                let name = unique_name();
                admin
                    .execute_sql(&format!("CREATE DATABASE \"{name}\""))
                    .await?;
                match Store::connect(&with_database(url, &name)).await {
                    Ok(store) => Ok(Scratch {
                        store,
                        cleanup: Cleanup::Database { admin, name },
                    }),
                    Err(e) => {
                        let _ = admin.drop_database(&name).await;
                        Err(e)
                    }
                }
            }
        }
    }
}

impl Scratch {
    /// Closes the database and removes it.
    pub async fn remove(self) -> Result<(), StoreError> {
        self.store.close().await?;
        match self.cleanup {
            Cleanup::Folder(dir) => {
                drop(dir);
                Ok(())
            }
            Cleanup::Database { admin, name } => {
                let dropped = admin.drop_database(&name).await;
                admin.close().await?;
                dropped
            }
        }
    }
}

/// `trellis_apptest_<process>_<sequence>_<random>`: unique across the
/// parallel runs of one machine sharing a server.
fn unique_name() -> String {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let mut salt = [0_u8; 4];
    let _ = getrandom::fill(&mut salt);
    format!(
        "trellis_apptest_{}_{}_{:08x}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed),
        u32::from_le_bytes(salt)
    )
}

/// The URL with its database name replaced (query parameters kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    match base[authority..].find('/') {
        Some(slash) => format!("{}/{database}{query}", &base[..authority + slash]),
        None => format!("{base}/{database}{query}"),
    }
}

fn io_error(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Database(sea_orm::DbErr::Custom(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_replaced_in_a_url() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert!(super::unique_name() != super::unique_name());
    }
}
