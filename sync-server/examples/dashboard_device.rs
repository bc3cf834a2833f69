//! A scripted device for the dashboard's browser test (`tests/browser/`), using
//! `fieldsync-core` for real: device stores, the sync client, the planning API.
//!
//! ```text
//! dashboard_device setup    --data-dir D --refs-out refs.json [--seed 42]
//!     imports fixture reference data into the server database in D (server stopped) and
//!     creates every fixture user with the password `pass-<username>`; writes the reference
//!     data as stored to refs.json; prints the users as JSON.
//! dashboard_device scenario --base URL --file scenario.json --dir DIR
//!     plans the scenario's visits through `POST /v1/visits` (as each visit's planner), then
//!     each rep's phone syncs and works its visits with a device clock set inside (or after)
//!     the planned window, and syncs; one visit gets a concurrent edit from a second device
//!     (a conflict). Prints {"visits": [ids]}.
//! dashboard_device sync     --base URL --username U --password P --device D --dir DIR
//!     opens (or creates) the device store DIR/D.db, signs in, syncs; prints
//!     {"visit_ids": [...], "outbox": n}.
//! ```

use clap::{Parser, Subcommand};
use fieldsync_core::clock::{Clock as _, ManualClock};
use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::{SyncClient, login};
use fieldsync_core::visit::{AnswerValue, GeoPoint, InventoryInput, PositionInput, PromotionInput};
use fieldsync_server::{SqliteStore, Store};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    Setup {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        refs_out: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    Scenario {
        #[arg(long)]
        base: String,
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        dir: PathBuf,
    },
    Sync {
        #[arg(long)]
        base: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        device: String,
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Deserialize)]
struct Scenario {
    /// username → password
    passwords: BTreeMap<String, String>,
    visits: Vec<PlannedVisit>,
    #[serde(default)]
    conflict: Option<Conflict>,
}

#[derive(Debug, Deserialize)]
struct PlannedVisit {
    id: String,
    planner: String,
    rep: String,
    store_id: String,
    planned_start: i64,
    planned_end: i64,
    /// complete | late | cancel | missed
    outcome: String,
    #[serde(default)]
    check_in_offset_ms: i64,
    #[serde(default)]
    inventory: Vec<Inv>,
    #[serde(default)]
    positions: Vec<Pos>,
    #[serde(default)]
    promotions: Vec<Promo>,
}

#[derive(Debug, Deserialize)]
struct Inv {
    product_id: String,
    shelf_qty: i64,
    out_of_stock: bool,
    price_cents: i64,
    facings: i64,
}

#[derive(Debug, Deserialize)]
struct Pos {
    position_id: String,
    present: bool,
    actual_facings: i64,
    correct_position: bool,
}

#[derive(Debug, Deserialize)]
struct Promo {
    promotion_id: String,
    display_in_place: bool,
    promo_price_correct: bool,
    materials_present: bool,
}

/// Two devices of the visit's rep set `backroom_qty` of one product concurrently.
#[derive(Debug, Deserialize)]
struct Conflict {
    visit_id: String,
    product_id: String,
    phone_value: i64,
    tablet_value: i64,
}

