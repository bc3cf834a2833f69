//! Device-core benchmarks (issue 2, "Proof"): figures for `docs/BENCHMARKS.md`.
//!
//! Run: `cargo bench -p fieldsync-core --bench device`.
//!
//! Two parts:
//! * criterion benchmarks (mean/median with confidence intervals):
//!   `device/record_inventory_line`, `device/record_inventory_line_plain_sqlite`,
//!   `device/sync_body_zstd_kept_context`, `device/sync_body_zstd_new_context` (one
//!   change's sync request body compressed as the client does, and with a new Zstandard
//!   context per body), `device/visit_doc_read_typical` (a typical visit read whole, as
//!   the server's content rules read it on every push), `device/open_store_and_today_route`;
//! * a report printed afterwards with what criterion does not give: p99 latency from
//!   individually timed calls, bytes per line and per visit, and the resident memory of a
//!   fresh process that opens the large store and loads today's route (this binary
//!   re-executes itself as that child process).
//!
//! Workload sizes come from environment variables (defaults in brackets):
//! * `FIELDSYNC_BENCH_QUICK=1` — small sizes and short criterion runs, for CI;
//! * `FIELDSYNC_BENCH_LINE_SAMPLES` [2000] — individually timed `record_inventory` calls;
//! * `FIELDSYNC_BENCH_ROUTE_VISITS` [10000] — visits in the store opened for the route;
//! * `FIELDSYNC_BENCH_VISITS_PER_DAY` [8] — visits per day on the rep's route;
//! * `FIELDSYNC_BENCH_AUDITED_VISITS` [0] — how many of those visits also carry a full
//!   typical audit (slow to build: 36 more actions each);
//! * `FIELDSYNC_BENCH_SIZE_VISITS` [20] — typical visits measured for bytes on disk;
//! * `FIELDSYNC_BENCH_CHILD_RUNS` [10] — fresh processes measuring open + route + RSS;
//! * `FIELDSYNC_BENCH_DIR` [system temp dir] — where the file-backed stores live (must
//!   be a real disk for the durability figures; tmpfs makes fsync free);
//! * `FIELDSYNC_BENCH_CRITERION=0` / `FIELDSYNC_BENCH_REPORT=0` — skip a part.
//!
//! Without `--bench` (e.g. `cargo test --benches`) criterion runs each benchmark once and
//! the report runs with the quick sizes, as a smoke test.

use chrono::NaiveDate;
use criterion::{BatchSize, Criterion};
use fieldsync_core::clock::ManualClock;
use fieldsync_core::fixtures::{self, FixtureSize, TypicalAction, TypicalVisit};
use fieldsync_core::model::ReferenceData;
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::Compression;
use fieldsync_core::sync::client::compress;
use fieldsync_core::sync::protocol::{PROTOCOL_VERSION, SyncRequest, VisitChanges, encode_change};
use fieldsync_core::visit::{AnswerValue, GeoPoint, InventoryInput, VisitPlan};
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 2026-11-27 09:00 UTC, the benchmarks' "now" (same as the tests).
const NOW: i64 = 1_795_770_000_000;
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
const REP: &str = "rep-1";
const LINES_PER_VISIT: usize = fixtures::TYPICAL_LINES;
const CHILD_ENV: &str = "FIELDSYNC_BENCH_CHILD";

// ------------------------------------------------------------------------------ config

#[derive(Debug, Clone)]
struct Config {
    quick: bool,
    line_samples: usize,
    route_visits: usize,
    visits_per_day: usize,
    audited_visits: usize,
    size_visits: usize,
    child_runs: usize,
    dir: PathBuf,
    sections: Vec<String>,
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
        Err(_) => default,
    }
}

fn env_flag(name: &str, default: bool) -> bool {
    match std::env::var(name) {
        Ok(v) => !matches!(v.trim(), "0" | "false" | "no" | ""),
        Err(_) => default,
    }
}

impl Config {
    fn from_env(bench_mode: bool) -> Self {
        let quick = env_flag("FIELDSYNC_BENCH_QUICK", false) || !bench_mode;
        let q = |full: usize, small: usize| if quick { small } else { full };
        Self {
            quick,
            line_samples: env_usize("FIELDSYNC_BENCH_LINE_SAMPLES", q(2000, 200)).max(1),
            route_visits: env_usize("FIELDSYNC_BENCH_ROUTE_VISITS", q(10_000, 500)).max(1),
            visits_per_day: env_usize("FIELDSYNC_BENCH_VISITS_PER_DAY", 8).max(1),
            audited_visits: env_usize("FIELDSYNC_BENCH_AUDITED_VISITS", q(10_000, 100)),
            size_visits: env_usize("FIELDSYNC_BENCH_SIZE_VISITS", q(20, 3)).max(1),
            child_runs: env_usize("FIELDSYNC_BENCH_CHILD_RUNS", q(10, 2)).max(1),
            dir: std::env::var_os("FIELDSYNC_BENCH_DIR")
                .map_or_else(std::env::temp_dir, PathBuf::from),
            sections: std::env::var("FIELDSYNC_BENCH_SECTIONS")
                .unwrap_or_else(|_| "lines,bytes,sizes,route".into())
                .split(',')
                .map(|x| x.trim().to_string())
                .collect(),
        }
    }

