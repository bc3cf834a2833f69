//! # fieldsync-server
//!
//! The sync server: one binary, SQLite by default. Devices sync visits (Automerge
//! documents) over `POST /v1/sync`; the server authorizes every read and write by
//! territory and role, validates with `fieldsync-core`'s own rules, and keeps a change log
//! that devices pull from with an opaque cursor. See [`api`] for the routes,
//! [`ingest`] for how pushed changes are checked, [`store`] for the storage and
//! [`fieldsync_core::sync`] for the protocol.

pub mod admin;
pub mod api;
pub mod auth;
pub mod body;
pub mod dashboard;
pub mod demo;
pub mod feed;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod pg_conn;
pub mod pg_store;
pub mod reference;
pub mod store;

pub use api::{AppError, AppState, Config, app};
pub use pg_store::{PgOptions, PgStore};
pub use store::{SqliteStore, Store};