type Res<T> = Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(out) => {
            println!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Res<serde_json::Value> {
    match cli.command {
        Cmd::Setup {
            data_dir,
            refs_out,
            seed,
        } => {
            let store = SqliteStore::open_dir(&data_dir).map_err(e)?;
            let today = chrono::Utc::now().date_naive();
            let refs = fixtures::reference_data(seed, &FixtureSize::default(), today);
            store.import_reference(refs.clone()).map_err(e)?;
            let mut users = Vec::new();
            for u in &refs.users {
                let pw = format!("pass-{}", u.username);
                fieldsync_server::admin::create_user(
                    &store,
                    &u.username,
                    u.role,
                    &u.territory_ids,
                    Some(&pw),
                )?;
                users.push(serde_json::json!({"id": u.id, "username": u.username, "role": u.role.as_str(), "password": pw}));
            }
            let stored = store.reference().map_err(e)?;
            std::fs::write(&refs_out, serde_json::to_string(&*stored).map_err(e)?).map_err(e)?;
            Ok(serde_json::json!({ "users": users }))
        }
        Cmd::Sync {
            base,
            username,
            password,
            device,
            dir,
        } => {
            let session = login(&base, &username, &password, &device)
                .await
                .map_err(e)?;
            let store =
                DeviceStore::open(dir.join(format!("{device}.db")), &session.user.id, &device)
                    .map_err(e)?;
            let client = SyncClient::new(&base, &session.token).map_err(e)?;
            client.sync(&store, None).await.map_err(e)?;
            Ok(serde_json::json!({
                "visit_ids": store.visit_ids().map_err(e)?,
                "outbox": store.outbox_len().map_err(e)?,
            }))
        }
        Cmd::Scenario { base, file, dir } => {
            let text = std::fs::read_to_string(&file).map_err(e)?;
            let sc: Scenario = serde_json::from_str(&text).map_err(e)?;
            scenario(&base, &sc, &dir).await
        }
    }
}

async fn token(base: &str, sc: &Scenario, username: &str, device: &str) -> Res<(String, String)> {
    let pw = sc
        .passwords
        .get(username)
        .ok_or_else(|| format!("no password for {username}"))?;
    let s = login(base, username, pw, device).await.map_err(e)?;
    Ok((s.token, s.user.id))
}

async fn scenario(base: &str, sc: &Scenario, dir: &std::path::Path) -> Res<serde_json::Value> {
    let http = reqwest::Client::new();
    let mut planners: BTreeMap<String, String> = BTreeMap::new();
    let mut rep_ids: BTreeMap<String, String> = BTreeMap::new();
    for v in &sc.visits {
        if !planners.contains_key(&v.planner) {
            let (t, _) = token(base, sc, &v.planner, "planner-script").await?;
            planners.insert(v.planner.clone(), t);
        }
        if !rep_ids.contains_key(&v.rep) {
            // The rep's user id, from a sign-in on the phone used below.
            let (_, id) = token(base, sc, &v.rep, &format!("phone-{}", v.rep)).await?;
            rep_ids.insert(v.rep.clone(), id);
        }
        let tok = &planners[&v.planner];
        let resp = http
            .post(format!("{base}/v1/visits"))
            .bearer_auth(tok)
            .json(&serde_json::json!({
                "visit_id": v.id, "store_id": v.store_id, "rep_id": rep_ids[&v.rep],
                "planned_start": v.planned_start, "planned_end": v.planned_end,
                "template_id": "tt-standard", "priority": 2, "instructions": "Audit the full assortment",
            }))
            .send()
            .await
            .map_err(e)?;
        if !resp.status().is_success() {
            return Err(format!(
                "planning {}: {}",
                v.id,
                resp.text().await.unwrap_or_default()
            ));
        }
        if v.outcome == "cancel" {
            let resp = http
                .patch(format!("{base}/v1/visits/{}", v.id))
                .bearer_auth(tok)
                .json(&serde_json::json!({"status": "canceled", "cancel_reason": "Store closed for renovation"}))
                .send()
                .await
                .map_err(e)?;
            if !resp.status().is_success() {
                return Err(format!(
                    "canceling {}: {}",
                    v.id,
                    resp.text().await.unwrap_or_default()
                ));
            }
        }
    }
    let mut reps: Vec<&String> = rep_ids.keys().collect();
    reps.sort();
    for rep in reps {
        let device = format!("phone-{rep}");
        let (tok, user_id) = token(base, sc, rep, &device).await?;
        let clock = Arc::new(ManualClock::new(chrono::Utc::now().timestamp_millis()));
        let store = DeviceStore::open_with_clock(
            dir.join(format!("{device}.db")),
            &user_id,
            &device,
            clock.clone(),
        )
        .map_err(e)?;
        let client = SyncClient::new(base, &tok).map_err(e)?;
        client.sync(&store, None).await.map_err(e)?;
        let mut mine: Vec<&PlannedVisit> = sc
            .visits
            .iter()
            .filter(|v| v.rep == *rep && matches!(v.outcome.as_str(), "complete" | "late"))
            .collect();
        mine.sort_by_key(|v| v.planned_start);
        for v in mine {
            let refs = store.reference_data();
            let shop = refs
                .stores
                .iter()
                .find(|s| s.id == v.store_id)
                .ok_or("unknown store")?;
            let at = GeoPoint {
                lat: shop.lat,
                lng: shop.lng,
            };
            clock.set(v.planned_start + v.check_in_offset_ms);
            store.check_in(&v.id, at).map_err(e)?;
            for l in &v.inventory {
                clock.advance(5_000);
                store
                    .record_inventory(
                        &v.id,
                        &l.product_id,
                        &InventoryInput {
                            shelf_qty: Some(l.shelf_qty),
                            backroom_qty: Some(3),
                            out_of_stock: Some(l.out_of_stock),
                            observed_price_cents: Some(l.price_cents),
                            facings: Some(l.facings),
                        },
                    )
                    .map_err(e)?;
            }
            for p in &v.positions {
                clock.advance(5_000);
                store
                    .record_position(
                        &v.id,
                        &p.position_id,
                        &PositionInput {
                            present: Some(p.present),
                            actual_facings: Some(p.actual_facings),
                            correct_position: Some(p.correct_position),
                        },
                    )
                    .map_err(e)?;
            }
            for p in &v.promotions {
                clock.advance(5_000);
                store
                    .record_promotion(
                        &v.id,
                        &p.promotion_id,
                        &PromotionInput {
                            display_in_place: Some(p.display_in_place),
                            promo_price_correct: Some(p.promo_price_correct),
                            materials_present: Some(p.materials_present),
                            observed_price_cents: None,
                        },
                    )
                    .map_err(e)?;
            }
            store
                .answer_survey(&v.id, "q-manager-met", &AnswerValue::Bool(true))
                .map_err(e)?;
            if let Some(c) = sc.conflict.as_ref().filter(|c| c.visit_id == v.id) {
                // A second device of the same rep gets the visit, then both set the same
                // field while neither has seen the other's change.
                client.sync(&store, None).await.map_err(e)?;
                let tablet_id = format!("tablet-{rep}");
                let (ttok, _) = token(base, sc, rep, &tablet_id).await?;
                let tclock = Arc::new(ManualClock::new(clock.now_ms()));
                let tablet = DeviceStore::open_with_clock(
                    dir.join(format!("{tablet_id}.db")),
                    &user_id,
                    &tablet_id,
                    tclock.clone(),
                )
                .map_err(e)?;
                let tclient = SyncClient::new(base, &ttok).map_err(e)?;
                tclient.sync(&tablet, None).await.map_err(e)?;
                clock.advance(60_000);
                store
                    .record_inventory(
                        &v.id,
                        &c.product_id,
                        &InventoryInput {
                            backroom_qty: Some(c.phone_value),
                            ..Default::default()
                        },
                    )
                    .map_err(e)?;
                tclock.set(clock.now_ms() + 30_000);
                tablet
                    .record_inventory(
                        &v.id,
                        &c.product_id,
                        &InventoryInput {
                            backroom_qty: Some(c.tablet_value),
                            ..Default::default()
                        },
                    )
                    .map_err(e)?;
                client.sync(&store, None).await.map_err(e)?;
                tclient.sync(&tablet, None).await.map_err(e)?;
                client.sync(&store, None).await.map_err(e)?;
            }
            clock.advance(20 * 60_000);
            store.check_out(&v.id, at).map_err(e)?;
            store.complete(&v.id).map_err(e)?;
        }
        let report = client.sync(&store, None).await.map_err(e)?;
        if store.outbox_len().map_err(e)? != 0 {
            return Err(format!(
                "{device} still has an outbox after sync: {report:?}; quarantined: {:?}",
                store.quarantined().map_err(e)?
            ));
        }
    }
    Ok(serde_json::json!({
        "visits": sc.visits.iter().map(|v| v.id.clone()).collect::<Vec<_>>(),
    }))
}
