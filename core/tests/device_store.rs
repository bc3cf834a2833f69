//! The device store through its public API: a whole visit, bad input, rebuilds,
//! migrations and two replicas converging.

mod common;

use common::*;
use fieldsync_core::Error;
use fieldsync_core::clock::ManualClock;
use fieldsync_core::model::TaskKind;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::visit::*;
use std::collections::BTreeSet;
use std::sync::Arc;

type Heads = Vec<(String, Vec<String>)>;

fn db_snapshot(s: &DeviceStore) -> (Vec<String>, u64, Heads) {
    (
        s.projection_rows().unwrap(),
        s.outbox_len().unwrap(),
        s.all_heads().unwrap(),
    )
}

#[test]
fn a_whole_visit_offline() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let s = open(dir.path(), "rep", "rep-1", clock.clone());
    let r = s.reference_data();
    let store = &r.stores[0];
    let id = s
        .create_visit(plan(&store.id, "rep-1", NOW + 3_600_000))
        .unwrap();

    let route = s.today_route().unwrap();
    assert_eq!(route.len(), 1);
    assert_eq!(route[0].store_name, store.name);
    assert_eq!(route[0].status, VisitStatus::Planned);

    clock.advance(60_000);
    let cp = s.check_in(&id, store_position(&r, &store.id)).unwrap();
    assert!(!cp.outside_geofence);
    assert!(cp.distance_m < 1.0);

    let idx = r.index();
    let assortment = idx.assortment_for(store);
    for (i, pid) in assortment.iter().enumerate() {
        clock.advance(1000);
        let input = InventoryInput {
            shelf_qty: Some(if i == 0 { 0 } else { 5 + i as i64 }),
            backroom_qty: Some(2),
            out_of_stock: Some(i == 0),
            observed_price_cents: Some(idx.product(pid).unwrap().list_price_cents),
            facings: Some(2),
        };
        s.record_inventory(&id, pid, &input).unwrap();
    }
    // Required planogram task still open.
    let err = s.complete(&id).unwrap_err();
    assert!(matches!(err, Error::RequiredTasksOpen { .. }), "{err}");
    assert!(err.to_string().contains("planogram check"), "{err}");

    let pg = idx.planogram_for(store).unwrap();
    for (i, pos) in pg.positions.iter().enumerate() {
        let input = PositionInput {
            present: Some(true),
            actual_facings: Some(i64::from(pos.facings)),
            correct_position: Some(i % 5 != 0),
        };
        s.record_position(&id, &pos.id, &input).unwrap();
    }
    let day = today();
    for promo in idx.promotions_for(store, day) {
        let input = PromotionInput {
            display_in_place: Some(true),
            promo_price_correct: Some(true),
            materials_present: Some(false),
            observed_price_cents: Some(promo.promo_price_cents),
        };
        s.record_promotion(&id, &promo.id, &input).unwrap();
    }
    s.answer_survey(&id, "q-manager-met", &AnswerValue::Bool(true))
        .unwrap();
    s.set_order_line(&id, assortment[0], 24).unwrap();
    s.submit_order(&id).unwrap();
    s.set_notes(&id, "Cola display missing its header card.")
        .unwrap();
    s.check_out(&id, store_position(&r, &store.id)).unwrap();
    s.complete(&id).unwrap();

    let detail = s.visit_detail(&id).unwrap();
    assert_eq!(detail.visit.status, VisitStatus::Completed);
    assert!(detail.tasks.iter().all(|t| t.complete || !t.required));
    assert_eq!(detail.visit.inventory.len(), assortment.len());
    assert_eq!(detail.visit.notes, "Cola display missing its header card.");
    assert!(detail.conflicts.is_empty());
    let findings = s.store_findings(&store.id).unwrap();
    assert_eq!(
        findings.out_of_stock_product_ids,
        vec![assortment[0].to_string()]
    );
    assert_eq!(
        findings.non_compliant_promotion_ids.len(),
        idx.promotions_for(store, day).len()
    );

    let history = s.field_history(&id).unwrap();
    let shelf = history
        .iter()
        .find(|h| h.path == format!("inventory/{}/shelf", assortment[1]))
        .unwrap();
    assert_eq!(shelf.value, "6");
    assert_eq!(shelf.author.as_ref().unwrap().device_id, "dev-rep");
    assert!(
        history
            .iter()
            .any(|h| h.path == "actual/status" && h.value == "\"completed\"")
    );
    assert!(history.iter().any(|h| h.path == "notes"));

    let kpis = s.visit_kpis(&id).unwrap();
    let oos = kpis.audit.out_of_stock.value().unwrap();
    assert!((oos - 1.0 / assortment.len() as f64).abs() < 1e-9, "{oos}");
    // Every action is in the outbox until acknowledged.
    assert!(s.outbox_len().unwrap() > assortment.len() as u64);
    acknowledge_all(&s);
    assert_eq!(s.outbox_len().unwrap(), 0);
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

