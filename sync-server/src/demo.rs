//! `serve --demo`: seeds realistic data and runs simulated reps and managers that use
//! `fieldsync-core` for real (device stores in temp dirs, sync over HTTP).

use chrono::{NaiveDate, Utc};
use fieldsync_core::clock::Clock;
use fieldsync_core::document::VisitDoc;
use fieldsync_core::fixtures::{self, FixtureSize, Rng};
use fieldsync_core::model::{Millis, Role};
use fieldsync_core::rules;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::{SyncClient, login};
use fieldsync_core::tz;
use fieldsync_core::visit::{
    AnswerValue, Author, GeoPoint, InventoryInput, PositionInput, PromotionInput, VisitPlan,
    VisitStatus,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
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

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Where the demo's accounts are kept, in the data dir.
const CREDENTIALS_FILE: &str = "demo-credentials.json";

/// The accounts of the demo seeded in `data_dir`, with their passwords; `None` when it
/// holds no demo.
pub fn seeded_accounts(data_dir: &Path) -> Result<Option<Vec<DemoUser>>, String> {
    let Ok(text) = std::fs::read_to_string(data_dir.join(CREDENTIALS_FILE)) else {
        return Ok(None);
    };
    let v: Vec<(String, String, String, String)> =
        serde_json::from_str(&text).map_err(|e| format!("{CREDENTIALS_FILE}: {e}"))?;
    Ok(Some(
        v.into_iter()
            .map(|(username, user_id, role, password)| DemoUser {
                username,
                user_id,
                role: Role::parse(&role).unwrap_or(Role::Rep),
                password,
            })
            .collect(),
    ))
}

/// Seeds the demo (once per data dir); returns the accounts with their passwords.
pub fn seed(store: &dyn Store, data_dir: &Path) -> Result<Vec<DemoUser>, String> {
    if let Some(users) = seeded_accounts(data_dir)? {
        return Ok(users);
    }
    let creds_file = data_dir.join(CREDENTIALS_FILE);
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
    // Plans: each rep visits three of their territory's stores a day, ±7 days, days as
    // the stores count them (their time zone). Today's windows are open now (from 50
    // minutes ago, or from the stores' midnight if that is later), so the simulated reps'
    // live visits fall in them; the other days' are at 7:00, 10:00 and 13:00 local time.
    // Each plan was made three days ahead (or now, for the days after).
    let mut rng = Rng::new(7);
    let now = Utc::now().timestamp_millis();
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
                    // The store's day, as the phone's route counts it.
                    let (zone, today) = (shop.timezone.as_str(), rules::local_day(shop, now));
                    let start = if day == 0 {
                        (now - 50 * MINUTE).max(local_time(zone, today, 0))
                            + slot as i64 * 20 * MINUTE
                    } else {
                        let date = today + chrono::TimeDelta::days(day);
                        local_time(zone, date, 7 + slot as u32 * 3)
                    };
                    let planned_at = now.min(start - 3 * DAY);
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
                                planned_at,
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

/// `hour`:00 on `date` in time zone `zone`, as an instant ([`tz::to_utc`]; `hour`:00 UTC
/// for a zone the demo does not know, which its seed never has).
fn local_time(zone: &str, date: NaiveDate, hour: u32) -> Millis {
    let wall = date.and_hms_opt(hour, 0, 0).unwrap_or_default();
    tz::to_utc(zone, wall)
        .unwrap_or_else(|| wall.and_utc())
        .timestamp_millis()
}

/// Runs the simulated reps (devices syncing over HTTP to `base_url`) and managers (who
/// annotate today's visits on the server while the reps work on them) until the process
/// ends.
pub fn spawn_simulation(base_url: String, users: Vec<DemoUser>, store: Arc<dyn Store>) {
    for (i, u) in users.iter().filter(|u| u.role == Role::Rep).enumerate() {
        let base = base_url.clone();
        let u = u.clone();
        tokio::spawn(async move {
            let dir = match tempfile::tempdir() {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(user = %u.username, error = %e, "simulated rep not started");
                    return;
                }
            };
            match DemoRep::start(&base, &u, i as u64, dir.path()).await {
                Ok(rep) => rep.run().await,
                Err(e) => tracing::warn!(user = %u.username, error = %e, "simulated rep stopped"),
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

/// What the demo's managers write on today's visits.
const MANAGER_NOTES: [&str; 4] = [
    "Manager: please check the end cap. ",
    "Manager: ask about the cola delivery. ",
    "Manager: photograph the promotion display. ",
    "Manager: the store owner wants a call back. ",
];

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
            // Each note once per visit, at most two per visit.
            let notes = doc.notes()?;
            let note = MANAGER_NOTES[(pick / 21) as usize % MANAGER_NOTES.len()];
            if notes.contains(note) || notes.matches("Manager: ").count() >= 2 {
                return Err(StoreError::Conflict(format!("{id} has its manager notes")));
            }
            doc.set_actor(crate::api::server_actor(&manager.id));
            doc.edit(&author, now, |w| w.splice_notes(0, 0, note))?;
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

/// The demo phones' clock: the system time, except while a rep's past visits are
/// recorded, when it shows the time each step happened.
#[derive(Debug, Default)]
struct DemoClock {
    /// The time shown; 0: the system time.
    pinned: AtomicI64,
}

impl DemoClock {
    fn show(&self, at: Millis) {
        self.pinned.store(at, Ordering::SeqCst);
    }

    fn release(&self) {
        self.pinned.store(0, Ordering::SeqCst);
    }
}

impl Clock for DemoClock {
    fn now_ms(&self) -> Millis {
        match self.pinned.load(Ordering::SeqCst) {
            0 => Utc::now().timestamp_millis(),
            at => at,
        }
    }
}

/// How the rep's past visits went, as [`DemoRep::start`] recorded them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PastVisits {
    /// Completed, checked in within the planned window.
    pub on_time: usize,
    /// Completed, checked in after the window closed.
    pub late: usize,
    pub canceled: usize,
    pub abandoned: usize,
    /// Left as planned: the rep never went.
    pub missed: usize,
}

/// What happened to one past visit: the same for a visit id on every run, so a demo
/// started again (with fresh phones) leaves the visits it did not work on as they were.
enum PastOutcome {
    OnTime,
    Late,
    Canceled,
    Abandoned,
    Missed,
}

fn past_outcome(visit_id: &str) -> (PastOutcome, Rng) {
    // FNV-1a of the id: stable across runs and builds.
    let seed = visit_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut rng = Rng::new(seed);
    let outcome = match rng.below(100) {
        0..80 => PastOutcome::OnTime,
        80..88 => PastOutcome::Late,
        88..93 => PastOutcome::Canceled,
        93..96 => PastOutcome::Abandoned,
        _ => PastOutcome::Missed,
    };
    (outcome, rng)
}

/// A simulated rep: a phone (a device store of its own) syncing over HTTP.
pub struct DemoRep {
    username: String,
    store: Arc<DeviceStore>,
    client: SyncClient,
    rng: Rng,
    /// How the rep's past visits went (recorded when the demo started).
    pub past: PastVisits,
}

impl std::fmt::Debug for DemoRep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoRep")
            .field("username", &self.username)
            .field("past", &self.past)
            .finish_non_exhaustive()
    }
}

/// Ad-hoc visits a simulated rep adds per day once the planned ones are done.
pub const AD_HOC_PER_DAY: usize = 6;

impl DemoRep {
    /// Signs in on a fresh phone (its database in `dir`), takes the rep's route, works
    /// through the visits whose windows closed before now as the rep did at the time
    /// (most completed on time, some late, canceled, abandoned or missed), and pushes
    /// them: the dashboard shows a week of history.
    pub async fn start(base: &str, u: &DemoUser, seed: u64, dir: &Path) -> Result<Self, String> {
        let clock = Arc::new(DemoClock::default());
        let device = format!("demo-phone-{}", u.username);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let store =
            DeviceStore::open_with_clock(dir.join("device.db"), &u.user_id, &device, clock.clone())
                .map_err(|e| e.to_string())?;
        let store = Arc::new(store);
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
        // A failed sync is retried by the live loop.
        if let Err(e) = client.sync(&store, None).await {
            tracing::warn!(user = %u.username, error = %e, "demo first sync failed");
        }
        // Recording a week is blocking work (a device commit per action).
        let past = {
            let (store, clock) = (store.clone(), clock.clone());
            tokio::task::spawn_blocking(move || {
                let done = record_past_visits(&store, &clock);
                clock.release();
                done
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
        };
        // A failed sync is retried by the live loop.
        if let Err(e) = client.sync(&store, None).await {
            tracing::warn!(user = %u.username, error = %e, "demo sync of the past week failed");
        }
        tracing::info!(
            user = %u.username,
            on_time = past.on_time,
            late = past.late,
            canceled = past.canceled,
            abandoned = past.abandoned,
            missed = past.missed,
            "demo rep synced the past week"
        );
        Ok(Self {
            username: u.username.clone(),
            store,
            client,
            rng: Rng::new(1000 + seed),
            past,
        })
    }

    /// Works today's route live, step by step, syncing between steps at random intervals,
    /// until the process ends.
    pub async fn run(mut self) {
        loop {
            if let Err(e) = self.sync().await {
                tracing::warn!(user = %self.username, error = %e, "demo sync failed");
            }
            let step = self.step().await;
            let user = &self.username;
            match step {
                Ok(Step::CheckedIn(visit, shop)) => {
                    tracing::info!(%user, %visit, %shop, "demo rep checked in");
                }
                Ok(Step::Completed(visit, shop)) => {
                    tracing::info!(%user, %visit, %shop, "demo rep completed a visit");
                }
                Ok(Step::AddedAdHoc(visit, shop)) => {
                    tracing::info!(%user, %visit, %shop, "demo rep started an ad-hoc visit");
                }
                Ok(Step::Recorded(_) | Step::Idle) => {}
                Err(e) => tracing::debug!(%user, error = %e, "demo visit step failed"),
            }
            tokio::time::sleep(Duration::from_millis(3_000 + self.rng.below(9_000))).await;
        }
    }

    /// Syncs the phone.
    pub async fn sync(&self) -> Result<(), String> {
        self.client
            .sync(&self.store, None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The next step of today's route: check in to the next planned visit (from
    /// [`EARLY`] before its window opens), or record the next [`FINDINGS_PER_STEP`]
    /// findings of the visit in progress, or, with all recorded, check out and complete
    /// it. With the route done, now and then an ad-hoc visit to one of the territory's
    /// stores (at most [`AD_HOC_PER_DAY`] a day). The phone's writes run on a blocking
    /// thread, not on the server's async workers.
    pub async fn step(&mut self) -> Result<Step, String> {
        let store = self.store.clone();
        let mut rng = self.rng.clone();
        let (step, rng) = tokio::task::spawn_blocking(move || (next_step(&store, &mut rng), rng))
            .await
            .map_err(|e| e.to_string())?;
        self.rng = rng;
        step.map_err(|e| e.to_string())
    }
}

/// [`DemoRep::step`] on the phone's store.
fn next_step(store: &DeviceStore, rng: &mut Rng) -> fieldsync_core::Result<Step> {
    let route = store.today_route()?;
    let refs = store.reference_data();
    let idx = refs.index();
    let next = route
        .iter()
        .find(|e| matches!(e.status, VisitStatus::Planned | VisitStatus::InProgress));
    let Some(entry) = next else {
        let ad_hoc = route.iter().filter(|e| e.ad_hoc).count();
        // (Not at a store head office closed: it takes no new visits.)
        let closed = store.closed_stores();
        let open: Vec<_> = refs
            .stores
            .iter()
            .filter(|s| !closed.contains(&s.id))
            .collect();
        if ad_hoc < AD_HOC_PER_DAY && rng.chance(0.15) && !open.is_empty() {
            let shop = rng.pick(&open);
            let id = store.create_ad_hoc_visit(&shop.id, "tt-standard")?;
            return Ok(Step::AddedAdHoc(id, shop.name.clone()));
        }
        return Ok(Step::Idle);
    };
    if entry.status == VisitStatus::Planned && entry.planned_start > store.now() + EARLY {
        // Not yet: a rep arrives at most a little before the window opens.
        return Ok(Step::Idle);
    }
    let shop = idx.store(&entry.store_id)?;
    let here = jitter(
        rng,
        GeoPoint {
            lat: shop.lat,
            lng: shop.lng,
        },
    );
    let (id, name) = (entry.visit_id.clone(), shop.name.clone());
    if entry.status == VisitStatus::Planned {
        store.check_in(&id, here)?;
        return Ok(Step::CheckedIn(id, name));
    }
    if record_findings(store, &id, rng, FINDINGS_PER_STEP)? > 0 {
        return Ok(Step::Recorded(id));
    }
    store.check_out(&id, here)?;
    store.complete(&id)?;
    Ok(Step::Completed(id, name))
}

/// How long before its window opens a simulated rep checks in to a visit, at most.
pub const EARLY: Millis = 15 * MINUTE;

/// Findings a simulated rep records between two syncs: a visit takes a few minutes.
pub const FINDINGS_PER_STEP: usize = 3;

/// What [`DemoRep::step`] did (visit id, store name).
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Nothing to do now: the route is done, or its next visit's window opens later.
    Idle,
    AddedAdHoc(String, String),
    CheckedIn(String, String),
    /// Recorded findings in the visit.
    Recorded(String),
    /// Checked out and completed the visit.
    Completed(String, String),
}

/// Records the rep's visits planned in the past week whose windows have closed and that
/// are still planned, each at the time it happened (see [`past_outcome`]). A visit that
/// cannot be recorded is left as it is (and logged).
fn record_past_visits(
    store: &DeviceStore,
    clock: &DemoClock,
) -> fieldsync_core::Result<PastVisits> {
    let now = Utc::now().timestamp_millis();
    let mut past = PastVisits::default();
    for id in store.visit_ids_between(now - 8 * DAY, now)? {
        if let Err(e) = record_past_visit(store, clock, now, &id, &mut past) {
            tracing::debug!(visit = %id, error = %e, "demo past visit not recorded");
        }
    }
    Ok(past)
}

fn record_past_visit(
    store: &DeviceStore,
    clock: &DemoClock,
    now: Millis,
    id: &str,
    past: &mut PastVisits,
) -> fieldsync_core::Result<()> {
    let visit = store.visit(id)?;
    let plan = &visit.plan;
    if plan.rep_id != store.identity().user_id
        || plan.ad_hoc
        || plan.planned_end >= now
        || visit.status != VisitStatus::Planned
    {
        return Ok(());
    }
    let refs = store.reference_data();
    let shop = refs.index().store(&plan.store_id)?.clone();
    let (outcome, mut rng) = past_outcome(id);
    // Never later than now.
    let at = |t: Millis| clock.show(t.min(now - MINUTE));
    let here = jitter(
        &mut rng,
        GeoPoint {
            lat: shop.lat,
            lng: shop.lng,
        },
    );
    let arrive = match outcome {
        PastOutcome::Missed => {
            past.missed += 1;
            return Ok(());
        }
        PastOutcome::Canceled => {
            at(plan.planned_start - HOUR);
            store.cancel(id, "Store closed for a stocktake", Some(here))?;
            past.canceled += 1;
            return Ok(());
        }
        PastOutcome::Late => plan.planned_end + 20 * MINUTE + rng.below(90) as i64 * MINUTE,
        PastOutcome::OnTime | PastOutcome::Abandoned => {
            let room = (plan.planned_end - plan.planned_start).max(MINUTE) as u64;
            plan.planned_start + rng.below(room * 2 / 3) as i64
        }
    };
    at(arrive);
    store.check_in(id, here)?;
    if let PastOutcome::Abandoned = outcome {
        at(arrive + 10 * MINUTE);
        store.abandon(id, "The store manager asked us to come back another day")?;
        past.abandoned += 1;
        return Ok(());
    }
    at(arrive + 5 * MINUTE);
    record_findings(store, id, &mut rng, usize::MAX)?;
    at(arrive + 20 * MINUTE + rng.below(25) as i64 * MINUTE);
    store.check_out(id, here)?;
    store.complete(id)?;
    match outcome {
        PastOutcome::Late => past.late += 1,
        _ => past.on_time += 1,
    }
    Ok(())
}

/// Records at most `max` of the findings the visit still lacks, in the order a rep works
/// through the store: every product of the assortment counted (some out of stock, some at
/// the wrong price), the planogram audited (some positions wrong), the promotions checked,
/// the survey answered, sometimes a note, and the order submitted (with a line half the
/// time). Returns how many it recorded: 0 when nothing was left.
fn record_findings(
    store: &DeviceStore,
    id: &str,
    rng: &mut Rng,
    max: usize,
) -> fieldsync_core::Result<usize> {
    let visit = store.visit(id)?;
    let refs = store.reference_data();
    let idx = refs.index();
    let shop = idx.store(&visit.plan.store_id)?;
    let mut done = 0;
    for p in idx.assortment_for(shop) {
        if done == max {
            return Ok(done);
        }
        if visit.inventory.contains_key(p) {
            continue;
        }
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
        done += 1;
    }
    let positions = idx.planogram_for(shop).map(|pg| pg.positions.as_slice());
    for pos in positions.unwrap_or_default() {
        if done == max {
            return Ok(done);
        }
        if visit.planogram.contains_key(&pos.id) {
            continue;
        }
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
        done += 1;
    }
    let day = fieldsync_core::rules::local_day(shop, store.now());
    for promo in idx.promotions_for(shop, day) {
        if done == max {
            return Ok(done);
        }
        if visit.promotions.contains_key(&promo.id) {
            continue;
        }
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
        done += 1;
    }
    if done < max && !visit.survey.contains_key("q-manager-met") {
        store.answer_survey(id, "q-manager-met", &AnswerValue::Bool(rng.chance(0.6)))?;
        done += 1;
    }
    // Some reps leave a note; it merges with what the manager writes meanwhile.
    if done < max && !visit.notes.contains("Rep: ") && rng.chance(0.3) {
        store.edit_notes(id, 0, 0, "Rep: restocked the shelf with the store staff. ")?;
        done += 1;
    }
    if done < max && !visit.order_submitted {
        if let Some(p) = idx.assortment_for(shop).first()
            && rng.chance(0.5)
        {
            store.set_order_line(id, p, 6 + rng.below(24) as i64)?;
        }
        store.submit_order(id)?;
        done += 1;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Millis {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn plans_are_made_in_the_stores_time_zone() {
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        // Berlin is UTC+1 in winter, UTC+2 in summer.
        assert_eq!(
            local_time("Europe/Berlin", day("2026-11-28"), 7),
            at("2026-11-28T06:00:00Z")
        );
        assert_eq!(
            local_time("Europe/Berlin", day("2026-07-01"), 13),
            at("2026-07-01T11:00:00Z")
        );
        assert_eq!(
            local_time("Europe/Berlin", day("2026-11-29"), 0),
            at("2026-11-28T23:00:00Z")
        );
        // At 23:30 UTC it is already tomorrow in Berlin, the day the plans are made for.
        let refs = fixtures::reference_data(42, &FixtureSize::default(), day("2026-11-28"));
        let mut berlin = refs.stores[0].clone();
        assert_eq!(berlin.timezone, "Europe/Berlin");
        assert_eq!(
            rules::local_day(&berlin, at("2026-11-28T23:30:00Z")),
            day("2026-11-29")
        );
        berlin.timezone = "UTC".into();
        assert_eq!(
            rules::local_day(&berlin, at("2026-11-28T23:30:00Z")),
            day("2026-11-28")
        );
    }

    #[test]
    fn a_rep_checks_in_only_once_the_window_is_about_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(DemoClock::default());
        let now = at("2026-11-28T09:00:00Z"); // 10:00 in Berlin
        clock.show(now);
        let store =
            DeviceStore::open_with_clock(dir.path().join("d.db"), "rep-1", "p", clock.clone())
                .unwrap();
        let refs =
            fixtures::reference_data(42, &FixtureSize::default(), "2026-11-28".parse().unwrap());
        let shop = refs.stores[0].id.clone();
        store.replace_reference_data(refs).unwrap();
        let plan = VisitPlan {
            store_id: shop,
            rep_id: "rep-1".into(),
            planned_start: now + EARLY + MINUTE,
            planned_end: now + 2 * HOUR,
            priority: 3,
            instructions: String::new(),
            template_id: "tt-standard".into(),
            ad_hoc: false,
        };
        let id = store.create_visit(plan).unwrap();
        let mut rng = Rng::new(1);
        assert_eq!(next_step(&store, &mut rng).unwrap(), Step::Idle);
        clock.show(now + 2 * MINUTE);
        match next_step(&store, &mut rng).unwrap() {
            Step::CheckedIn(checked, _) => assert_eq!(checked, id),
            other => panic!("{other:?}"),
        }
    }
}