    fn section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s == name || s == "all")
    }
}

// ------------------------------------------------------------------------------ fixtures

fn today() -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(NOW)
        .unwrap()
        .date_naive()
}

fn refs() -> ReferenceData {
    fixtures::reference_data(7, &FixtureSize::default(), today())
}

fn open_store(path: &Path, clock: Arc<ManualClock>) -> DeviceStore {
    DeviceStore::open_with_clock(path, REP, "dev-bench", clock).unwrap()
}

/// A fresh file-backed store at `path` with the demo reference data.
fn new_store(path: &Path, clock: Arc<ManualClock>) -> DeviceStore {
    let s = open_store(path, clock);
    s.replace_reference_data(refs()).unwrap();
    s
}

fn plan(store_id: &str, start: i64) -> VisitPlan {
    VisitPlan {
        store_id: store_id.into(),
        rep_id: REP.into(),
        planned_start: start,
        planned_end: start + HOUR_MS,
        priority: 2,
        instructions: "Check the cola display".into(),
        template_id: "tt-standard".into(),
        ad_hoc: false,
    }
}

/// The rep's stores that can hold a typical visit today.
fn contents(r: &ReferenceData) -> Vec<TypicalVisit> {
    let territory = &r.users.iter().find(|u| u.id == REP).unwrap().territory_ids[0];
    let out = fixtures::typical_visits(r, territory, today());
    assert!(!out.is_empty(), "no store fits a typical visit");
    out
}

/// A typical visit through the public API: plan, then the 36 actions of
/// [`TypicalVisit::actions`] (check in, 20 inventory lines, 10 planogram positions, 2
/// promotion checks, one survey answer, notes, check out), each its own durable
/// transaction at its own time: 37 actions. Returns the visit id.
fn typical_visit(s: &DeviceStore, clock: &ManualClock, c: &TypicalVisit, start: i64) -> String {
    let id = s.create_visit(plan(&c.store_id, start)).unwrap();
    for (at, action) in c.actions(start) {
        clock.set(at);
        match action {
            TypicalAction::CheckIn => drop(s.check_in(&id, c.position).unwrap()),
            TypicalAction::Inventory(pid, input) => s.record_inventory(&id, pid, &input).unwrap(),
            TypicalAction::Position(pos, input) => s.record_position(&id, pos, &input).unwrap(),
            TypicalAction::Promotion(promo, input) => {
                s.record_promotion(&id, promo, &input).unwrap();
            }
            TypicalAction::Answer(q, value) => s.answer_survey(&id, q, &value).unwrap(),
            TypicalAction::Notes(text) => s.set_notes(&id, text).unwrap(),
            TypicalAction::CheckOut => drop(s.check_out(&id, c.position).unwrap()),
        }
    }
    id
}

// ------------------------------------------------------------------------------ stats