#[test]
fn bad_input_is_a_typed_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let s = open(dir.path(), "rep", "rep-1", clock);
    let r = s.reference_data();
    let store = r.stores[0].clone();
    let id = s.create_visit(plan(&store.id, "rep-1", NOW)).unwrap();
    let pid = r.index().assortment_for(&store)[0].to_string();

    // Recording before check-in.
    let before = db_snapshot(&s);
    let e = s
        .record_inventory(
            &id,
            &pid,
            &InventoryInput {
                shelf_qty: Some(1),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidTransition { .. }), "{e}");
    assert_eq!(db_snapshot(&s), before);

    s.check_in(&id, store_position(&r, &store.id)).unwrap();
    let before = db_snapshot(&s);
    type Case<'a> = (&'static str, Box<dyn Fn() -> Result<(), Error> + 'a>);
    let cases: Vec<Case<'_>> = vec![
        (
            "negative quantity",
            Box::new(|| {
                s.record_inventory(
                    &id,
                    &pid,
                    &InventoryInput {
                        shelf_qty: Some(-3),
                        ..Default::default()
                    },
                )
            }),
        ),
        (
            "unknown product",
            Box::new(|| {
                s.record_inventory(
                    &id,
                    "p-nope",
                    &InventoryInput {
                        shelf_qty: Some(3),
                        ..Default::default()
                    },
                )
            }),
        ),
        (
            "unknown visit",
            Box::new(|| s.record_inventory("v-nope", &pid, &InventoryInput::default())),
        ),
        (
            "unknown store",
            Box::new(|| s.create_visit(plan("st-nope", "rep-1", NOW)).map(|_| ())),
        ),
        (
            "unknown position",
            Box::new(|| s.record_position(&id, "pos-nope", &PositionInput::default())),
        ),
        (
            "unknown promotion",
            Box::new(|| s.record_promotion(&id, "promo-nope", &PromotionInput::default())),
        ),
        (
            "wrong survey type",
            Box::new(|| s.answer_survey(&id, "q-manager-met", &AnswerValue::Number(1.0))),
        ),
        (
            "negative order",
            Box::new(|| s.set_order_line(&id, &pid, -1)),
        ),
        ("complete with open tasks", Box::new(|| s.complete(&id))),
        (
            "cancel a started visit",
            Box::new(|| s.cancel(&id, "store closed", None)),
        ),
        (
            "check in twice",
            Box::new(|| s.check_in(&id, store_position(&r, &store.id)).map(|_| ())),
        ),
        (
            "notes past the end",
            Box::new(|| s.edit_notes(&id, 500, 0, "x")),
        ),
    ];
    for (name, f) in &cases {
        let e = f().expect_err(name);
        assert!(e.is_user_error(), "{name}: {e:?}");
        assert_eq!(db_snapshot(&s), before, "{name} changed the store");
    }
    // Error messages a rep can act on.
    let e = s
        .record_inventory(
            &id,
            &pid,
            &InventoryInput {
                shelf_qty: Some(-3),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "shelf quantity cannot be negative (got -3)");
    let e = s.cancel(&id, "store closed", None).unwrap_err();
    assert!(
        e.to_string().contains("can be abandoned, not canceled"),
        "{e}"
    );

    // A check-in on a completed visit.
    s.abandon(&id, "store closed for inventory").unwrap();
    let before = db_snapshot(&s);
    let e = s.check_in(&id, store_position(&r, &store.id)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot check in to a visit that is abandoned"
    );
    assert_eq!(db_snapshot(&s), before);

    // Invalid reference data is refused whole.
    let mut bad = r.as_ref().clone();
    bad.products[0].list_price_cents = -5;
    bad.stores[0].timezone = "Mars/Olympus".into();
    let e = s.replace_reference_data(bad).unwrap_err();
    assert!(
        e.to_string().contains("negative list price") && e.to_string().contains("Mars/Olympus"),
        "{e}"
    );
    assert_eq!(*s.reference_data(), *r);
}

