//! Demo data for tests and demo apps.

use fieldsync_core::fixtures::{self, FixtureSize};

use crate::error::Result;
use crate::types::parse_day;

/// Demo reference data as JSON (for `FieldStore.replaceReferenceDataJson`): two
/// territories (Berlin, Lyon), 20 stores each, 60 products, planograms, promotions running
/// around `today_iso` (`YYYY-MM-DD`), KPI targets and two task templates (`tt-standard`,
/// `tt-quick`); users `rep-1…`, `manager-1`, `manager-2`, `admin`. The same `seed` gives
/// the same data.
#[uniffi::export]
pub fn demo_reference_data_json(seed: u64, today_iso: String) -> Result<String> {
    let today = parse_day(&today_iso)?;
    let data = fixtures::reference_data(seed, &FixtureSize::default(), today);
    Ok(serde_json::to_string(&data).map_err(fieldsync_core::Error::from)?)
}
