//! Admin operations behind `fieldsync-server admin …`: users, tokens, reference-data
//! import (JSON, or stores/products CSV) and backup.

use fieldsync_core::Gtin13;
use fieldsync_core::model::{Product, ReferenceData, Role, Store as Shop};
use fieldsync_core::visit::VisitStatus;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::store::{NewUser, Store, StoreResult};

/// Creates a user; returns the password (generated when `password` is `None`).
pub fn create_user(
    store: &dyn Store,
    username: &str,
    role: Role,
    territories: &[String],
    password: Option<&str>,
) -> Result<String, String> {
    if username.trim().is_empty() {
        return Err("the username must not be empty".into());
    }
    let refs = store.reference().map_err(|e| e.to_string())?;
    if !refs.territories.is_empty() {
        for t in territories {
            if !refs.territories.iter().any(|x| &x.id == t) {
                return Err(format!("unknown territory {t:?}"));
            }
        }
    }
    let password = password.map_or_else(crate::auth::generate_password, str::to_string);
    if password.len() < 8 {
        return Err("the password must have at least 8 characters".into());
    }
    // Reuse the reference data's user id for the same username (so plans name them).
    let id = refs
        .users
        .iter()
        .find(|u| u.username == username)
        .map_or_else(|| username.to_string(), |u| u.id.clone());
    let hash = crate::auth::hash_password(&password)?;
    store
        .create_user(&NewUser {
            id,
            username: username.into(),
            role,
            territories: territories.to_vec(),
            password_hash: hash,
        })
        .map_err(|e| e.to_string())?;
    Ok(password)
}

/// Reads reference data from a file: `*.json` (whole reference data), or a CSV of stores
/// or products (recognized by its header) whose rows replace the stores or the products of
/// the current data. Every problem is reported, CSV problems with their line numbers;
/// nothing is returned if any.
pub fn load_import(current: &ReferenceData, path: &Path) -> Result<ReferenceData, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let (data, lines) = if is_json {
        let d: ReferenceData =
            serde_json::from_str(&text).map_err(|e| vec![format!("{}: {e}", path.display())])?;
        (d, HashMap::new())
    } else {
        import_csv(current, &text)?
    };
    if let Err(fieldsync_core::Error::InvalidReferenceData { problems }) = data.validate() {
        return Err(problems
            .into_iter()
            .map(|p| {
                // "store st-1: …" → "line 3: store st-1: …"
                let id = p
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .trim_end_matches(':');
                match lines.get(id) {
                    Some(l) => format!("line {l}: {p}"),
                    None => p,
                }
            })
            .collect());
    }
    Ok(data)
}

/// The columns a stores CSV must have (the others, `address`, `timezone`,
/// `store_group_ids` (`;`-separated) and `priority`, may be left out).
const STORE_COLUMNS: &[&str] = &[
    "id",
    "name",
    "territory_id",
    "lat",
    "lng",
    "geofence_radius_m",
];
/// The columns a products CSV must have (`brand`, `category` and `own_brand` may be left
/// out).
const PRODUCT_COLUMNS: &[&str] = &["id", "gtin", "name", "list_price_cents"];

