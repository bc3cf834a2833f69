//! # fieldsync-core
//!
//! The device core of fieldsync: everything a field rep's phone does offline.
//!
//! * [`model`] — reference data that flows down from head office: territories, users,
//!   stores with geofences, products with validated [`Gtin13`] codes, assortments,
//!   planograms, promotions, KPI targets and task templates.
//! * [`document`] — one Automerge document per visit and the typed mapping layer over it.
//!   Concurrent observations of the same field resolve to the **later device time**, and
//!   every concurrent value stays visible as a conflict.
//! * [`store`] — the device database: one SQLite file per user, where one user action is
//!   one durable transaction (document change + projection rows + outbox entry).
//! * [`rules`] — the visit lifecycle, required tasks and field ownership per role, shared
//!   with the server so both enforce the same rules.
//! * [`kpi`] — the KPI engine (out-of-stock rate, on-shelf availability, planogram,
//!   promotion and price compliance, share of shelf, visit compliance, time in store,
//!   perfect-store score), one implementation for the phone and the dashboard.
//!
//! ## A visit, offline
//!
//! ```
//! use fieldsync_core::fixtures::{self, FixtureSize};
//! use fieldsync_core::store::DeviceStore;
//! use fieldsync_core::visit::{GeoPoint, InventoryInput};
//!
//! # fn main() -> fieldsync_core::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = DeviceStore::open(dir.path().join("rep-1.db"), "rep-1", "phone-1")?;
//! let today = chrono::Utc::now().date_naive();
//! store.replace_reference_data(fixtures::reference_data(1, &FixtureSize::default(), today))?;
//!
//! let refs = store.reference_data();
//! let shop = &refs.stores[0];
//! let visit = store.create_ad_hoc_visit(&shop.id, "tt-quick")?;
//! store.check_in(&visit, GeoPoint { lat: shop.lat, lng: shop.lng })?;
//! let product = refs.index().assortment_for(shop)[0].to_string();
//! store.record_inventory(&visit, &product, &InventoryInput {
//!     shelf_qty: Some(0),
//!     out_of_stock: Some(true),
//!     ..Default::default()
//! })?;
//! store.complete(&visit)?;
//!
//! // The change waits in the outbox until the server acknowledges it.
//! assert_eq!(store.outbox_len()?, 4);
//! assert_eq!(store.store_findings(&shop.id)?.out_of_stock_product_ids, vec![product]);
//!
//! // Bad input is a typed error and changes nothing.
//! let err = store.record_inventory(&visit, "no-such-product", &InventoryInput::default());
//! assert!(err.is_err());
//! # Ok(()) }
//! ```

pub mod clock;
pub mod document;
pub mod error;
pub mod fixtures;
pub mod gtin;
pub mod kpi;
pub mod model;
pub mod parallel;
pub mod rules;
pub mod store;
pub mod sync;
#[cfg(test)]
mod testutil;
pub mod tz;
pub mod visit;
pub mod zstd_frames;

pub use error::{Error, Result};
pub use gtin::Gtin13;
