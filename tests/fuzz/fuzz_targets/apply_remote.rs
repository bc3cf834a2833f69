//! Applying remote changes on a device: the bytes split into changes (by a 0xFF 0x00
//! separator) applied to a visit with `DeviceStore::apply_remote`. Must never panic; the
//! store must stay readable and its projections equal a rebuild.
#![no_main]

use fieldsync_fuzz as support;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    support::tolerate_caught_automerge_panics();
    let _ = support::apply_remote(data);
});
