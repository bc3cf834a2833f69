//! `serve --demo`: seeds realistic data and runs simulated reps and managers that use
//! `fieldsync-core` for real (device stores in temp dirs, sync over HTTP).

use chrono::Utc;
use fieldsync_core::document::VisitDoc;
use fieldsync_core::fixtures::{self, FixtureSize, Rng};
use fieldsync_core::model::Role;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::{SyncClient, login};
use fieldsync_core::visit::{
    AnswerValue, Author, GeoPoint, InventoryInput, PositionInput, PromotionInput, VisitPlan,
    VisitStatus,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::store::{Store, StoreError};

/// A demo account.
#[derive(Clone, Debug)]
pub struct DemoUser {
    pub username: String,
    pub user_id: String,
    pub role: Role,
    pub password: String,
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Seeds the demo (once per data dir); returns the accounts with their passwords.
pub fn seed(store: &dyn Store, data_dir: &Path) -> Result<Vec<DemoUser>, String> {
    let creds_file = data_dir.join("demo-credentials.json");
    if let Ok(text) = std::fs::read_to_string(&creds_file) {
        let v: Vec<(String, String, String, String)> =
            serde_json::from_str(&text).map_err(|e| e.to_string())?;
        return Ok(v
            .into_iter()
            .map(|(username, user_id, role, password)| DemoUser {
                username,
                user_id,
                role: Role::parse(&role).unwrap_or(Role::Rep),
                password,
            })
            .collect());
    }
    let today = Utc::now().date_naive();
    let refs = fixtures::reference_data(42, &FixtureSize::default(), today);
    let idx = refs.index();
    store
        .import_reference(refs.clone())
        .map_err(|e| e.to_string())?;
    let mut users = Vec::new();
    for u in &refs.users {
        let password = crate::auth::generate_password();
        crate::admin::create_user(
            store,
            &u.username,
            u.role,
            &u.territory_ids,
            Some(&password),
        )?;
        users.push(DemoUser {
            username: u.username.clone(),
            user_id: u.id.clone(),
            role: u.role,
            password,
        });
    }
    // Plans: each rep visits three of their territory's stores a day, ±7 days.
    let mut rng = Rng::new(7);
    let now = Utc::now().timestamp_millis();
    let midnight = now - now.rem_euclid(DAY);
    for t in &refs.territories {
        let reps: Vec<_> = refs
            .users
            .iter()
            .filter(|u| u.role == Role::Rep && u.territory_ids.contains(&t.id))
            .collect();
        let manager = refs
            .users
            .iter()
            .find(|u| u.role == Role::Manager && u.territory_ids.contains(&t.id));
        let stores: Vec<_> = refs
            .stores
            .iter()
            .filter(|s| s.territory_id == t.id)
            .collect();
        let Some(manager) = manager else { continue };
        let author = Author {
            user_id: manager.id.clone(),
            device_id: "server".into(),
        };
        for (ri, rep) in reps.iter().enumerate() {
            for day in -7..=7 {
                for slot in 0..3 {
                    let shop = stores[(ri * 3 + slot + (day + 7) as usize * 2) % stores.len()];
                    let start = midnight + day * DAY + (7 + slot as i64 * 3) * HOUR;
                    let plan = VisitPlan {
                        store_id: shop.id.clone(),
                        rep_id: rep.id.clone(),
                        planned_start: start,
                        planned_end: start + HOUR,
                        priority: 1 + rng.below(5) as u8,
                        instructions: [
                            "Check the cola display",
                            "Count the snacks aisle",
                            "Photograph the end cap",
                            "",
                        ][rng.below(4) as usize]
                            .into(),
                        template_id: "tt-standard".into(),
                        ad_hoc: false,
                    };
                    let id = format!("demo-{}-{}-{slot}", rep.id, day + 7);
                    crate::ingest::server_edit(
                        store,
                        &id,
                        |existing| match existing {
                            Some(d) => Ok(d),
                            None => Ok(VisitDoc::create(
                                &id,
                                &plan,
                                crate::api::server_actor(&manager.id),
                                &author,
                                now,
                            )
                            .map_err(StoreError::from)?),
                        },
                        &idx,
                    )
                    .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    let v: Vec<(String, String, String, String)> = users
        .iter()
        .map(|u| {
            (
                u.username.clone(),
                u.user_id.clone(),
                u.role.as_str().to_string(),
                u.password.clone(),
            )
        })
        .collect();
    std::fs::write(
        &creds_file,
        serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    Ok(users)
}

/// Runs the simulated reps (devices syncing over HTTP to `base_url`) and managers (who
/// annotate today's visits on the server while the reps work on them) until the process
/// ends.
pub fn spawn_simulation(base_url: String, users: Vec<DemoUser>, store: Arc<dyn Store>) {
    for (i, u) in users.iter().filter(|u| u.role == Role::Rep).enumerate() {
        let base = base_url.clone();
        let u = u.clone();
        tokio::spawn(async move {
            if let Err(e) = simulate_rep(&base, &u, i as u64).await {
                tracing::warn!(user = %u.username, error = %e, "simulated rep stopped");
            }
        });
    }
    for (i, m) in users.iter().filter(|u| u.role == Role::Manager).enumerate() {
        let store = store.clone();
        let m = m.clone();
        tokio::spawn(async move {
            let mut rng = Rng::new(500 + i as u64);
            loop {
                tokio::time::sleep(Duration::from_millis(8_000 + rng.below(12_000))).await;
                let s = store.clone();
                let manager = m.user_id.clone();
                let pick = rng.next_u64();
                let res =
                    tokio::task::spawn_blocking(move || manager_note(s.as_ref(), &manager, pick))
                        .await;
                if let Ok(Err(e)) = res {
                    tracing::debug!(error = %e, "demo manager edit skipped");
                }
            }
        });
    }
}

/// A manager writes a note on one of today's visits of their territory (concurrently with
/// the rep, who may be editing the same visit offline).
fn manager_note(store: &dyn Store, manager_id: &str, pick: u64) -> Result<(), String> {
    let manager = store
        .user_by_id(manager_id)
        .map_err(|e| e.to_string())?
        .ok_or("no manager")?;
    let refs = store.reference().map_err(|e| e.to_string())?;
    let reps: Vec<_> = refs
        .users
        .iter()
        .filter(|u| {
            u.role == Role::Rep
                && u.territory_ids
                    .iter()
                    .any(|t| manager.territories.contains(t))
        })
        .collect();
    if reps.is_empty() {
        return Ok(());
    }
    let rep = reps[(pick % reps.len() as u64) as usize];
    let id = format!("demo-{}-7-{}", rep.id, (pick / 7) % 3);
    let author = Author {
        user_id: manager.id.clone(),
        device_id: "server".into(),
    };
    let now = Utc::now().timestamp_millis();
    crate::ingest::server_edit(
        store,
        &id,
        |existing| {
            let mut doc = existing.ok_or_else(|| StoreError::NotFound(format!("no visit {id}")))?;
            doc.set_actor(crate::api::server_actor(&manager.id));
            doc.edit(&author, now, |w| {
                w.splice_notes(0, 0, "Manager: please check the end cap. ")
            })?;
            Ok(doc)
        },
        &refs.index(),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn jitter(rng: &mut Rng, p: GeoPoint) -> GeoPoint {
    GeoPoint {
        lat: p.lat + (rng.unit() - 0.5) * 0.0008,
        lng: p.lng + (rng.unit() - 0.5) * 0.0008,
    }
}

async fn simulate_rep(base: &str, u: &DemoUser, seed: u64) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let device = format!("demo-phone-{}", u.username);
    let store = DeviceStore::open(dir.path().join("device.db"), &u.user_id, &device)
        .map_err(|e| e.to_string())?;
    let mut session = None;
    for _ in 0..30 {
        match login(base, &u.username, &u.password, &device).await {
            Ok(s) => {
                session = Some(s);
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "demo login retry");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let session = session.ok_or("could not sign in")?;
    let client = SyncClient::new(base, &session.token).map_err(|e| e.to_string())?;
    let mut rng = Rng::new(1000 + seed);
    loop {
        if let Err(e) = client.sync(&store, None).await {
            tracing::warn!(user = %u.username, error = %e, "demo sync failed");
        }
        if let Err(e) = work_one_visit(&store, &mut rng) {
            tracing::debug!(user = %u.username, error = %e, "demo visit step failed");
        }
        tokio::time::sleep(Duration::from_millis(3_000 + rng.below(9_000))).await;
    }
}

/// Does the next step of today's route: check in to the next planned visit, record
/// findings (some out of stock, some non-compliant), complete.
fn work_one_visit(store: &DeviceStore, rng: &mut Rng) -> fieldsync_core::Result<()> {
    let route = store.today_route()?;
    let refs = store.reference_data();
    let idx = refs.index();
    let Some(entry) = route
        .iter()
        .find(|e| matches!(e.status, VisitStatus::Planned | VisitStatus::InProgress))
    else {
        return Ok(());
    };
    let shop = idx.store(&entry.store_id)?;
    if entry.status == VisitStatus::Planned {
        store.check_in(
            &entry.visit_id,
            jitter(
                rng,
                GeoPoint {
                    lat: shop.lat,
                    lng: shop.lng,
                },
            ),
        )?;
        return Ok(());
    }
    let id = &entry.visit_id;
    for p in idx.assortment_for(shop) {
        let oos = rng.chance(0.08);
        let list = idx.product(p).map(|x| x.list_price_cents).unwrap_or(199);
        let price = if rng.chance(0.1) {
            list + 30 + rng.below(50) as i64
        } else {
            list
        };
        store.record_inventory(
            id,
            p,
            &InventoryInput {
                shelf_qty: Some(if oos { 0 } else { 2 + rng.below(30) as i64 }),
                backroom_qty: Some(rng.below(20) as i64),
                out_of_stock: Some(oos),
                observed_price_cents: Some(price),
                facings: Some(1 + rng.below(4) as i64),
            },
        )?;
    }
    if let Some(pg) = idx.planogram_for(shop) {
        for pos in &pg.positions {
            let ok = !rng.chance(0.12);
            store.record_position(
                id,
                &pos.id,
                &PositionInput {
                    present: Some(ok || rng.chance(0.5)),
                    actual_facings: Some(if ok {
                        i64::from(pos.facings)
                    } else {
                        i64::from(pos.facings.saturating_sub(1))
                    }),
                    correct_position: Some(ok),
                },
            )?;
        }
    }
    let day = fieldsync_core::rules::local_day(shop, store.now());
    for promo in idx.promotions_for(shop, day) {
        let ok = !rng.chance(0.2);
        store.record_promotion(
            id,
            &promo.id,
            &PromotionInput {
                display_in_place: Some(ok),
                promo_price_correct: Some(ok || rng.chance(0.5)),
                materials_present: Some(ok),
                observed_price_cents: Some(promo.promo_price_cents),
            },
        )?;
    }
    store.answer_survey(id, "q-manager-met", &AnswerValue::Bool(rng.chance(0.6)))?;
    if rng.chance(0.5) {
        let p = idx.assortment_for(shop)[0];
        store.set_order_line(id, p, 6 + rng.below(24) as i64)?;
    }
    store.submit_order(id)?;
    store.complete(id)
}