#[test]
fn geofence_is_flagged_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "rep", "rep-1", Arc::new(ManualClock::new(NOW)));
    let r = s.reference_data();
    let store = &r.stores[3];
    let id = s.create_visit(plan(&store.id, "rep-1", NOW)).unwrap();
    let far = GeoPoint {
        lat: store.lat + 0.01,
        lng: store.lng,
    }; // ~1.1 km north
    let cp = s.check_in(&id, far).unwrap();
    assert!(cp.outside_geofence);
    assert!((cp.distance_m - 1112.0).abs() < 5.0, "{}", cp.distance_m);
    assert_eq!(s.visit(&id).unwrap().status, VisitStatus::InProgress);
}

#[test]
fn today_is_the_store_local_day() {
    let dir = tempfile::tempdir().unwrap();
    // 23:30 UTC on Nov 27 is already Nov 28 in Berlin (UTC+1).
    let late = NOW + 14 * 3_600_000 + 30 * 60_000;
    let clock = Arc::new(ManualClock::new(late));
    let s = open(dir.path(), "rep", "rep-1", clock);
    let r = s.reference_data();
    let berlin = r
        .stores
        .iter()
        .find(|s| s.timezone == "Europe/Berlin")
        .unwrap();
    // Planned Nov 28 08:00 Berlin time = 07:00 UTC.
    let tomorrow_morning = NOW + 22 * 3_600_000;
    let id = s
        .create_visit(plan(&berlin.id, "rep-1", tomorrow_morning))
        .unwrap();
    let _yesterday = s.create_visit(plan(&berlin.id, "rep-1", NOW)).unwrap();
    let route = s.today_route().unwrap();
    assert_eq!(
        route.iter().map(|e| e.visit_id.clone()).collect::<Vec<_>>(),
        vec![id]
    );
}

#[test]
fn projections_rebuild_to_identical_rows() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let s = open(dir.path(), "rep", "rep-1", clock.clone());
    let r = s.reference_data();
    for (k, store) in r.stores.iter().take(5).enumerate() {
        let id = s
            .create_visit(plan(&store.id, "rep-1", NOW + k as i64 * 3_600_000))
            .unwrap();
        s.check_in(&id, store_position(&r, &store.id)).unwrap();
        for pid in r.index().assortment_for(store).iter().take(8) {
            clock.advance(500);
            s.record_inventory(
                &id,
                pid,
                &InventoryInput {
                    shelf_qty: Some(3),
                    facings: Some(1),
                    ..Default::default()
                },
            )
            .unwrap();
        }
        s.answer_survey(&id, "q-remarks", &AnswerValue::Text("ok".into()))
            .unwrap();
        s.set_notes(&id, &format!("visit {k}")).unwrap();
    }
    let before = s.projection_rows().unwrap();
    assert!(before.len() > 40);
    s.rebuild_projections().unwrap();
    assert_eq!(s.projection_rows().unwrap(), before);
    s.compact_all().unwrap();
    s.rebuild_projections().unwrap();
    assert_eq!(s.projection_rows().unwrap(), before);
}

