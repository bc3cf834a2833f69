//! Reports judge a visit against the reference data in effect when it was worked: an
//! import that delists a product and changes a price afterwards leaves last visits' KPIs,
//! names and findings as they were, while visits worked after it use the new data.

mod common;

use common::{HOUR, Server, device, http, now, plan_visit, seeded_server, user_id};
use fieldsync_core::sync::SyncClient;
use fieldsync_core::visit::InventoryInput;
use fieldsync_server::{SqliteStore, Store};
use serde_json::Value;

fn ratio(v: &Value) -> (u64, u64) {
    (v["num"].as_u64().unwrap(), v["den"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_does_not_rewrite_the_kpis_of_visits_worked_before_it() {
    let (tmp, data, r, mut server) = seeded_server();
    let mgr = common::token(&server, "manager1").await;
    let rep1 = user_id(&r, "rep1");
    let (shop, at) = common::shop(&r, "t-1", 0);
    let shop_id = shop.id.clone();
    let v = plan_visit(&server, &mgr, &shop_id, &rep1, now() - HOUR / 2).await;
    let phone = device(&server, tmp.path(), "rep1", "phone").await;
    phone.client.sync(&phone.store, None).await.unwrap();
    let assortment: Vec<String> = {
        let refs = phone.store.reference_data();
        let idx = refs.index();
        idx.assortment_for(idx.store(&shop_id).unwrap())
            .into_iter()
            .take(4)
            .map(str::to_string)
            .collect()
    };
    let price = |id: &str| list_price(&r, id);
    phone.store.check_in(&v, at).unwrap();
    // The first product is out of stock; the others are on the shelf at their list price.
    for (i, p) in assortment.iter().enumerate() {
        let input = InventoryInput {
            shelf_qty: Some(if i == 0 { 0 } else { 5 }),
            out_of_stock: Some(i == 0),
            observed_price_cents: (i > 0).then(|| price(p)),
            ..Default::default()
        };
        phone.store.record_inventory(&v, p, &input).unwrap();
    }
    phone.client.sync(&phone.store, None).await.unwrap();

    let day = chrono::Utc::now().date_naive();
    let range = format!(
        "from={}&to={}",
        day - chrono::Days::new(1),
        day + chrono::Days::new(1)
    );
    let overview = format!("/v1/reports/overview?{range}&rep={rep1}");
    let before = common::get_json(&server, &mgr, &overview).await;
    assert_eq!(
        ratio(&before["summary"]["out_of_stock"]),
        (1, 4),
        "{before}"
    );
    assert_eq!(
        ratio(&before["summary"]["price_compliance"]),
        (3, 3),
        "{before}"
    );
    let detail_before = common::get_json(&server, &mgr, &format!("/v1/reports/visits/{v}")).await;
    let phone_before = phone.store.visit_kpis(&v).unwrap();

    // Head office delists the out-of-stock product and raises the second one's price.
    server.stop();
    let (gone, raised) = (assortment[0].clone(), assortment[1].clone());
    let mut next = r.clone();
    next.delist_product(&gone);
    for p in &mut next.products {
        if p.id == raised {
            p.list_price_cents += 50;
        }
    }
    next.validate().expect("the new reference data is valid");
    {
        let store = SqliteStore::open_dir(&data).unwrap();
        store.import_reference(next).unwrap();
        assert_eq!(store.reference_versions().unwrap().len(), 2);
    }
    let server = Server::start(&data, 0);

    // The visit worked before the import: the same KPIs, the delisted product named.
    let after = common::get_json(&server, &mgr, &overview).await;
    assert_eq!(after["summary"], before["summary"]);
    let detail = common::get_json(&server, &mgr, &format!("/v1/reports/visits/{v}")).await;
    assert_eq!(detail["summary"], detail_before["summary"]);
    assert_eq!(detail["store"]["closed"], false, "an open store: {detail}");
    assert_eq!(
        detail["reference_version"],
        detail_before["reference_version"]
    );
    assert_eq!(detail["inventory"], detail_before["inventory"]);
    let line = detail["inventory"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["line"]["product_id"] == gone.as_str())
        .unwrap();
    let gone_name = &r.products.iter().find(|p| p.id == gone).unwrap().name;
    assert_eq!(line["name"], gone_name.as_str());
    assert_eq!(line["out_of_stock"], true);
    let store_report = common::get_json(
        &server,
        &mgr,
        &format!("/v1/reports/stores/{shop_id}?{range}"),
    )
    .await;
    let oos: Vec<&Value> = store_report["out_of_stock"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(oos.len(), 1, "{store_report}");
    assert_eq!(oos[0]["name"], gone_name.as_str());
    let csv = http()
        .get(server.url(&format!("/v1/reports/export/inventory.csv?{range}")))
        .bearer_auth(&mgr)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.contains(gone_name.as_str()), "{csv}");

    // The phone that worked the visit gets the new data (the server restarted on another
    // port) and keeps judging the visit as the dashboard does.
    let client =
        SyncClient::with_config(&server.base, &phone.token, common::fast_config()).unwrap();
    assert!(
        client
            .sync(&phone.store, None)
            .await
            .unwrap()
            .reference_updated
    );
    assert_eq!(phone.store.visit_kpis(&v).unwrap(), phone_before);

    // A visit worked after the import is judged with the new data: the old price is wrong now.
    let w = plan_visit(&server, &mgr, &shop_id, &rep1, now() - HOUR / 4).await;
    let first_phone = phone;
    let phone = device(&server, tmp.path(), "rep1", "phone-2").await;
    phone.client.sync(&phone.store, None).await.unwrap();
    phone.store.check_in(&w, at).unwrap();
    let input = on_shelf_at(price(&raised));
    phone.store.record_inventory(&w, &raised, &input).unwrap();
    phone.client.sync(&phone.store, None).await.unwrap();
    let later = common::get_json(&server, &mgr, &format!("/v1/reports/visits/{w}")).await;
    assert!(
        later["reference_version"].as_i64().unwrap()
            > detail["reference_version"].as_i64().unwrap()
    );
    assert_eq!(
        ratio(&later["summary"]["price_compliance"]),
        (0, 1),
        "{later}"
    );
    let both = common::get_json(&server, &mgr, &overview).await;
    assert_eq!(
        ratio(&both["summary"]["price_compliance"]),
        (3, 4),
        "{both}"
    );
    // The first phone, holding both visits, sums them as the dashboard does: each with the
    // data of its time.
    client.sync(&first_phone.store, None).await.unwrap();
    let mine = first_phone
        .store
        .kpi_summary_of(&[
            first_phone.store.visit(&v).unwrap(),
            first_phone.store.visit(&w).unwrap(),
        ])
        .unwrap();
    let pair = |r: &fieldsync_core::kpi::Ratio| (r.numerator, r.denominator);
    assert_eq!(pair(&mine.audit.price_compliance), (3, 4));
    assert_eq!(
        pair(&mine.audit.out_of_stock),
        ratio(&both["summary"]["out_of_stock"])
    );

    // Head office raises the price again while the phone is offline, and the rep works a
    // visit before the phone hears of it: the phone judges it with the data in effect since
    // the import (the server says when), as the dashboard does, not since it heard.
    let x = plan_visit(&server, &mgr, &shop_id, &rep1, now()).await;
    client.sync(&first_phone.store, None).await.unwrap();
    let mut server = server;
    server.stop();
    let mut third = (*first_phone.store.reference_data()).clone();
    let known_price = list_price(&third, &raised);
    for p in &mut third.products {
        if p.id == raised {
            p.list_price_cents *= 2;
        }
    }
    {
        let store = SqliteStore::open_dir(&data).unwrap();
        let mut all = store.reference().unwrap().as_ref().clone();
        all.products = third.products.clone();
        store.import_reference(all).unwrap();
    }
    let server = Server::start(&data, 0);
    first_phone.store.check_in(&x, at).unwrap();
    let input = on_shelf_at(known_price);
    first_phone
        .store
        .record_inventory(&x, &raised, &input)
        .unwrap();
    let client =
        SyncClient::with_config(&server.base, &first_phone.token, common::fast_config()).unwrap();
    assert!(
        client
            .sync(&first_phone.store, None)
            .await
            .unwrap()
            .reference_updated
    );
    let on_dashboard = common::get_json(&server, &mgr, &format!("/v1/reports/visits/{x}")).await;
    assert_eq!(
        ratio(&on_dashboard["summary"]["price_compliance"]),
        (0, 1),
        "{on_dashboard}"
    );
    let on_phone = first_phone.store.visit_kpis(&x).unwrap();
    assert_eq!(pair(&on_phone.audit.price_compliance), (0, 1));

    // A phone set up after all three imports (a replacement phone) gets the versions in
    // effect within the rep's window with the current data, and judges each visit as the
    // dashboard does, not with today's data: the first visit still counts the delisted
    // product out of stock and the first price as compliant.
    let fresh = device(&server, tmp.path(), "rep1", "phone-3").await;
    fresh.client.sync(&fresh.store, None).await.unwrap();
    assert_eq!(fresh.store.visit_kpis(&v).unwrap(), phone_before);
    assert_eq!(
        fresh.store.visit_kpis(&w).unwrap(),
        first_phone.store.visit_kpis(&w).unwrap()
    );
    let visits = |s: &fieldsync_core::store::DeviceStore| {
        [&v, &w, &x].map(|id| s.visit(id).unwrap()).to_vec()
    };
    let all = fresh.store.kpi_summary_of(&visits(&fresh.store)).unwrap();
    let held = (first_phone.store)
        .kpi_summary_of(&visits(&first_phone.store))
        .unwrap();
    assert_eq!(all.audit, held.audit);
    assert_eq!(all.perfect_store_score, held.perfect_store_score);
    let three = common::get_json(&server, &mgr, &overview).await;
    assert_eq!(
        pair(&all.audit.price_compliance),
        ratio(&three["summary"]["price_compliance"]),
        "{three}"
    );
    assert_eq!(
        pair(&all.audit.out_of_stock),
        ratio(&three["summary"]["out_of_stock"]),
        "{three}"
    );
}

/// Five on the shelf, at `price` (cents).
fn on_shelf_at(price: i64) -> InventoryInput {
    InventoryInput {
        shelf_qty: Some(5),
        out_of_stock: Some(false),
        observed_price_cents: Some(price),
        ..Default::default()
    }
}

/// Product `id`'s list price in `r`.
fn list_price(r: &fieldsync_core::model::ReferenceData, id: &str) -> i64 {
    r.products
        .iter()
        .find(|p| p.id == id)
        .unwrap()
        .list_price_cents
}