fn import_csv(
    current: &ReferenceData,
    text: &str,
) -> Result<(ReferenceData, HashMap<String, usize>), Vec<String>> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| vec![format!("line 1: {e}")])?
        .iter()
        .map(str::to_string)
        .collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let is_stores = col("territory_id").is_some();
    let is_products = col("gtin").is_some();
    if !is_stores && !is_products {
        return Err(vec!["line 1: unknown CSV: a stores file needs a territory_id column, a products file a gtin column".into()]);
    }
    let (kind, required) = if is_stores {
        ("stores", STORE_COLUMNS)
    } else {
        ("products", PRODUCT_COLUMNS)
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|c| col(c).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(vec![format!(
            "line 1: a {kind} CSV needs the column(s) {}; this one has {}",
            missing.join(", "),
            headers.join(", ")
        )]);
    }
    let mut errors = Vec::new();
    let mut lines = HashMap::new();
    let mut data = current.clone();
    let mut stores = Vec::new();
    let mut products = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let get = |name: &str| col(name).and_then(|c| rec.get(c)).unwrap_or("").to_string();
        let num = |name: &str, errors: &mut Vec<String>| -> f64 {
            get(name).parse::<f64>().unwrap_or_else(|_| {
                errors.push(format!(
                    "line {line}: {name} {:?} is not a number",
                    get(name)
                ));
                0.0
            })
        };
        let id = get("id");
        if id.is_empty() {
            errors.push(format!("line {line}: empty id"));
            continue;
        }
        lines.insert(id.clone(), line);
        if is_stores {
            let s = Shop {
                id,
                name: get("name"),
                territory_id: get("territory_id"),
                address: get("address"),
                lat: num("lat", &mut errors),
                lng: num("lng", &mut errors),
                geofence_radius_m: num("geofence_radius_m", &mut errors),
                timezone: get("timezone"),
                store_group_ids: get("store_group_ids")
                    .split(';')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                priority: get("priority").parse().unwrap_or(3),
            };
            stores.push(s);
        } else {
            let gtin = match Gtin13::parse(&get("gtin")) {
                Ok(g) => g,
                Err(e) => {
                    errors.push(format!("line {line}: {e}"));
                    continue;
                }
            };
            let price = get("list_price_cents").parse::<i64>().unwrap_or_else(|_| {
                errors.push(format!(
                    "line {line}: list_price_cents {:?} is not a whole number",
                    get("list_price_cents")
                ));
                0
            });
            products.push(Product {
                id,
                gtin,
                name: get("name"),
                brand: get("brand"),
                category: get("category"),
                own_brand: !matches!(get("own_brand").as_str(), "false" | "0" | "no"),
                list_price_cents: price,
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if is_stores {
        data.stores = stores;
    } else {
        data.products = products;
    }
    Ok((data, lines))
}

/// What an import did, or would do.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// The new reference data version; `None` for a dry run.
    pub version: Option<i64>,
    /// What changes, one line per kind of data (see [`reference_changes`]).
    pub changes: Vec<String>,
    /// One line per store removed (with `allow_removals`) while it has open visits: the
    /// visits for managers to follow up.
    pub closed_with_open_visits: Vec<String>,
}

/// Imports a file: validated whole first, then applied in one transaction (unless
/// `dry_run`). A JSON file replaces all reference data; a stores or products CSV replaces
/// the stores or the products with its rows. Removing a store that still has open visits
/// (planned or in progress, from two weeks back on) is refused unless `allow_removals`:
/// reps would be sent to a closed store.
pub fn import(
    store: &dyn Store,
    path: &Path,
    dry_run: bool,
    allow_removals: bool,
) -> Result<Imported, Vec<String>> {
    let current = store.reference().map_err(|e| vec![e.to_string()])?;
    let data = load_import(&current, path)?;
    let open =
        open_visits_of_removed_stores(store, &current, &data).map_err(|e| vec![e.to_string()])?;
    if !allow_removals && !open.is_empty() {
        return Err(open
            .iter()
            .map(|(store_id, visits)| {
                format!(
                    "store {store_id} would be removed but has {}: reassign or cancel them first, or import with --allow-removals",
                    open_visits_text(visits)
                )
            })
            .collect());
    }
    let closed_with_open_visits = open
        .iter()
        .map(|(store_id, visits)| {
            format!(
                "store {store_id} is removed with {}: the phones holding them keep the store, flagged closed, so the reps can finish them",
                open_visits_text(visits)
            )
        })
        .collect();
    let changes = reference_changes(&current, &data);
    let version = if dry_run {
        None
    } else {
        Some(
            store
                .import_reference(data)
                .map_err(|e| vec![e.to_string()])?,
        )
    };
    Ok(Imported {
        version,
        changes,
        closed_with_open_visits,
    })
}

/// "2 open visit(s) (v-1, v-2)": the count and the first three.
fn open_visits_text(visits: &[String]) -> String {
    let shown: Vec<&str> = visits.iter().take(3).map(String::as_str).collect();
    let more = if visits.len() > shown.len() {
        ", …"
    } else {
        ""
    };
    format!(
        "{} open visit(s) ({}{more})",
        visits.len(),
        shown.join(", ")
    )
}

/// Each store that `after` removes from `before` while it has open visits (planned or in
/// progress, planned from two weeks back on: what the reps' phones hold and the planning
/// page shows), with those visits.
fn open_visits_of_removed_stores(
    store: &dyn Store,
    before: &ReferenceData,
    after: &ReferenceData,
) -> StoreResult<Vec<(String, Vec<String>)>> {
    let kept: HashSet<&str> = after.stores.iter().map(|s| s.id.as_str()).collect();
    let removed: HashSet<&str> = before
        .stores
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| !kept.contains(id))
        .collect();
    if removed.is_empty() {
        return Ok(Vec::new());
    }
    let since = chrono::Utc::now().timestamp_millis() - 14 * 86_400_000;
    let mut open: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in store.visit_metas_in_range(None, since, i64::MAX)? {
        let open_status = VisitStatus::parse(&m.status).is_ok_and(|s| !s.is_final());
        if removed.contains(m.store_id.as_str()) && open_status {
            open.entry(m.store_id).or_default().push(m.visit_id);
        }
    }
    Ok(open.into_iter().collect())
}