#[test]
fn tasks_report_progress() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), "rep", "rep-1", Arc::new(ManualClock::new(NOW)));
    let r = s.reference_data();
    let store = &r.stores[0];
    let id = s.create_visit(plan(&store.id, "rep-1", NOW)).unwrap();
    s.check_in(&id, store_position(&r, &store.id)).unwrap();
    let pid = r.index().assortment_for(store)[0].to_string();
    s.record_inventory(
        &id,
        &pid,
        &InventoryInput {
            shelf_qty: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    let tasks = s.visit_detail(&id).unwrap().tasks;
    let inv = tasks
        .iter()
        .find(|t| t.kind == TaskKind::InventoryCheck)
        .unwrap();
    assert_eq!(
        (inv.done, inv.total, inv.required, inv.complete),
        (1, r.index().assortment_for(store).len() as u32, true, false)
    );
}

#[test]
fn concurrent_calls_from_several_threads() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(
        dir.path(),
        "rep",
        "rep-1",
        Arc::new(ManualClock::new(NOW)),
    ));
    let r = s.reference_data();
    let store = r.stores[0].clone();
    let id = s.create_visit(plan(&store.id, "rep-1", NOW)).unwrap();
    s.check_in(&id, store_position(&r, &store.id)).unwrap();
    let products: Vec<String> = r
        .index()
        .assortment_for(&store)
        .iter()
        .map(|p| p.to_string())
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (s, id, products) = (s.clone(), id.clone(), products.clone());
            std::thread::spawn(move || {
                for (i, pid) in products.iter().enumerate().filter(|(i, _)| i % 4 == t) {
                    let input = InventoryInput {
                        shelf_qty: Some(i as i64),
                        ..Default::default()
                    };
                    s.record_inventory(&id, pid, &input).unwrap();
                    s.today_route().unwrap();
                    s.visit_detail(&id).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let visit = s.visit(&id).unwrap();
    assert_eq!(visit.inventory.len(), products.len());
    for (i, pid) in products.iter().enumerate() {
        assert_eq!(visit.inventory[pid].shelf_qty, Some(i as i64));
    }
    assert_eq!(s.outbox_len().unwrap(), products.len() as u64 + 2);
}

/// A store closed by head office stays on the phone while a visit held there is open, so
/// the rep can finish it; it goes with the first update after, and is never kept when it
/// no longer fits the new data.
#[test]
fn a_closed_store_stays_while_a_visit_there_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let s = open(dir.path(), "rep", "rep-1", clock.clone());
    let r = s.reference_data();
    let (open_at, idle) = (r.stores[0].clone(), r.stores[1].clone());
    let v = s
        .create_visit(plan(&open_at.id, "rep-1", NOW + 3_600_000))
        .unwrap();
    let without = |data: &fieldsync_core::model::ReferenceData| {
        let mut next = data.clone();
        next.stores.retain(|x| x != &open_at && x.id != idle.id);
        next.version += 1;
        next
    };
    let ids = s.receive_reference_data(without(&r), None, &[]).unwrap();
    assert_eq!(ids, vec![open_at.id.clone()]);
    let held = s.reference_data();
    assert!(held.stores.contains(&open_at));
    assert!(
        !held.stores.iter().any(|x| x.id == idle.id),
        "no open visit there"
    );
    assert_eq!(held.version, r.version + 1);
    // The rep is told: on the route and in the visit.
    let closed_on_route = |s: &DeviceStore| {
        let day = fieldsync_core::rules::local_day(&open_at, NOW + 3_600_000);
        let route = s.route_for_day(day).unwrap();
        let e = route
            .iter()
            .find(|e| e.visit_id == v)
            .expect("on the route");
        assert_eq!(s.visit_detail(&v).unwrap().store_closed, e.store_closed);
        e.store_closed
    };
    assert!(closed_on_route(&s));
    assert_eq!(s.closed_stores(), BTreeSet::from([open_at.id.clone()]));
    // The closed store takes no new visit, nor a visit moved there.
    let refused = s
        .create_visit(plan(&open_at.id, "rep-1", NOW + 7_200_000))
        .unwrap_err()
        .to_string();
    assert!(refused.contains("closed by head office"), "{refused}");
    let other = held.stores.iter().find(|x| x.id != open_at.id).unwrap();
    let w = s
        .create_visit(plan(&other.id, "rep-1", NOW + 7_200_000))
        .unwrap();
    let moved = plan(&open_at.id, "rep-1", NOW + 7_200_000);
    let refused = s.update_plan(&w, &moved).unwrap_err().to_string();
    assert!(refused.contains("closed by head office"), "{refused}");
    assert_eq!(s.visit(&w).unwrap().plan.store_id, other.id, "unchanged");

    // Kept while the visit is open, across a restart and a further update.
    assert!(s.release_closed_stores().unwrap().is_empty());
    drop(s);
    // (Reopened as it is: `open` would replace the reference data.)
    let s =
        DeviceStore::open_with_clock(dir.path().join("rep.db"), "rep-1", "dev-rep", clock.clone())
            .unwrap();
    let store_ids = |d: &fieldsync_core::model::ReferenceData| {
        let ids: BTreeSet<String> = d.stores.iter().map(|x| x.id.clone()).collect();
        (d.version, ids)
    };
    assert_eq!(
        store_ids(&s.reference_data()),
        store_ids(&held),
        "kept across a restart"
    );
    assert!(s.release_closed_stores().unwrap().is_empty());
    assert!(closed_on_route(&s), "still flagged after a restart");
    let next = without(&held);
    assert_eq!(
        s.receive_reference_data(next.clone(), None, &[]).unwrap(),
        vec![open_at.id.clone()]
    );
    // The rep works the visit to its end at the closed store; then the store goes.
    let at = store_position(&r, &open_at.id);
    s.check_in(&v, at).unwrap();
    s.check_out(&v, at).unwrap();
    s.abandon(&v, "store closed").unwrap();
    // Done, the visit still shows its store (route, detail) while the device holds it.
    assert!(s.release_closed_stores().unwrap().is_empty());
    assert!(closed_on_route(&s));
    assert_eq!(s.visit_detail(&v).unwrap().store_name, open_at.name);
    // Retention purges it (once the server has every change): then the store goes.
    assert!(!s.purge_visit(&v).unwrap(), "not before the server has it");
    assert!(s.release_closed_stores().unwrap().is_empty());
    acknowledge_all(&s);
    assert!(s.purge_visit(&v).unwrap());
    assert_eq!(s.release_closed_stores().unwrap(), vec![open_at.id.clone()]);
    assert_eq!(*s.reference_data(), next, "the server's data, exactly");
    assert!(s.closed_stores().is_empty());
    assert!(s.release_closed_stores().unwrap().is_empty());

    // A kept store whose territory is gone too is not kept (the data would not hold).
    let s2 = open(dir.path(), "rep2", "rep-1", clock);
    s2.create_visit(plan(&open_at.id, "rep-1", NOW + 3_600_000))
        .unwrap();
    let mut gone = without(&r);
    gone.territories.retain(|t| t.id != open_at.territory_id);
    gone.stores
        .retain(|x| x.territory_id != open_at.territory_id);
    gone.users
        .iter_mut()
        .for_each(|u| u.territory_ids.retain(|t| t != &open_at.territory_id));
    gone.validate().expect("valid without the territory");
    assert!(
        s2.receive_reference_data(gone, None, &[])
            .unwrap()
            .is_empty()
    );
    assert!(
        !s2.reference_data()
            .stores
            .iter()
            .any(|x| x.id == open_at.id)
    );
}

/// A past visit keeps the KPIs of the reference data in effect when it was worked, as the
/// dashboard judges it: a planogram changed by a later import does not rewrite them.
#[test]
fn past_visits_are_judged_with_the_reference_data_of_their_time() {
    use fieldsync_core::kpi;
    use fieldsync_core::visit::PositionInput;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let s = open(dir.path(), "rep", "rep-1", clock.clone());
    let r = s.reference_data();
    let shop = r.stores[0].clone();
    let at = store_position(&r, &shop.id);
    // Worked an hour from now, to the planogram as it is.
    clock.set(NOW + 3_600_000);
    let v = s
        .create_visit(plan(&shop.id, "rep-1", NOW + 3_600_000))
        .unwrap();
    s.check_in(&v, at).unwrap();
    let positions = s.visit_checklist(&v).unwrap().positions;
    let (pos, dropped) = (positions[0].clone(), positions[1].clone());
    let input = PositionInput {
        present: Some(true),
        actual_facings: Some(i64::from(pos.facings)),
        correct_position: Some(true),
    };
    s.record_position(&v, &pos.id, &input).unwrap();
    let worked = s.visit_kpis(&v).unwrap();

    // Head office asks for more facings of that position and drops another; the phone
    // hears of it later.
    let mut next = (*r).clone();
    next.version += 1;
    for pg in &mut next.planograms {
        for p in pg.positions.iter_mut().filter(|p| p.id == pos.id) {
            p.facings += 3;
        }
        pg.positions.retain(|p| p.id != dropped.id);
    }
    clock.set(NOW + 3 * 3_600_000);
    s.receive_reference_data(next.clone(), Some(NOW + 2 * 3_600_000), &[])
        .unwrap();
    let visit = s.visit(&v).unwrap();
    let under_next = kpi::visit_kpis(&visit, &next.index());
    assert_ne!(under_next, worked, "the new planogram judges it otherwise");
    assert_eq!(s.visit_kpis(&v).unwrap(), worked, "judged as when worked");
    assert_eq!(s.reference_for(&visit).unwrap().version, r.version);

    // A visit worked after the import is judged with the new data; a summary with each.
    let w = s
        .create_visit(plan(&shop.id, "rep-1", NOW + 3 * 3_600_000))
        .unwrap();
    s.check_in(&w, at).unwrap();
    s.record_position(&w, &pos.id, &input).unwrap();
    let later = s.visit(&w).unwrap();
    assert_eq!(s.reference_for(&later).unwrap().version, next.version);
    assert_eq!(
        s.visit_kpis(&w).unwrap(),
        kpi::visit_kpis(&later, &next.index())
    );
    let expected = kpi::KpiSummary::aggregate(
        &[worked.clone(), kpi::visit_kpis(&later, &next.index())],
        s.now(),
        &next.settings,
    );
    assert_eq!(
        s.kpi_summary(NOW - 86_400_000, NOW + 86_400_000).unwrap(),
        expected
    );

    // Kept across a restart (reopened as it is).
    drop(s);
    let s =
        DeviceStore::open_with_clock(dir.path().join("rep.db"), "rep-1", "dev-rep", clock.clone())
            .unwrap();
    assert_eq!(s.visit_kpis(&v).unwrap(), worked, "after a restart");

    // The visit checked in before the import goes on with the planogram of its check-in
    // (what it is judged by); the one after works with the new one.
    let of = |id: &str| s.visit_checklist(id).unwrap().positions;
    assert_eq!(of(&v), positions);
    assert!(of(&w).iter().all(|p| p.id != dropped.id));
    assert_eq!(of(&w)[0].facings, pos.facings + 3);
    s.record_position(&v, &dropped.id, &input).unwrap();
    assert!(s.record_position(&w, &dropped.id, &input).is_err());

    // A version replaced more than a month ago is no longer kept: the oldest kept stands in.
    let mut third = next.clone();
    third.version += 1;
    clock.set(NOW + 40 * 86_400_000);
    s.receive_reference_data(third.clone(), None, &[]).unwrap();
    assert_eq!(s.reference_for(&visit).unwrap().version, next.version);
    // And at most 32 are kept: after 33 more imports, `next` and `third` are gone.
    let mut later = third.clone();
    for _ in 0..33 {
        later.version += 1;
        clock.advance(60_000);
        s.receive_reference_data(later.clone(), None, &[]).unwrap();
    }
    assert_eq!(s.reference_for(&visit).unwrap().version, third.version + 1);
}

/// A phone set up after imports (a replacement phone) holds no older data of its own: the
/// versions the server sends with the current one judge the visits worked in their time,
/// across a restart. A version that is invalid, out of order or repeats the current one
/// is left out.
#[test]
fn a_new_phone_keeps_the_earlier_versions_the_server_sent() {
    use fieldsync_core::model::ReferenceData;
    use fieldsync_core::sync::protocol::ReferenceVersion;
    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW + 4 * HOUR));
    let path = dir.path().join("new.db");
    let s = DeviceStore::open_with_clock(&path, "rep-1", "dev-new", clock.clone()).unwrap();
    let named = |version: i64, name: &str| {
        let mut d = refs();
        d.version = version;
        d.stores[0].name = name.into();
        d
    };
    let earlier = vec![
        ReferenceVersion {
            since: NOW,
            data: named(2, "first"),
        },
        ReferenceVersion {
            since: NOW + HOUR,
            data: named(3, "second"),
        },
    ];
    let current = named(4, "current");

    // Versions that break a rule are left out, the rest taken: one repeating the current
    // version, one invalid, one taking effect after the current data.
    let other =
        DeviceStore::open_with_clock(dir.path().join("other.db"), "rep-1", "o", clock.clone())
            .unwrap();
    let mut invalid = named(3, "invalid");
    invalid.stores.push(invalid.stores[0].clone());
    let version = |since: i64, data: ReferenceData| ReferenceVersion { since, data };
    let bad = vec![
        earlier[0].clone(),
        version(NOW + HOUR / 2, invalid),
        version(NOW + HOUR, named(4, "repeat")),
        version(NOW + 3 * HOUR, named(3, "late")),
    ];
    other
        .receive_reference_data(current.clone(), Some(NOW + 2 * HOUR), &bad)
        .unwrap();
    assert_eq!(other.reference_data().version, 4);
    let shop = current.stores[0].id.clone();
    for (start, name) in [(NOW + HOUR + 1, "first"), (NOW + 3 * HOUR, "current")] {
        let v = other.create_visit(plan(&shop, "rep-1", start)).unwrap();
        let visit = other.visit(&v).unwrap();
        assert_eq!(other.reference_for(&visit).unwrap().stores[0].name, name);
    }

    s.receive_reference_data(current.clone(), Some(NOW + 2 * HOUR), &earlier)
        .unwrap();
    let at = |start: i64| s.create_visit(plan(&shop, "rep-1", start)).unwrap();
    let visits = [
        (at(NOW - HOUR), "first"), // before the oldest: the oldest stands in
        (at(NOW + HOUR / 2), "first"),
        (at(NOW + HOUR + 1), "second"),
        (at(NOW + 3 * HOUR), "current"),
    ];
    let check = |s: &DeviceStore| {
        for (v, name) in &visits {
            let visit = s.visit(v).unwrap();
            assert_eq!(s.reference_for(&visit).unwrap().stores[0].name, *name);
        }
    };
    check(&s);
    drop(s);
    let s = DeviceStore::open_with_clock(&path, "rep-1", "dev-new", clock).unwrap();
    check(&s);

    // The next version: the current one joins the kept ones, each still in its place.
    let next = named(5, "next");
    s.receive_reference_data(next, Some(NOW + 5 * HOUR), &[])
        .unwrap();
    check(&s);
}