#[derive(Debug, Clone, Copy)]
struct Stats {
    n: usize,
    min: Duration,
    median: Duration,
    mean: Duration,
    p90: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // Nearest rank.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort_unstable();
    let total: Duration = v.iter().sum();
    Stats {
        n: v.len(),
        min: v[0],
        median: percentile(&v, 0.5),
        mean: total / v.len() as u32,
        p90: percentile(&v, 0.9),
        p99: percentile(&v, 0.99),
        p999: percentile(&v, 0.999),
        max: v[v.len() - 1],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn print_stats(label: &str, s: &Stats) {
    println!(
        "{label}: n={} min={} median={} mean={} p90={} p99={} p99.9={} max={}",
        s.n,
        ms(s.min),
        ms(s.median),
        ms(s.mean),
        ms(s.p90),
        ms(s.p99),
        ms(s.p999),
        ms(s.max)
    );
}

// ------------------------------------------------------------------------------ record one line

/// Records inventory lines into a sequence of checked-in visits, 20 lines per visit (a
/// fresh visit is planned and checked in, untimed, every 20 lines), timing each call.
struct LineRecorder {
    store: DeviceStore,
    clock: Arc<ManualClock>,
    contents: Vec<TypicalVisit>,
    visit: String,
    content: usize,
    line: usize,
    visits: usize,
}

impl LineRecorder {
    fn new(path: &Path) -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        let store = new_store(path, clock.clone());
        let contents = contents(&store.reference_data());
        let mut r = Self {
            store,
            clock,
            contents,
            visit: String::new(),
            content: 0,
            line: LINES_PER_VISIT,
            visits: 0,
        };
        r.next_visit_if_full();
        r
    }

    fn next_visit_if_full(&mut self) {
        if self.line < LINES_PER_VISIT {
            return;
        }
        self.content = self.visits % self.contents.len();
        let c = &self.contents[self.content];
        let start = NOW + (self.visits as i64) * HOUR_MS;
        self.visit = self.store.create_visit(plan(&c.store_id, start)).unwrap();
        self.store.check_in(&self.visit, c.position).unwrap();
        self.visits += 1;
        self.line = 0;
    }

    /// Records one line; returns how long `record_inventory` took.
    fn record_one(&mut self) -> Duration {
        self.next_visit_if_full();
        self.clock.advance(15_000);
        let (pid, price) = &self.contents[self.content].products[self.line];
        let input = fixtures::typical_line(self.line, *price);
        let t = Instant::now();
        self.store
            .record_inventory(&self.visit, pid, &input)
            .unwrap();
        let d = t.elapsed();
        self.line += 1;
        d
    }
}

/// The same data as plain SQLite rows (no CRDT, no outbox, no history), with the same
/// durability settings (WAL, synchronous=FULL, one IMMEDIATE transaction per action).
const PLAIN_SCHEMA: &str = "
CREATE TABLE visits (
    id TEXT PRIMARY KEY, store_id TEXT NOT NULL, rep_id TEXT NOT NULL,
    planned_start INTEGER NOT NULL, planned_end INTEGER NOT NULL, priority INTEGER NOT NULL,
    status TEXT NOT NULL, ad_hoc INTEGER NOT NULL, template_id TEXT NOT NULL, instructions TEXT NOT NULL,
    check_in_at INTEGER, check_in_lat REAL, check_in_lng REAL, check_in_outside INTEGER,
    check_out_at INTEGER, check_out_lat REAL, check_out_lng REAL, check_out_outside INTEGER,
    notes TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX visits_by_rep_start ON visits (rep_id, planned_start);
CREATE TABLE inventory_lines (
    visit_id TEXT NOT NULL, product_id TEXT NOT NULL, shelf_qty INTEGER, backroom_qty INTEGER,
    out_of_stock INTEGER, observed_price_cents INTEGER, facings INTEGER, observed_at INTEGER NOT NULL,
    PRIMARY KEY (visit_id, product_id)
) WITHOUT ROWID;
CREATE TABLE planogram_results (
    visit_id TEXT NOT NULL, position_id TEXT NOT NULL, present INTEGER, actual_facings INTEGER,
    correct_position INTEGER, observed_at INTEGER NOT NULL, PRIMARY KEY (visit_id, position_id)
) WITHOUT ROWID;
CREATE TABLE promotion_checks (
    visit_id TEXT NOT NULL, promotion_id TEXT NOT NULL, display_in_place INTEGER, promo_price_correct INTEGER,
    materials_present INTEGER, observed_price_cents INTEGER, observed_at INTEGER NOT NULL,
    PRIMARY KEY (visit_id, promotion_id)
) WITHOUT ROWID;
CREATE TABLE survey_answers (
    visit_id TEXT NOT NULL, question_id TEXT NOT NULL, answer TEXT NOT NULL, observed_at INTEGER NOT NULL,
    PRIMARY KEY (visit_id, question_id)
) WITHOUT ROWID;
";

#[derive(Debug)]
struct Plain {
    conn: Connection,
}

impl Plain {
    fn open(path: &Path) -> Self {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        if version == 0 {
            conn.execute_batch(PLAIN_SCHEMA).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        Self { conn }
    }

    fn act(&mut self, sql: &str, p: impl rusqlite::Params) {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        tx.prepare_cached(sql).unwrap().execute(p).unwrap();
        tx.commit().unwrap();
    }

    fn create_visit(&mut self, id: &str, p: &VisitPlan) {
        self.act(
            "INSERT INTO visits (id, store_id, rep_id, planned_start, planned_end, priority, status, ad_hoc,
                template_id, instructions) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'planned', ?7, ?8, ?9)",
            params![id, p.store_id, p.rep_id, p.planned_start, p.planned_end, p.priority, p.ad_hoc, p.template_id, p.instructions],
        );
    }

    fn check(&mut self, id: &str, out: bool, at: i64, g: GeoPoint) {
        let sql = if out {
            "UPDATE visits SET check_out_at = ?2, check_out_lat = ?3, check_out_lng = ?4, check_out_outside = 0 WHERE id = ?1"
        } else {
            "UPDATE visits SET status = 'in_progress', check_in_at = ?2, check_in_lat = ?3, check_in_lng = ?4,
                check_in_outside = 0 WHERE id = ?1"
        };
        self.act(sql, params![id, at, g.lat, g.lng]);
    }

    fn record_inventory(&mut self, id: &str, pid: &str, i: &InventoryInput, at: i64) {
        self.act(
            "INSERT INTO inventory_lines (visit_id, product_id, shelf_qty, backroom_qty, out_of_stock,
                observed_price_cents, facings, observed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (visit_id, product_id) DO UPDATE SET
                shelf_qty = COALESCE(excluded.shelf_qty, shelf_qty),
                backroom_qty = COALESCE(excluded.backroom_qty, backroom_qty),
                out_of_stock = COALESCE(excluded.out_of_stock, out_of_stock),
                observed_price_cents = COALESCE(excluded.observed_price_cents, observed_price_cents),
                facings = COALESCE(excluded.facings, facings), observed_at = excluded.observed_at",
            params![id, pid, i.shelf_qty, i.backroom_qty, i.out_of_stock, i.observed_price_cents, i.facings, at],
        );
    }

    /// The same typical visit as [`typical_visit`], as rows.
    fn typical_visit(&mut self, c: &TypicalVisit, start: i64, n: usize) {
        let id = format!("{:08x}-0000-4000-8000-{:012x}", n, n); // uuid-shaped, like ours
        self.create_visit(&id, &plan(&c.store_id, start));
        for (at, action) in c.actions(start) {
            match action {
                TypicalAction::CheckIn => self.check(&id, false, at, c.position),
                TypicalAction::Inventory(pid, input) => self.record_inventory(&id, pid, &input, at),
                TypicalAction::Position(pos, p) => self.act(
                    "INSERT INTO planogram_results (visit_id, position_id, present, actual_facings, correct_position,
                        observed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, pos, p.present, p.actual_facings, p.correct_position, at],
                ),
                TypicalAction::Promotion(promo, p) => self.act(
                    "INSERT INTO promotion_checks (visit_id, promotion_id, display_in_place, promo_price_correct,
                        materials_present, observed_price_cents, observed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![id, promo, p.display_in_place, p.promo_price_correct, p.materials_present,
                        p.observed_price_cents, at],
                ),
                TypicalAction::Answer(q, value) => {
                    let answer = match value {
                        AnswerValue::Bool(b) => b.to_string(),
                        AnswerValue::Number(x) => x.to_string(),
                        AnswerValue::Text(t) => t,
                    };
                    self.act(
                        "INSERT INTO survey_answers (visit_id, question_id, answer, observed_at) VALUES (?1, ?2, ?3, ?4)",
                        params![id, q, answer, at],
                    );
                }
                TypicalAction::Notes(text) => self.act(
                    "UPDATE visits SET notes = ?2 WHERE id = ?1",
                    params![id, text],
                ),
                TypicalAction::CheckOut => self.check(&id, true, at, c.position),
            }
        }
    }
}

