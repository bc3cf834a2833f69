//! fieldsync-core
pub mod document;
pub mod error;
pub mod gtin;
pub mod kpi;
pub mod model;
pub mod visit;

pub use error::{Error, Result};
pub use gtin::Gtin13;