/// A visit whose store the reference data held here lacks (data replaced without it) stays
/// on the route, by the store's id, and opens: the rep never loses sight of a visit.
#[test]
fn a_visit_at_a_store_the_phone_lacks_stays_on_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let s = open(dir.path(), "rep", "rep-1", clock);
    let r = s.reference_data();
    let shop = r.stores[0].clone();
    let v = s
        .create_visit(plan(&shop.id, "rep-1", NOW + 600_000))
        .unwrap();
    let mut next = (*r).clone();
    next.stores.retain(|x| x.id != shop.id);
    next.version += 1;
    s.replace_reference_data(next).unwrap();
    let utc_day = chrono::DateTime::from_timestamp_millis(NOW + 600_000)
        .unwrap()
        .date_naive();
    let route = s.route_for_day(utc_day).unwrap();
    let e = route
        .iter()
        .find(|e| e.visit_id == v)
        .expect("on the route");
    assert_eq!(e.store_name, shop.id);
    assert!(s.today_route().unwrap().iter().any(|e| e.visit_id == v));
    assert_eq!(s.visit_detail(&v).unwrap().store_name, shop.id);
}

/// A visit worked on another phone at a store head office had closed reaches a phone that
/// had already dropped the store (it held no visit there when the closing arrived): it is
/// judged by the data of its time with the store as the newest kept version lists it, as
/// the dashboard judges it, not as a visit at an unknown store.
#[test]
fn a_visit_at_a_store_this_phone_dropped_is_judged_by_the_data_of_its_time_with_the_store() {
    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let (a, b) = (
        open(dir.path(), "a", "rep-1", clock.clone()),
        open(dir.path(), "b", "rep-1", clock.clone()),
    );
    let r = a.reference_data();
    let shop = r.stores[0].clone();
    let mut closed = (*r).clone();
    closed.stores.retain(|s| s.id != shop.id);
    closed.version += 1;
    // Phone b hears of the closing (it holds no visit there, so it drops the store)...
    clock.set(NOW + 2 * HOUR);
    b.receive_reference_data(closed, Some(NOW + HOUR), &[])
        .unwrap();
    assert!(b.reference_data().stores.iter().all(|s| s.id != shop.id));
    // ...while phone a, offline, still works there after the closing.
    let v = a
        .create_visit(plan(&shop.id, "rep-1", NOW + HOUR + HOUR / 2))
        .unwrap();
    a.check_in(&v, store_position(&r, &shop.id)).unwrap();
    let changes = a.changes_since(&v, &[]).unwrap();
    b.apply_remote(&v, &changes).unwrap();
    let visit = b.visit(&v).unwrap();
    // The data in effect when it was worked (the closing's), with the store as the older
    // version listed it: as the dashboard judges it.
    let judged = b.reference_for(&visit).unwrap();
    assert_eq!(judged.version, r.version + 1);
    assert_eq!(judged.stores.iter().find(|s| s.id == shop.id), Some(&shop));
    let kpis = b.visit_kpis(&v).unwrap();
    assert!(kpis.store_known, "{kpis:?}");
    assert_eq!(kpis, a.visit_kpis(&v).unwrap());
}