struct PlainLineRecorder {
    db: Plain,
    contents: Vec<TypicalVisit>,
    visit: String,
    content: usize,
    line: usize,
    visits: usize,
    at: i64,
}

impl PlainLineRecorder {
    fn new(path: &Path) -> Self {
        Self {
            db: Plain::open(path),
            contents: contents(&refs()),
            visit: String::new(),
            content: 0,
            line: LINES_PER_VISIT,
            visits: 0,
            at: NOW,
        }
    }

    fn record_one(&mut self) -> Duration {
        if self.line >= LINES_PER_VISIT {
            self.content = self.visits % self.contents.len();
            let c = self.contents[self.content].clone();
            self.visit = uuid::Uuid::new_v4().to_string();
            self.db.create_visit(
                &self.visit,
                &plan(&c.store_id, NOW + self.visits as i64 * HOUR_MS),
            );
            self.db.check(&self.visit, false, self.at, c.position);
            self.visits += 1;
            self.line = 0;
        }
        self.at += 15_000;
        let (pid, price) = self.contents[self.content].products[self.line].clone();
        let input = fixtures::typical_line(self.line, price);
        let t = Instant::now();
        self.db.record_inventory(&self.visit, &pid, &input, self.at);
        let d = t.elapsed();
        self.line += 1;
        d
    }
}

// ------------------------------------------------------------------------------ the 10k-visit store

/// Builds a store holding `cfg.route_visits` visits of the rep, `visits_per_day` a day,
/// the last days up to 5 days after today (so today's route has `visits_per_day`
/// entries), the rest history; the latest `audited_visits` visits before today carry a
/// full typical audit, and the outbox is acknowledged (history has been synced). All
/// through the public API, built on tmpfs when available (fsync is free there, which
/// only speeds up building) and then copied to `dst`. Returns how long building took.
fn build_route_store(cfg: &Config, dst: &Path) -> Duration {
    let t = Instant::now();
    let shm = Path::new("/dev/shm");
    let build_dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir_in(&cfg.dir)
    }
    .unwrap();
    let path = build_dir.path().join("route.db");
    let clock = Arc::new(ManualClock::new(NOW));
    {
        let s = new_store(&path, clock.clone());
        let contents = contents(&s.reference_data());
        let vpd = cfg.visits_per_day;
        let days = cfg.route_visits.div_ceil(vpd);
        let future_days = days.saturating_sub(1).min(5);
        let past_days = days - 1 - future_days;
        let midnight = NOW - NOW.rem_euclid(DAY_MS);
        let first_day = midnight - past_days as i64 * DAY_MS;
        let past_visits = (past_days * vpd).min(cfg.route_visits);
        let first_audited = past_visits.saturating_sub(cfg.audited_visits);
        for n in 0..cfg.route_visits {
            let day = (n / vpd) as i64;
            let slot = (n % vpd) as i64;
            // 07:00 UTC (08:00/09:00 local) onwards, one visit an hour.
            let start = first_day + day * DAY_MS + 7 * HOUR_MS + slot * HOUR_MS;
            let c = &contents[n % contents.len()];
            clock.set(start);
            if n >= first_audited && n < past_visits {
                typical_visit(&s, &clock, c, start);
            } else {
                s.create_visit(plan(&c.store_id, start)).unwrap();
            }
        }
        println!(
            "route store: {} visits, {} of them before today with a full typical audit, {} today",
            cfg.route_visits,
            past_visits - first_audited,
            s.today_route().unwrap().len()
        );
        let hashes: Vec<String> = s
            .outbox(usize::MAX >> 1)
            .unwrap()
            .into_iter()
            .map(|c| c.hash)
            .collect();
        s.acknowledge(&hashes).unwrap();
        s.compact_all().unwrap();
    }
    std::fs::copy(&path, dst).unwrap();
    t.elapsed()
}

