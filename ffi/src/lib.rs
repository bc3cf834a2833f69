//! # fieldsync-ffi
//!
//! The bindings of the fieldsync device core for Kotlin, Swift and Python, made with
//! uniffi proc-macros. This crate only wraps: [`FieldStore`] holds an
//! `Arc<fieldsync_core::store::DeviceStore>`, records and enums mirror the core's types
//! with `From` conversions, and [`FieldsyncError`] is the one public error, mapped from
//! the core's error in one place.
//!
//! * Local calls block and are safe from several threads at once; apps call them off the
//!   UI thread.
//! * [`FieldObserver`] is implemented by the app; [`FieldStore::subscribe`] returns a
//!   [`Subscription`] that stops delivery when cancelled or dropped. A panicking or
//!   throwing observer is contained.
//!
//! ```
//! use fieldsync_ffi::{FieldStore, GeoPoint, InventoryInput, demo_reference_data_json};
//!
//! # fn main() -> Result<(), fieldsync_ffi::FieldsyncError> {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("rep-1.db").display().to_string();
//! let store = FieldStore::open(path, "rep-1".into(), "phone-1".into())?;
//! store.replace_reference_data_json(demo_reference_data_json(1, "2026-11-27".into())?)?;
//! let refs: serde_json::Value = serde_json::from_str(&store.reference_data_json()?).unwrap();
//! let shop = &refs["stores"][0];
//! let visit = store.create_ad_hoc_visit(shop["id"].as_str().unwrap().into(), "tt-quick".into())?;
//! let here = GeoPoint { lat: shop["lat"].as_f64().unwrap(), lng: shop["lng"].as_f64().unwrap() };
//! store.check_in(visit.clone(), here)?;
//! let product = store.visit_checklist(visit.clone())?.product_ids[0].clone();
//! let negative = InventoryInput { shelf_qty: Some(-1), ..Default::default() };
//! assert!(matches!(
//!     store.record_inventory(visit, product, negative),
//!     Err(fieldsync_ffi::FieldsyncError::Validation { .. })
//! ));
//! # Ok(()) }
//! ```

uniffi::setup_scaffolding!();

mod demo;
mod error;
mod observer;
mod store;
mod sync;
mod types;

pub use demo::demo_reference_data_json;
pub use error::{FieldsyncError, Result};
pub use observer::{FieldObserver, Subscription, SyncState};
pub use store::FieldStore;
pub use sync::{Role, Session, SyncRejection, SyncReport, login};
pub use types::*;