/// What replacing `before` with `after` changes, one line per kind of reference data that
/// changes, items matched by id: "stores: 1 added, 2 changed, 37 removed (40 → 4)".
pub fn reference_changes(before: &ReferenceData, after: &ReferenceData) -> Vec<String> {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return vec!["(the changes could not be listed)".into()];
    };
    let mut out = Vec::new();
    for (kind, new_value) in &new {
        let old_value = old.get(kind).unwrap_or(&Value::Null);
        if kind == "version" || old_value == new_value {
            continue;
        }
        let (Value::Array(was), Value::Array(now)) = (old_value, new_value) else {
            out.push(format!("{kind}: changed"));
            continue;
        };
        let by_id = |items: &[Value]| -> HashMap<String, Value> {
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v.get("id").and_then(Value::as_str) {
                    Some(id) => (id.to_string(), v.clone()),
                    None => (format!("#{i}"), v.clone()),
                })
                .collect()
        };
        let (was_ids, now_ids) = (by_id(was), by_id(now));
        let added = now_ids.keys().filter(|k| !was_ids.contains_key(*k)).count();
        let removed = was_ids.keys().filter(|k| !now_ids.contains_key(*k)).count();
        let changed = now_ids
            .iter()
            .filter(|(k, v)| was_ids.get(*k).is_some_and(|w| w != *v))
            .count();
        let parts: Vec<String> = [(added, "added"), (changed, "changed"), (removed, "removed")]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        let parts = if parts.is_empty() {
            "reordered".to_string()
        } else {
            parts.join(", ")
        };
        out.push(format!("{kind}: {parts} ({} → {})", was.len(), now.len()));
    }
    out
}

/// The name of the embedded database in a data directory.
pub const DB_FILE: &str = "fieldsync.db";
const LOCK_FILE: &str = "fieldsync.lock";

/// Takes the data directory's lock: a server holds it while it serves, so a restore cannot
/// replace the database under it. Kept until the returned file is dropped.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "a fieldsync server is using {}: stop it first",
            dir.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct Restored {
    /// The restored database's new epoch.
    pub epoch: String,
    /// Where the database it replaced was moved (`None` when there was none).
    pub previous: Option<std::path::PathBuf>,
}