fn proc_status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The child process: open the store, load today's route, report time and memory.
fn child_main(path: &str) {
    let rss_start = proc_status_kb("VmRSS:");
    let clock = Arc::new(ManualClock::new(NOW));
    let t = Instant::now();
    let s = DeviceStore::open_with_clock(path, REP, "dev-bench", clock).unwrap();
    let opened = t.elapsed();
    let route = s.today_route().unwrap();
    let total = t.elapsed();
    let rss = proc_status_kb("VmRSS:");
    let hwm = proc_status_kb("VmHWM:");
    println!(
        "CHILD open_us={} route_us={} total_us={} route_len={} rss_start_kb={rss_start} rss_kb={rss} hwm_kb={hwm}",
        opened.as_micros(),
        (total - opened).as_micros(),
        total.as_micros(),
        route.len()
    );
    black_box(s);
}

#[derive(Debug, Default, Clone)]
struct ChildResult {
    values: BTreeMap<String, u64>,
}

fn run_child(db: &Path, evict_cache: bool) -> ChildResult {
    if evict_cache {
        // Ask the kernel to drop the database file from the page cache (GNU dd).
        let _ = Command::new("dd")
            .args([
                format!("if={}", db.display()),
                "iflag=nocache".into(),
                "count=0".into(),
                "status=none".into(),
            ])
            .status();
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("CHILD "))
        .expect("child printed no result");
    let mut r = ChildResult::default();
    for kv in line.split_whitespace().skip(1) {
        let (k, v) = kv.split_once('=').unwrap();
        r.values.insert(k.into(), v.parse().unwrap());
    }
    r
}

// ------------------------------------------------------------------------------ sizes on disk

