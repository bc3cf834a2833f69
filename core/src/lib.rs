//! fieldsync-core
pub mod clock;
pub mod document;
pub mod error;
pub mod fixtures;
pub mod gtin;
pub mod kpi;
pub mod model;
pub mod rules;
pub mod store;
pub mod visit;

pub use error::{Error, Result};
pub use gtin::Gtin13;