/// Restores the embedded database of `dir` from `backup` (a file written by
/// `admin backup`), with the server stopped. The backup is checked first (a SQLite
/// database that passes `integrity_check` and has a fieldsync epoch); nothing changes
/// when it is not. The restored database always gets a new epoch, so restoring the same
/// backup twice still makes devices reconcile (they resend what it lacks). The replaced
/// database is moved aside, not deleted.
pub fn restore(dir: &Path, backup: &Path) -> Result<Restored, String> {
    use rusqlite::{Connection, OpenFlags};
    let _lock = lock_data_dir(dir)?;
    let bad = |why: String| {
        format!(
            "{} is not a usable fieldsync backup: {why}",
            backup.display()
        )
    };
    let src = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| bad(e.to_string()))?;
    let check: String = src
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| bad(e.to_string()))?;
    if check != "ok" {
        return Err(bad(format!("integrity check: {check}")));
    }
    src.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
        r.get::<_, String>(0)
    })
    .map_err(|e| bad(format!("no epoch ({e})")))?;

    let live = dir.join(DB_FILE);
    let staged = dir.join(format!("{DB_FILE}.restoring"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("{DB_FILE}.restoring{suffix}")));
    }
    let copy = || -> Result<String, String> {
        let mut dst = Connection::open(&staged).map_err(|e| e.to_string())?;
        rusqlite::backup::Backup::new(&src, &mut dst)
            .and_then(|b| b.run_to_completion(256, std::time::Duration::ZERO, None))
            .map_err(|e| e.to_string())?;
        drop(dst);
        // Opening migrates an older backup; then a fresh epoch, forgetting which device
        // holds what (devices reconcile by their heads).
        let store = crate::SqliteStore::open(&staged).map_err(|e| e.to_string())?;
        let epoch = store.new_epoch().map_err(|e| e.to_string())?;
        drop(store);
        Ok(epoch)
    };
    let epoch = copy().map_err(|e| {
        let _ = std::fs::remove_file(&staged);
        format!(
            "restoring {} failed, nothing changed: {e}",
            backup.display()
        )
    })?;
    let previous = if live.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let aside = dir.join(format!("{DB_FILE}.before-restore-{stamp}"));
        for suffix in ["", "-wal", "-shm"] {
            let from = dir.join(format!("{DB_FILE}{suffix}"));
            if from.exists() {
                let to = std::path::PathBuf::from(format!("{}{suffix}", aside.display()));
                std::fs::rename(&from, &to)
                    .map_err(|e| format!("cannot move {} aside: {e}", from.display()))?;
            }
        }
        Some(aside)
    } else {
        None
    };
    for suffix in ["-wal", "-shm", ""] {
        let from = dir.join(format!("{DB_FILE}.restoring{suffix}"));
        if from.exists() {
            std::fs::rename(&from, dir.join(format!("{DB_FILE}{suffix}")))
                .map_err(|e| format!("cannot move the restored database into place: {e}"))?;
        }
    }
    Ok(Restored { epoch, previous })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_core::fixtures::{self, FixtureSize};

    #[test]
    fn reference_changes_count_by_id_and_name_each_kind() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let before = fixtures::reference_data(3, &FixtureSize::default(), today);
        assert!(reference_changes(&before, &before).is_empty());
        let mut after = before.clone();
        after.version += 1;
        after.products[0].list_price_cents += 10;
        after.products[1].name.push_str(" XL");
        let gone = after.stores.pop().unwrap();
        after.stores.push(Shop {
            id: "st-new".into(),
            ..gone
        });
        after.stores.remove(0);
        after.settings.price_tolerance += 0.01;
        let (p, s) = (before.products.len(), before.stores.len());
        assert_eq!(
            reference_changes(&before, &after),
            vec![
                format!("products: 2 changed ({p} → {p})"),
                "settings: changed".to_string(),
                format!("stores: 1 added, 2 removed ({s} → {})", s - 1),
            ]
        );
        // Only the order differs.
        let mut shuffled = before.clone();
        shuffled.stores.reverse();
        assert_eq!(
            reference_changes(&before, &shuffled),
            vec![format!("stores: reordered ({s} → {s})")]
        );
    }
}
