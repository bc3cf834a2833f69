//! The reference-data importer (`admin import`): the bytes as a JSON file or a CSV of
//! stores or products. Must never panic; whatever it accepts must validate.
#![no_main]

use fieldsync_fuzz as support;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    support::reference_import(data);
});