/// A phone that missed the import renaming a store hears of the store's closing with that
/// import among the earlier versions: it keeps the store (it holds a visit there) as the
/// renaming listed it, the record the dashboard judges the visit with.
#[test]
fn a_closed_store_the_phone_keeps_is_as_last_listed() {
    use fieldsync_core::sync::protocol::ReferenceVersion;
    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let s = open(dir.path(), "rep", "rep-1", clock.clone());
    let r = s.reference_data();
    let shop = r.stores[0].id.clone();
    let v = s
        .create_visit(plan(&shop, "rep-1", NOW + 3 * HOUR))
        .unwrap();
    let mut renamed = (*r).clone();
    renamed.version += 1;
    renamed.stores[0].name = "renamed".into();
    let mut closed = renamed.clone();
    closed.version += 1;
    closed.stores.retain(|x| x.id != shop);
    clock.set(NOW + 4 * HOUR);
    let earlier = [ReferenceVersion {
        since: NOW + HOUR,
        data: renamed,
    }];
    s.receive_reference_data(closed, Some(NOW + 2 * HOUR), &earlier)
        .unwrap();
    assert!(s.closed_stores().contains(&shop));
    let name = |d: &fieldsync_core::model::ReferenceData| {
        d.stores.iter().find(|x| x.id == shop).unwrap().name.clone()
    };
    assert_eq!(name(&s.reference_data()), "renamed");
    let visit = s.visit(&v).unwrap();
    assert_eq!(name(&s.reference_for(&visit).unwrap()), "renamed");
}
