//! After an import, the server accepts work recorded against any kept version of the
//! reference data (a phone that had not synced since): it merges the kept versions into one
//! catalogue of everything they list. Building that merge reads up to 64 versions back
//! (1.7 s for 10,000 stores, docs/BENCHMARKS.md "Reference data history"), so it is built
//! only for a push that needs it, not for every push after an import.

#[path = "common/inproc.rs"]
mod inproc;

use automerge::ActorId;
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::sync::protocol::{PROTOCOL_VERSION, SyncRequest, SyncResponse, VisitDocument};
use fieldsync_core::visit::Author;
use fieldsync_server::{AppState, Config, Store};

async fn push(
    router: &axum::Router,
    visit_id: &str,
    doc: &fieldsync_core::document::VisitDoc,
) -> SyncResponse {
    let req = SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: "phone".into(),
        documents: vec![VisitDocument::of(visit_id, doc.automerge())],
        ..Default::default()
    };
    let (status, body) = inproc::post_json(
        router,
        "/v1/sync",
        "rep-token",
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn the_merged_catalogue_is_built_only_for_a_push_that_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, refs) = inproc::seeded_store(&dir.path().join("e.db"), 1, &FixtureSize::default());
    let today = chrono::Utc::now().date_naive();
    let typical = fixtures::typical_visits(&refs, "t-1", today);
    assert!(typical.len() >= 2, "two stores with a typical visit");
    let author = Author {
        user_id: "rep-1".into(),
        device_id: "phone".into(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let visit = |i: usize, id: &str| {
        typical[i]
            .document(id, "rep-1", &author, ActorId::random(), now)
            .unwrap()
    };
    // A visit with a line for a product, stored before head office delists the product.
    let mut held = visit(0, "v-held");
    {
        let state = AppState::new(store.clone(), Config::default());
        let router = fieldsync_server::app(state);
        let first = push(&router, "v-held", &held).await;
        assert!(first.rejections.is_empty(), "{:?}", first.rejections);
    }
    // Head office delists that product and closes the second store (`admin import
    // --allow-removals`).
    // The product is one that `v-open`, at a third store, records no line for.
    let (open_at, gone) = (2..typical.len())
        .find_map(|k| {
            let theirs = |p: &String| typical[k].products.iter().any(|(q, _)| q == p);
            let gone = typical[0].products.iter().find(|(p, _)| !theirs(p))?;
            Some((k, gone.0.clone()))
        })
        .expect("a third store without one of the first store's products");
    let mut next = refs.clone();
    next.delist_product(&gone);
    next.stores.retain(|s| s.id != typical[1].store_id);
    next.validate().unwrap();
    store.import_reference(next).unwrap();
    assert_eq!(store.reference_versions().unwrap().len(), 2);

    let state = AppState::new(store.clone(), Config::default());
    let cache = state.reference.clone();
    let router = fieldsync_server::app(state);
    let built = || {
        let current = cache.get(store.as_ref()).unwrap();
        cache.ever_built(&current)
    };

    // A visit at an open store, valid under the current data: nothing merged.
    let open = push(&router, "v-open", &visit(open_at, "v-open")).await;
    assert!(open.rejections.is_empty(), "{:?}", open.rejections);
    assert_eq!(open.acked_documents.len(), 1);
    // More work on the visit with the delisted product's line: a problem under the
    // current data, but one the stored visit had already, so nothing merged either.
    held.edit(&author, now + 1, |w| w.set_notes("shelf restocked"))
        .unwrap();
    let more = push(&router, "v-held", &held).await;
    assert!(more.rejections.is_empty(), "{:?}", more.rejections);
    assert_eq!(more.acked_documents.len(), 1);
    assert!(built().is_none(), "merged for a push that did not need it");

    // A visit recorded offline at the closed store: judged by what the kept versions list.
    let closed = push(&router, "v-closed", &visit(1, "v-closed")).await;
    assert!(closed.rejections.is_empty(), "{:?}", closed.rejections);
    assert_eq!(closed.acked_documents.len(), 1);
    let merged = built().expect("merged for the push at the closed store");
    let merged = merged.expect("two versions kept: a merge");
    let lists = |id: &str| merged.data().stores.iter().any(|s| s.id == id);
    assert!(lists(&typical[1].store_id) && lists(&typical[0].store_id));

    // A store no kept version lists is still refused.
    let mut elsewhere = typical[0].clone();
    elsewhere.store_id = "s-never".into();
    let doc = elsewhere
        .document("v-never", "rep-1", &author, ActorId::random(), now)
        .unwrap();
    let never = push(&router, "v-never", &doc).await;
    assert_eq!(never.rejections.len(), 1, "{never:?}");
    assert!(
        never.rejections[0].reason.contains("unknown store"),
        "{:?}",
        never.rejections
    );
}