/// Bytes of values per table: the sum of every column's length (numbers counted as their
/// text). The shipped SQLite has no `dbstat` (`.cargo/config.toml`), so record headers,
/// indexes and free pages show only in the file size.
fn table_sizes(path: &Path) -> BTreeMap<String, i64> {
    let conn = Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    tables
        .into_iter()
        .map(|t| {
            let columns: Vec<String> = conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .unwrap()
                .query_map([&t], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let lengths = columns
                .iter()
                .map(|c| format!("COALESCE(length(CAST(\"{c}\" AS BLOB)), 0)"))
                .collect::<Vec<_>>()
                .join(" + ");
            let bytes: i64 = conn
                .query_row(
                    &format!("SELECT COALESCE(SUM({lengths}), 0) FROM \"{t}\""),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            (t, bytes)
        })
        .collect()
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Bytes of the database's pages in use (tables, indexes and their page overhead; free
/// pages left out), after checkpointing the WAL into the file.
fn pages_in_use(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let pragma = |name: &str| -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .unwrap()
    };
    (pragma("page_count") - pragma("freelist_count")) * pragma("page_size")
}

fn size_delta(after: &BTreeMap<String, i64>, before: &BTreeMap<String, i64>, n: usize) -> String {
    let mut parts = Vec::new();
    let mut total = 0;
    for (t, bytes) in after {
        let grew = bytes - before.get(t).copied().unwrap_or(0);
        if grew != 0 {
            parts.push(format!("{t}: {} B", grew / n as i64));
            total += grew;
        }
    }
    format!(
        "total {} B of values | {}",
        total / n as i64,
        parts.join(", ")
    )
}

// ------------------------------------------------------------------------------ report

fn timed_lines(cfg: &Config, mut record_one: impl FnMut() -> Duration) -> Stats {
    // Warm up with one visit's worth of lines.
    for _ in 0..LINES_PER_VISIT {
        record_one();
    }
    stats((0..cfg.line_samples).map(|_| record_one()).collect())
}

fn report(cfg: &Config, route_db: Option<&Path>) {
    let dir = tempfile::tempdir_in(&cfg.dir).unwrap();
    let shm = Path::new("/dev/shm")
        .is_dir()
        .then(|| tempfile::tempdir_in("/dev/shm").unwrap());
    println!("\n===== fieldsync device-core report =====");
    println!(
        "store files in {} (fs must be a real disk for durability figures)",
        cfg.dir.display()
    );
    println!("config: {cfg:?}");

    // 1. Record one line: latency of individually timed calls.
    if cfg.section("lines") {
        let mut rec = LineRecorder::new(&dir.path().join("lines.db"));
        print_stats(
            "record_inventory (file, WAL, synchronous=FULL)",
            &timed_lines(cfg, || rec.record_one()),
        );
        let mut rec = PlainLineRecorder::new(&dir.path().join("plain_lines.db"));
        print_stats(
            "plain SQLite upsert (file, WAL, synchronous=FULL)",
            &timed_lines(cfg, || rec.record_one()),
        );
        // The same on tmpfs, where fsync costs nothing: the CPU share of the latency.
        if let Some(shm) = &shm {
            let mut rec = LineRecorder::new(&shm.path().join("lines.db"));
            print_stats(
                "record_inventory (tmpfs: no fsync cost; diagnostic)",
                &timed_lines(cfg, || rec.record_one()),
            );
            let mut rec = PlainLineRecorder::new(&shm.path().join("plain_lines.db"));
            print_stats(
                "plain SQLite upsert (tmpfs: no fsync cost; diagnostic)",
                &timed_lines(cfg, || rec.record_one()),
            );
        }
    }

    // 1b. Bytes per recorded line.
    if cfg.section("bytes") {
        let clock = Arc::new(ManualClock::new(NOW));
        let s = new_store(&dir.path().join("bytes_per_line.db"), clock.clone());
        let c = contents(&s.reference_data())[0].clone();
        let id = s.create_visit(plan(&c.store_id, NOW)).unwrap();
        s.check_in(&id, c.position).unwrap();
        s.compact_all().unwrap();
        let before = s.document_size(&id).unwrap();
        let outbox_before = s.outbox_len().unwrap() as usize;
        for (i, (pid, price)) in c.products.iter().enumerate() {
            clock.advance(15_000);
            s.record_inventory(&id, pid, &fixtures::typical_line(i, *price))
                .unwrap();
        }
        let appended = s.document_size(&id).unwrap();
        let changes: Vec<usize> = s
            .outbox(100_000)
            .unwrap()
            .iter()
            .skip(outbox_before)
            .map(|c| c.bytes.len())
            .collect();
        s.compact_all().unwrap();
        let after = s.document_size(&id).unwrap();
        let n = c.products.len();
        println!(
            "new line (5 fields), {n} lines: raw change (outbox entry) avg {} B, min {} B, max {} B; \
             document growth uncompacted {} B/line; compacted {} B/line (document {before} -> {after} B)",
            changes.iter().sum::<usize>() / n,
            changes.iter().min().unwrap(),
            changes.iter().max().unwrap(),
            (appended - before) / n as u64,
            (after - before) / n as u64,
        );
        // A recount: the same lines recorded again with other values.
        let outbox_before = s.outbox_len().unwrap() as usize;
        for (i, (pid, price)) in c.products.iter().enumerate() {
            clock.advance(15_000);
            s.record_inventory(&id, pid, &fixtures::typical_line(i + 1, *price + 10))
                .unwrap();
        }
        let changes: Vec<usize> = s
            .outbox(100_000)
            .unwrap()
            .iter()
            .skip(outbox_before)
            .map(|c| c.bytes.len())
            .collect();
        s.compact_all().unwrap();
        let recount = s.document_size(&id).unwrap();
        println!(
            "recount of an existing line (5 fields): raw change avg {} B; compacted growth {} B/line",
            changes.iter().sum::<usize>() / n,
            (recount - after) / n as u64
        );
    }

    // 3 + 4. Bytes on disk per typical visit, ours and plain.
    if cfg.section("sizes") {
        let clock = Arc::new(ManualClock::new(NOW));
        let path = dir.path().join("sizes.db");
        drop(new_store(&path, clock.clone()));
        let (file0, tables0, pages0) = (file_size(&path), table_sizes(&path), pages_in_use(&path));
        let n = cfg.size_visits;
        let (doc_uncompacted, doc_compacted, raw, changes) = {
            let s = open_store(&path, clock.clone());
            let contents = contents(&s.reference_data());
            let ids: Vec<String> = (0..n)
                .map(|i| {
                    clock.set(NOW + i as i64 * HOUR_MS);
                    typical_visit(
                        &s,
                        &clock,
                        &contents[i % contents.len()],
                        NOW + i as i64 * HOUR_MS,
                    )
                })
                .collect();
            let uncompacted: u64 = ids.iter().map(|id| s.document_size(id).unwrap()).sum();
            s.compact_all().unwrap();
            let compacted: u64 = ids.iter().map(|id| s.document_size(id).unwrap()).sum();
            let outbox = s.outbox(1_000_000).unwrap();
            let raw: usize = outbox.iter().map(|c| c.bytes.len()).sum();
            (uncompacted, compacted, raw, outbox.len())
        };
        let (file1, tables1) = (file_size(&path), table_sizes(&path));
        println!(
            "typical visit ({n} visits): compacted document {} B/visit; before compact_all {} B/visit; \
             raw changes {} B/visit in {} changes/visit",
            doc_compacted / n as u64,
            doc_uncompacted / n as u64,
            raw / n,
            changes / n
        );
        println!(
            "typical visit, SQLite file growth (outbox pending): {} B/visit; {}",
            (file1 - file0) / n as u64,
            size_delta(&tables1, &tables0, n)
        );
        {
            let s = open_store(&path, clock.clone());
            let hashes: Vec<String> = s
                .outbox(1_000_000)
                .unwrap()
                .into_iter()
                .map(|c| c.hash)
                .collect();
            s.acknowledge(&hashes).unwrap();
        }
        let tables2 = table_sizes(&path);
        println!(
            "typical visit, after the outbox is acknowledged: {}",
            size_delta(&tables2, &tables0, n)
        );
        println!(
            "typical visit, pages in use after the outbox is acknowledged: {} B/visit",
            (pages_in_use(&path) - pages0) / n as i64
        );

        let ppath = dir.path().join("plain_sizes.db");
        drop(Plain::open(&ppath));
        let (pfile0, ptables0, ppages0) =
            (file_size(&ppath), table_sizes(&ppath), pages_in_use(&ppath));
        {
            let mut p = Plain::open(&ppath);
            let contents = contents(&refs());
            for i in 0..n {
                p.typical_visit(&contents[i % contents.len()], NOW + i as i64 * HOUR_MS, i);
            }
        }
        let (pfile1, ptables1) = (file_size(&ppath), table_sizes(&ppath));
        println!(
            "plain SQLite typical visit: file growth {} B/visit; {}",
            (pfile1 - pfile0) / n as u64,
            size_delta(&ptables1, &ptables0, n)
        );
        println!(
            "plain SQLite typical visit, pages in use: {} B/visit",
            (pages_in_use(&ppath) - ppages0) / n as i64
        );
    }

    // 2. Open a store with many visits and load today's route, in fresh processes.
    if let Some(db) = route_db {
        println!(
            "route store: {} visits, file {} B",
            cfg.route_visits,
            file_size(db)
        );
        for evict in [false, true] {
            let runs: Vec<ChildResult> =
                (0..cfg.child_runs).map(|_| run_child(db, evict)).collect();
            let col = |k: &str| -> Vec<u64> { runs.iter().map(|r| r.values[k]).collect() };
            let dur = |k: &str| stats(col(k).into_iter().map(Duration::from_micros).collect());
            let total = dur("total_us");
            let kb_max = |k: &str| col(k).into_iter().max().unwrap();
            let kb_med = |k: &str| {
                let mut v = col(k);
                v.sort_unstable();
                v[(v.len() - 1) / 2]
            };
            println!(
                "open + today_route in a fresh process ({}; {} runs): median {} (open {} + route {}), max {}; \
                 route_len {}; VmRSS at start {} kB, after {} kB (max {} kB), VmHWM {} kB (max {} kB)",
                if evict {
                    "db file evicted from page cache"
                } else {
                    "db file in page cache"
                },
                runs.len(),
                ms(total.median),
                ms(dur("open_us").median),
                ms(dur("route_us").median),
                ms(total.max),
                kb_med("route_len"),
                kb_med("rss_start_kb"),
                kb_med("rss_kb"),
                kb_max("rss_kb"),
                kb_med("hwm_kb"),
                kb_max("hwm_kb"),
            );
        }
    }
    println!("===== end of report =====");
}

// ------------------------------------------------------------------------------ criterion

/// The JSON body of a sync request that pushes one change of a typical visit (its
/// check-in).
fn one_change_request_body() -> Vec<u8> {
    let doc = fixtures::typical_visit_document("v-body", today(), NOW).unwrap();
    let change = doc.automerge().get_changes(&[])[1].clone();
    let req = SyncRequest {
        protocol: PROTOCOL_VERSION,
        device_id: "dev-bench".into(),
        cursor: Some("12345.0123456789abcdef".into()),
        epoch: Some("0123456789abcdef0123456789abcdef".into()),
        reference_version: 3,
        reference_epoch: None,
        changes: vec![VisitChanges {
            visit_id: "v-body".into(),
            changes: vec![encode_change(change.raw_bytes())],
        }],
        heads: None,
        accept_documents: true,
        accept_visits: Some(fieldsync_core::document::VISIT_FORMAT),
        documents: Vec::new(),
    };
    serde_json::to_vec(&req).unwrap()
}

fn criterion_benches(c: &mut Criterion, cfg: &Config, route_db: &Path) {
    let dir = tempfile::tempdir_in(&cfg.dir).unwrap();
    let mut g = c.benchmark_group("device");
    if cfg.quick {
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
    }

    let mut rec = LineRecorder::new(&dir.path().join("criterion_lines.db"));
    g.bench_function("record_inventory_line", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rec.record_one()).sum());
    });
    drop(rec);

    let mut plain = PlainLineRecorder::new(&dir.path().join("criterion_plain.db"));
    g.bench_function("record_inventory_line_plain_sqlite", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| plain.record_one()).sum());
    });
    drop(plain);

    let db = route_db;
    // A sync request body carrying one change (an app syncing after an action), as the
    // client compresses it (the thread's kept Zstandard context) and as it did before
    // (`zstd::encode_all`: a new context per body).
    let body = one_change_request_body();
    g.bench_function("sync_body_zstd_kept_context", |b| {
        b.iter(|| compress(black_box(&body), Compression::Zstd).unwrap());
    });
    g.bench_function("sync_body_zstd_new_context", |b| {
        b.iter(|| zstd::encode_all(black_box(&body[..]), 3).unwrap());
    });

    // Reading a typical visit whole (what the server's content rules check on every
    // push, and what the device projects after each write).
    let typical = fixtures::typical_visit_document("v-read", today(), NOW).unwrap();
    g.bench_function("visit_doc_read_typical", |b| {
        b.iter(|| black_box(&typical).read().unwrap());
    });

    g.bench_function(
        format!("open_store_{}_visits_and_today_route", cfg.route_visits),
        |b| {
            b.iter_with_large_drop(|| {
                let s = DeviceStore::open_with_clock(
                    db,
                    REP,
                    "dev-bench",
                    Arc::new(ManualClock::new(NOW)),
                )
                .unwrap();
                let route = s.today_route().unwrap();
                assert_eq!(route.len(), cfg.visits_per_day.min(cfg.route_visits));
                (s, route)
            });
        },
    );
    // The KPI summary of the rep's last two weeks (the phone's window), with the current
    // reference data only, and after an import a week ago (the visits before it judged with
    // the version kept, `DeviceStore::reference_for`).
    // The first summary after the store opens reads every visit's document; later ones
    // take the visits as read then (`DeviceStore::visit` keeps them while unchanged).
    let window = (NOW - 14 * DAY_MS, NOW);
    g.bench_function("kpi_summary_two_weeks_first_after_open", |b| {
        b.iter_batched(
            || open_store(db, Arc::new(ManualClock::new(NOW))),
            |s| s.kpi_summary(window.0, window.1).unwrap(),
            BatchSize::PerIteration,
        );
    });
    let s = open_store(db, Arc::new(ManualClock::new(NOW)));
    let current_only = s.kpi_summary(window.0, window.1).unwrap();
    g.bench_function("kpi_summary_two_weeks", |b| {
        b.iter(|| s.kpi_summary(window.0, window.1).unwrap());
    });
    drop(s);
    let copy = dir.path().join("route_history.db");
    std::fs::copy(db, &copy).unwrap();
    let s = open_store(&copy, Arc::new(ManualClock::new(NOW)));
    let mut next = (*s.reference_data()).clone();
    next.version += 1;
    s.receive_reference_data(next, Some(NOW - 7 * DAY_MS), &[])
        .unwrap();
    // The same data under another version: the same KPIs, from two versions.
    assert_eq!(s.kpi_summary(window.0, window.1).unwrap(), current_only);
    g.bench_function("kpi_summary_two_weeks_across_an_import", |b| {
        b.iter(|| s.kpi_summary(window.0, window.1).unwrap());
    });
    drop(s);
    g.finish();
}

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child_main(&path);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let has = |a: &str| args.iter().any(|x| x == a);
    let bench_mode = has("--bench") && !has("--test");
    let cfg = Config::from_env(bench_mode);
    if has("--list") {
        for name in [
            "record_inventory_line",
            "record_inventory_line_plain_sqlite",
            "sync_body_zstd_kept_context",
            "sync_body_zstd_new_context",
            "visit_doc_read_typical",
            "kpi_summary_two_weeks_first_after_open",
            "kpi_summary_two_weeks",
            "kpi_summary_two_weeks_across_an_import",
        ] {
            println!("device/{name}: benchmark");
        }
        println!(
            "device/open_store_{}_visits_and_today_route: benchmark",
            cfg.route_visits
        );
        return;
    }
    let run_criterion = env_flag("FIELDSYNC_BENCH_CRITERION", true);
    let run_report = env_flag("FIELDSYNC_BENCH_REPORT", true);
    let dir = tempfile::tempdir_in(&cfg.dir).unwrap();
    let route_db = dir.path().join("route.db");
    if run_criterion || (run_report && cfg.section("route")) {
        let built = build_route_store(&cfg, &route_db);
        println!(
            "route store built in {:.1} s, {} B",
            built.as_secs_f64(),
            file_size(&route_db)
        );
    }
    if run_criterion {
        let mut c = Criterion::default().configure_from_args();
        criterion_benches(&mut c, &cfg, &route_db);
        c.final_summary();
    }
    if run_report {
        report(&cfg, cfg.section("route").then_some(route_db.as_path()));
    }
}
