//! Sync with the fieldsync server: the wire protocol and the HTTP client.
//!
//! # How sync works
//!
//! The topology is a star: devices talk to the server, never to each other. Every visit is
//! an Automerge document, so sync is "exchange the changes the other side lacks" — and
//! because a change is content-addressed (its hash covers its bytes and dependencies),
//! sending a change twice is harmless and the order of arrival does not matter: all
//! replicas converge.
//!
//! One HTTP round trip does both directions in the common case:
//!
//! 1. The device sends its **outbox** (local changes the server has not acknowledged,
//!    grouped by visit, at most [`client::SyncConfig::batch`] per request), its
//!    **cursor** (an opaque position in the server's change log) and the server
//!    **epoch** it last saw ([`protocol::SyncRequest`]).
//! 2. The server, per visit and in one transaction each: authorizes the user for the
//!    visit's territory (reps: only their own visits), parses the changes, checks that
//!    their dependencies are present (if not, it asks for a `resend`), applies them to a
//!    fork of its copy, checks that each change's Automerge actor belongs to the pushing
//!    device, that the user's role owns every field touched
//!    ([`crate::rules::forbidden_path`]) and that the visit is still valid
//!    ([`crate::rules::visit_problems`]); then it stores the document and appends the
//!    changes to its change log. A refused visit is listed in `rejections` with a reason
//!    and never blocks the others.
//! 3. The server answers ([`protocol::SyncResponse`]) with the **acks** (hashes now
//!    durable on the server), the **rejections**, the **changes in the device's scope**
//!    after its cursor made by other devices, visits that entered the scope (whole),
//!    visits that left it (`purge`), the reference data when it changed, and the next
//!    cursor. `more` says a page was cut.
//! 4. The device applies all that ([`crate::store::DeviceStore::apply_remote`],
//!    `acknowledge`, `quarantine`, `replace_reference_data`, `purge_visit`) and stores
//!    the cursor; it asks again while `more` is set or its outbox is not empty.
//!
//! ## Restores
//!
//! A server restored from an older backup has a new **epoch** and has forgotten changes it
//! once acknowledged. A device that sees a new epoch sends the heads of every visit it
//! holds; the server sends back what the device lacks and lists in `resend` the visits
//! where the device has changes the server does not. The device resends its own changes
//! since the server's heads, and adopts the new epoch only when the server asks for nothing
//! more. Changes of other authors come back from their own devices.
//!
//! See [`protocol`] for the exact JSON and [`client::SyncClient`] for retries, backoff and
//! the observer.

pub mod client;
pub mod doc_check;
pub mod guard;
pub mod protocol;
pub mod status;
mod tls;

pub use client::{Compression, SyncClient, SyncConfig, SyncObserver, SyncReport, SyncState, login};
pub use protocol::*;
pub use status::{QuarantinedVisit, SyncStatus, status};
