//! An import that delists a product never costs a rep their work: a visit that already has
//! a line for the product can still be worked on and checked out, and a line recorded
//! offline on a phone that still had the product is accepted. A product no catalogue of
//! the server listed is still refused.

mod common;

use common::{HOUR, device, now, plan_visit, seeded_server, stores_of, user_id};
use fieldsync_core::model::ReferenceData;
use fieldsync_core::visit::InventoryInput;
use std::collections::BTreeSet;

/// `r` without product `gone` anywhere.
fn delisted(r: &ReferenceData, gone: &str) -> ReferenceData {
    let mut next = r.clone();
    next.delist_product(gone);
    next.validate().expect("valid reference data");
    next
}

fn line(qty: i64) -> InventoryInput {
    InventoryInput {
        shelf_qty: Some(qty),
        out_of_stock: Some(qty == 0),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delisted_product_never_costs_a_rep_their_work() {
    let (tmp, _, r, mut server) = seeded_server();
    let mgr = common::token(&server, "manager1").await;
    let rep1 = user_id(&r, "rep1");
    let (shop, at) = common::shop(&r, "t-1", 0);
    let shop_id = shop.id;
    // Visit `a` gets a line for the product before the import; visit `b` gets one offline
    // on a second phone, after the import, before that phone syncs.
    let a = plan_visit(&server, &mgr, &shop_id, &rep1, now() - HOUR / 2).await;
    let b = plan_visit(&server, &mgr, &shop_id, &rep1, now() - HOUR / 4).await;
    let one = device(&server, tmp.path(), "rep1", "phone-1").await;
    let two = device(&server, tmp.path(), "rep1", "phone-2").await;
    one.client.sync(&one.store, None).await.unwrap();
    two.client.sync(&two.store, None).await.unwrap();
    let gone = {
        let refs = one.store.reference_data();
        let idx = refs.index();
        idx.assortment_for(idx.store(&shop_id).unwrap())[0].to_string()
    };
    one.store.check_in(&a, at).unwrap();
    one.store.record_inventory(&a, &gone, &line(0)).unwrap();
    let report = one.client.sync(&one.store, None).await.unwrap();
    assert!(report.rejections.is_empty(), "{:?}", report.rejections);

    let server = common::import_while_stopped(&mut server, delisted(&r, &gone));

    // Phone 1 gets the new catalogue, then finishes visit `a`.
    one.client.sync(&one.store, None).await.unwrap();
    assert!(
        one.store
            .reference_data()
            .products
            .iter()
            .all(|p| p.id != gone)
    );
    one.store.set_notes(&a, "cooler empty").unwrap();
    one.store.check_out(&a, at).unwrap();
    let report = one.client.sync(&one.store, None).await.unwrap();
    assert!(report.rejections.is_empty(), "{:?}", report.rejections);
    assert!(one.store.quarantined().unwrap().is_empty());
    let on_server = common::server_visit(&server, &mgr, &a).await.unwrap();
    assert!(on_server.check_out.is_some(), "{on_server:?}");
    assert_eq!(on_server.notes, "cooler empty");
    assert!(on_server.inventory.contains_key(&gone));

    // Phone 2 still has the old catalogue: its offline line for the product is kept.
    two.store.check_in(&b, at).unwrap();
    two.store.record_inventory(&b, &gone, &line(3)).unwrap();
    let report = two.client.sync(&two.store, None).await.unwrap();
    assert!(report.rejections.is_empty(), "{:?}", report.rejections);
    assert!(two.store.quarantined().unwrap().is_empty());
    let on_server = common::server_visit(&server, &mgr, &b).await.unwrap();
    assert_eq!(on_server.inventory[&gone].shelf_qty, Some(3));

    // What no catalogue of this server ever listed is still refused: phone 2, now on the
    // current catalogue, is given a product of its own (the delisted one's GTIN, a new id).
    two.client.sync(&two.store, None).await.unwrap();
    let mut own = (*two.store.reference_data()).clone();
    let mut fake = r.products.iter().find(|p| p.id == gone).unwrap().clone();
    fake.id = "p-fake".into();
    own.products.push(fake);
    for a in &mut own.assortments {
        a.product_ids.push("p-fake".into());
    }
    two.store.replace_reference_data(own).unwrap();
    two.store.record_inventory(&b, "p-fake", &line(1)).unwrap();
    let report = two.client.sync(&two.store, None).await.unwrap();
    assert_eq!(report.rejections.len(), 1, "{report:?}");
    assert!(
        report.rejections[0]
            .reason
            .contains("inventory line for unknown product \"p-fake\""),
        "{:?}",
        report.rejections
    );
    let on_server = common::server_visit(&server, &mgr, &b).await.unwrap();
    assert!(!on_server.inventory.contains_key("p-fake"));
}

/// `r` without store `gone` (what `admin import --allow-removals` applies).
fn closed(r: &ReferenceData, gone: &str) -> ReferenceData {
    let mut next = r.clone();
    next.stores.retain(|s| s.id != gone);
    next.validate().expect("valid reference data");
    next
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_never_costs_a_rep_their_work() {
    let (tmp, _, r, mut server) = seeded_server();
    let mgr = common::token(&server, "manager1").await;
    let rep1 = user_id(&r, "rep1");
    let (shop, at) = common::shop(&r, "t-1", 1);
    let shop_id = shop.id.clone();
    // Visit `c` is checked in and synced before the store closes; the rest of its work,
    // and all of ad-hoc visit `d`, is done offline before the phone hears of the closing.
    let c = plan_visit(&server, &mgr, &shop_id, &rep1, now() - HOUR / 2).await;
    let one = device(&server, tmp.path(), "rep1", "phone-1").await;
    one.client.sync(&one.store, None).await.unwrap();
    one.store.check_in(&c, at).unwrap();
    let report = one.client.sync(&one.store, None).await.unwrap();
    assert!(report.rejections.is_empty(), "{:?}", report.rejections);

    let server = common::import_while_stopped(&mut server, closed(&r, &shop_id));

    let product = {
        let refs = one.store.reference_data();
        let idx = refs.index();
        idx.assortment_for(idx.store(&shop_id).unwrap())[0].to_string()
    };
    one.store.record_inventory(&c, &product, &line(0)).unwrap();
    one.store.set_notes(&c, "store closing down").unwrap();
    one.store.check_out(&c, at).unwrap();
    let d = one.store.create_ad_hoc_visit(&shop_id, "tt-quick").unwrap();
    one.store.check_in(&d, at).unwrap();
    one.store.record_inventory(&d, &product, &line(2)).unwrap();
    let report = one.client.sync(&one.store, None).await.unwrap();
    assert!(report.rejections.is_empty(), "{:?}", report.rejections);
    assert!(one.store.quarantined().unwrap().is_empty());
    assert_eq!(one.store.outbox_len().unwrap(), 0);
    let on_server = common::server_visit(&server, &mgr, &c).await.unwrap();
    assert!(on_server.check_out.is_some(), "{on_server:?}");
    assert_eq!(on_server.notes, "store closing down");
    let on_server = common::server_visit(&server, &mgr, &d).await.unwrap();
    assert_eq!(on_server.inventory[&product].shelf_qty, Some(2));

    // That sync brought the catalogue without the store, but the phone keeps the store
    // while its visits there are open: the rep can still check out of `d`.
    assert!(report.reference_updated);
    let held = one.store.reference_data();
    assert!(held.stores.iter().any(|s| s.id == shop_id));
    assert_eq!(held.stores.len(), stores_of(&r, "t-1").len());
    one.store.check_out(&d, at).unwrap();
    let report = one.client.sync(&one.store, None).await.unwrap();
    assert!(report.rejections.is_empty(), "{:?}", report.rejections);
    let on_server = common::server_visit(&server, &mgr, &d).await.unwrap();
    assert!(on_server.check_out.is_some(), "{on_server:?}");
    // The dashboard reports the visit worked after the closing at its store, by name.
    let report = common::get_json(&server, &mgr, &format!("/v1/reports/visits/{d}")).await;
    assert_eq!(report["store"]["name"], shop.name.as_str(), "{report}");
    assert_eq!(report["store"]["closed"], true, "{report}");
    assert!(report["day"].is_string(), "the store's local day: {report}");
    let (open_shop, _) = common::shop(&r, "t-1", 2);
    plan_visit(&server, &mgr, &open_shop.id, &rep1, now()).await;
    let list = common::get_json(&server, &mgr, "/v1/reports/visits").await;
    let row = list["visits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["visit_id"] == d.as_str())
        .unwrap_or_else(|| panic!("visit {d} listed: {list}"));
    assert_eq!(row["store_name"], shop.name.as_str());
    assert_eq!(row["store_closed"], true, "marked closed: {row}");
    let other = list["visits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["store_id"] != shop_id.as_str())
        .expect("a visit at an open store");
    assert_eq!(other["store_closed"], false, "{other}");

    // Done, the visits keep their store on the phone (route, visit, KPIs) while it holds
    // them; once retention purges them, the phone drops the store at its next sync.
    one.store.abandon(&c, "store closed").unwrap();
    one.store.abandon(&d, "store closed").unwrap();
    let report = one.client.sync(&one.store, None).await.unwrap();
    assert!(report.rejections.is_empty(), "{:?}", report.rejections);
    assert_eq!(one.store.closed_stores(), BTreeSet::from([shop_id.clone()]));
    // (As the server's purge does when the visits leave the rep's window.)
    assert!(one.store.purge_visit(&c).unwrap() && one.store.purge_visit(&d).unwrap());
    let report = one.client.sync(&one.store, None).await.unwrap();
    assert!(report.reference_updated);
    assert!(one.store.closed_stores().is_empty());
    let held = one.store.reference_data();
    assert!(!held.stores.iter().any(|s| s.id == shop_id));
    assert_eq!(held.stores.len(), stores_of(&r, "t-1").len() - 1);

    // A store no catalogue of this server ever listed is still refused.
    let mut own = (*one.store.reference_data()).clone();
    let mut fake = shop.clone();
    fake.id = "s-fake".into();
    own.stores.push(fake);
    one.store.replace_reference_data(own).unwrap();
    let e = one.store.create_ad_hoc_visit("s-fake", "tt-quick").unwrap();
    let report = one.client.sync(&one.store, None).await.unwrap();
    assert_eq!(report.rejections.len(), 1, "{report:?}");
    assert_eq!(report.rejections[0].visit_id, e);
    assert!(
        report.rejections[0]
            .reason
            .contains("unknown store \"s-fake\""),
        "{:?}",
        report.rejections
    );
    assert_eq!(common::server_visit(&server, &mgr, &e).await, Err(404));
}
