//! What the fuzz targets run, shared with the regression tests in the main workspace
//! (`tests/tests/fuzz_regressions.rs` includes this file), so that every crash input kept
//! under `tests/fuzz/regressions/<target>/` is replayed by `cargo test`.

use fieldsync_core::document::VisitDoc;
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::model::{ReferenceData, Role};
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::protocol::{SyncRequest, VisitChanges, encode_change};
use fieldsync_core::visit::{Author, VisitPlan};
use fieldsync_server::ingest::{self, Writer};
use fieldsync_server::store::{SqliteStore, Store};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The visit every target works on.
pub const VISIT: &str = "v-fuzz";
const START: i64 = 1_795_770_000_000;

fn scratch() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn refs() -> ReferenceData {
    let today = chrono::DateTime::from_timestamp_millis(START)
        .unwrap()
        .date_naive();
    let size = FixtureSize {
        stores_per_territory: 2,
        products: 6,
        reps_per_territory: 1,
    };
    fixtures::reference_data(1, &size, today)
}

fn writer(user: &str, role: Role, device: &str) -> Writer {
    Writer {
        user_id: user.into(),
        role,
        territories: vec!["t-1".into()],
        device_id: device.into(),
        scope: None,
        ever_listed: None,
    }
}

/// The visit's creating change (a manager's plan for rep-1 in t-1).
fn creation(refs: &ReferenceData) -> Vec<u8> {
    let shop = refs
        .stores
        .iter()
        .find(|s| s.territory_id == "t-1")
        .unwrap();
    let plan = VisitPlan {
        store_id: shop.id.clone(),
        rep_id: "rep-1".into(),
        planned_start: START,
        planned_end: START + 3_600_000,
        priority: 3,
        instructions: String::new(),
        template_id: "tt-standard".into(),
        ad_hoc: false,
    };
    let author = Author {
        user_id: "manager-1".into(),
        device_id: "fuzz-tablet".into(),
    };
    let doc = VisitDoc::create(
        VISIT,
        &plan,
        automerge::ActorId::from(&[7u8; 16][..]),
        &author,
        START,
    )
    .unwrap();
    doc.automerge()
        .get_changes(&[])
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .next()
        .unwrap()
}

struct Server {
    store: SqliteStore,
    refs: ReferenceData,
    _dir: tempfile::TempDir,
}

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let dir = scratch();
        let store = SqliteStore::open(&dir.path().join("fuzz.db")).unwrap();
        let refs = refs();
        store.import_reference(refs.clone()).unwrap();
        let group = VisitChanges {
            visit_id: VISIT.into(),
            changes: vec![encode_change(&creation(&refs))],
        };
        let out = ingest::ingest(
            &store,
            &writer("manager-1", Role::Manager, "fuzz-tablet"),
            &refs.index(),
            &group,
        )
        .unwrap();
        assert!(out.rejection.is_none(), "{out:?}");
        Server {
            store,
            refs,
            _dir: dir,
        }
    })
}

/// Sync request decoding and ingestion. Odd first byte: the rest is one raw change for
/// the visit; otherwise the bytes are a `SyncRequest` whose whole documents, then groups,
/// are ingested (one budget for the request, as the server does). Returns the outcome of
/// each document and group ingested.
pub fn sync_ingest(data: &[u8]) -> Vec<ingest::Outcome> {
    let s = server();
    let rep = writer("rep-1", Role::Rep, "fuzz-phone");
    if data.first().is_some_and(|b| b & 1 == 1) {
        let group = VisitChanges {
            visit_id: VISIT.into(),
            changes: vec![encode_change(&data[1..])],
        };
        return ingest::ingest(&s.store, &rep, &s.refs.index(), &group)
            .into_iter()
            .collect();
    }
    let Ok(req) = serde_json::from_slice::<SyncRequest>(data) else {
        return Vec::new();
    };
    let mut budget = fieldsync_core::sync::guard::OpBudget::per_request();
    let limits = ingest::VisitLimits::default();
    let documents: Vec<_> = req
        .documents
        .iter()
        .take(8)
        .filter_map(|d| {
            ingest::ingest_document(&s.store, &rep, &s.refs.index(), d, &mut budget, &limits).ok()
        })
        .collect();
    documents
        .into_iter()
        .chain(req.changes.iter().take(8).filter_map(|g| {
            ingest::ingest_within(&s.store, &rep, &s.refs.index(), g, &mut budget).ok()
        }))
        .collect()
}

/// The reference-data importer: first byte even → a `.json` file, odd → a `.csv` file.
pub fn reference_import(data: &[u8]) {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(scratch);
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let path = dir
        .path()
        .join(if first & 1 == 0 { "in.json" } else { "in.csv" });
    std::fs::write(&path, rest).unwrap();
    let current = refs();
    if let Ok(d) = fieldsync_server::admin::load_import(&current, &path) {
        assert!(d.validate().is_ok(), "the importer accepted invalid data");
    }
}

/// Applying remote changes on a device: the visit's real creating change, then the bytes
/// split at `0xFF 0x00` into changes. Returns how many changes applied, or the error.
pub fn apply_remote(data: &[u8]) -> Result<usize, String> {
    struct Device {
        store: Mutex<DeviceStore>,
        path: PathBuf,
        creation: Vec<u8>,
        _dir: tempfile::TempDir,
    }
    static D: OnceLock<Device> = OnceLock::new();
    let d = D.get_or_init(|| {
        let dir = scratch();
        let path = dir.path().join("device.db");
        let store = DeviceStore::open(&path, "rep-1", "fuzz-phone").unwrap();
        let r = refs();
        store.replace_reference_data(r.clone()).unwrap();
        Device {
            store: Mutex::new(store),
            path,
            creation: creation(&r),
            _dir: dir,
        }
    });
    let mut store = d
        .store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut changes = vec![d.creation.clone()];
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xFF && data[i + 1] == 0x00 {
            changes.push(data[start..i].to_vec());
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    changes.push(data[start..].to_vec());
    let visit = if data.first().is_some_and(|b| *b == b'n') {
        "v-other"
    } else {
        VISIT
    };
    let applied = store
        .apply_remote(visit, &changes)
        .map(|a| a.applied)
        .map_err(|e| e.to_string());
    if applied.as_ref().is_ok_and(|a| *a > 0) {
        let _ = store.visit(visit);
        let live = store.projection_rows().unwrap();
        store.rebuild_projections().unwrap();
        assert_eq!(
            live,
            store.projection_rows().unwrap(),
            "projections differ from a rebuild"
        );
    }
    // Start each input from a clean device.
    let _ = store.purge_visit(visit);
    if store.visit_ids().map(|v| !v.is_empty()).unwrap_or(true) {
        *store = DeviceStore::open(&d.path, "rep-1", "fuzz-phone").unwrap();
    }
    applied
}

/// For the fuzz targets: libfuzzer-sys aborts on every panic, even one that is caught. The
/// server (`ingest.rs`) and the device (`DeviceStore::apply_remote`) catch panics inside
/// Automerge and refuse the change, so those are let through; any other panic — or one
/// that escapes — still aborts.
pub fn tolerate_caught_automerge_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // automerge and its column codec, hexane.
            if info
                .location()
                .is_some_and(|l| l.file().contains("/automerge-") || l.file().contains("/hexane-"))
            {
                return;
            }
            previous(info);
        }));
    });
}
