//! The sync request decoder and the ingestion path: bytes → `SyncRequest` (JSON) → every
//! visit group through `ingest::ingest` as a rep; odd first byte: the bytes are one raw
//! Automerge change pushed for a visit the server holds. Must never panic.
#![no_main]

use fieldsync_fuzz as support;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    support::tolerate_caught_automerge_panics();
    support::sync_ingest(data);
});
