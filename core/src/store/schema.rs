//! The device database schema: numbered migrations, version in `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// Migrations in order; migration `i` takes the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        sql: include_str!("../../migrations/0001_documents.sql"),
        rebuild_projections: false,
    },
    Migration {
        sql: include_str!("../../migrations/0002_projections.sql"),
        rebuild_projections: true,
    },
    Migration {
        sql: include_str!("../../migrations/0003_purged_changes.sql"),
        rebuild_projections: false,
    },
    Migration {
        sql: include_str!("../../migrations/0004_documents_rowid.sql"),
        rebuild_projections: false,
    },
    Migration {
        sql: include_str!("../../migrations/0005_projection_keys.sql"),
        rebuild_projections: true,
    },
    Migration {
        sql: include_str!("../../migrations/0006_reference_history.sql"),
        rebuild_projections: false,
    },
];

/// The schema version this build writes.
pub const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) struct Migration {
    pub sql: &'static str,
    /// Projections must be rebuilt from the documents after this step.
    pub rebuild_projections: bool,
}

/// Sets the connection's PRAGMAs (outside any transaction).
pub(crate) fn configure(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is synced on every commit, so an acknowledged action survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    // Cached statements keep their plan when new values are bound (without this, SQLite
    // prepares `LIMIT ?n` statements, such as the outbox read, again on every run).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Creates or upgrades the schema to `target` in one IMMEDIATE transaction. Returns true
/// when projections must be rebuilt. Refuses a database newer than this build.
pub(crate) fn migrate(conn: &mut Connection, target: i64) -> Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > LATEST_VERSION {
        return Err(Error::SchemaTooNew {
            found: current,
            supported: LATEST_VERSION,
        });
    }
    let mut rebuild = false;
    for (i, m) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(current as usize)
    {
        tx.execute_batch(m.sql)?;
        rebuild |= m.rebuild_projections && current > 0;
        tracing::info!(from = i, to = i + 1, "migrated device database");
    }
    if target > current {
        tx.pragma_update(None, "user_version", target)?;
    }
    tx.commit()?;
    Ok(rebuild)
}

/// The schema as SQL text, for comparing an upgraded database with a fresh one.
pub fn schema_sql(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT type || ' ' || name || ': ' || sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name")?;
    let rows = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows)
}
