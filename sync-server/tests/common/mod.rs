#![allow(dead_code)]
//! Helpers for the end-to-end tests: start the real `fieldsync-server` binary on
//! 127.0.0.1 with a temp data dir, seed it, and drive device stores through the core's
//! sync client.

use fieldsync_core::fixtures::{self, FixtureSize};
use fieldsync_core::model::{ReferenceData, Role, Store as Shop};
use fieldsync_core::store::DeviceStore;
use fieldsync_core::sync::{SyncClient, SyncConfig, login};
use fieldsync_core::visit::{GeoPoint, Visit};
use fieldsync_server::{SqliteStore, Store};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_fieldsync-server");
pub const HOUR: i64 = 3_600_000;

/// A running server process.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub base: String,
    pub port: u16,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts `serve` on `127.0.0.1:{port}` (0 = a free port) and waits until it listens.
    pub fn start(data_dir: &Path, port: u16) -> Server {
        Self::start_with(data_dir, port, &[])
    }

    /// Like [`Server::start`] with extra `serve` arguments.
    pub fn start_with(data_dir: &Path, port: u16, extra: &[&str]) -> Server {
        for attempt in 0..20 {
            let mut child = Command::new(BIN)
                .args([
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--data-dir",
                ])
                .arg(data_dir)
                .args(extra)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn server");
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix("fieldsync-server listening on ") {
                        let _ = tx.send(url.to_string());
                    }
                }
            });
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(base) => {
                    let port = base.rsplit(':').next().unwrap().parse().unwrap();
                    return Server {
                        child,
                        base,
                        port,
                        data_dir: data_dir.to_path_buf(),
                    };
                }
                Err(_) => {
                    // The port may still be held by a killed predecessor: try again.
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(200 + 100 * attempt));
                }
            }
        }
        panic!("the server did not start");
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the graceful exit; true when it exited by itself with success.
    pub fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        false
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

pub fn refs() -> ReferenceData {
    fixtures::reference_data(5, &FixtureSize::default(), today())
}

pub fn password(username: &str) -> String {
    format!("password-{username}")
}

/// Seeds reference data and every fixture user (password `password-<username>`).
pub fn seed(data_dir: &Path) -> ReferenceData {
    let store = SqliteStore::open_dir(data_dir).unwrap();
    let r = refs();
    store.import_reference(r.clone()).unwrap();
    for u in &r.users {
        fieldsync_server::admin::create_user(
            &store,
            &u.username,
            u.role,
            &u.territory_ids,
            Some(&password(&u.username)),
        )
        .unwrap();
    }
    store.reference().unwrap().as_ref().clone()
}

/// A fresh temporary directory, the server's data dir in it (`<tmp>/server`) seeded with
/// [`seed`], and the server started on a free port.
pub fn seeded_server() -> (tempfile::TempDir, PathBuf, ReferenceData, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let r = seed(&data);
    let server = Server::start(&data, 0);
    (tmp, data, r, server)
}

/// A device of a user: its store and a signed-in client.
pub struct Device {
    pub store: DeviceStore,
    pub client: SyncClient,
    pub token: String,
    pub user_id: String,
    pub device_id: String,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({})", self.device_id)
    }
}

pub fn fast_config() -> SyncConfig {
    SyncConfig {
        max_attempts: 12,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(800),
        timeout: Duration::from_secs(20),
        ..SyncConfig::default()
    }
}

pub async fn device(server: &Server, dir: &Path, username: &str, device_id: &str) -> Device {
    let session = login(&server.base, username, &password(username), device_id)
        .await
        .expect("login");
    let store = DeviceStore::open(
        dir.join(format!("{device_id}.db")),
        &session.user.id,
        device_id,
    )
    .unwrap();
    let client = SyncClient::with_config(&server.base, &session.token, fast_config()).unwrap();
    Device {
        store,
        client,
        token: session.token,
        user_id: session.user.id,
        device_id: device_id.into(),
    }
}

/// A device token of `username` (fixture password), signed in as device `<username>-token`.
pub async fn token(server: &Server, username: &str) -> String {
    login(
        &server.base,
        username,
        &password(username),
        &format!("{username}-token"),
    )
    .await
    .expect("login")
    .token
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Plans a visit through the manager API; returns its id.
pub async fn plan_visit(
    server: &Server,
    token: &str,
    store_id: &str,
    rep_id: &str,
    start: i64,
) -> String {
    let resp = http()
        .post(server.url("/v1/visits"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "store_id": store_id, "rep_id": rep_id, "planned_start": start, "planned_end": start + HOUR,
            "template_id": "tt-standard", "instructions": "Check the cola display"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let v: serde_json::Value = resp.json().await.unwrap();
    v["visit_id"].as_str().unwrap().to_string()
}

/// The server's view of a visit (as the given user), or the HTTP status.
pub async fn server_visit(server: &Server, token: &str, id: &str) -> Result<Visit, u16> {
    let resp = http()
        .get(server.url(&format!("/v1/visits/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    if !resp.status().is_success() {
        return Err(resp.status().as_u16());
    }
    let v: serde_json::Value = resp.json().await.unwrap();
    Ok(serde_json::from_value(v["visit"].clone()).unwrap())
}

/// The server's `/metrics` text.
pub async fn metrics(server: &Server) -> String {
    http()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `GET path` with a device token; asserts it is answered 200 and returns the JSON.
pub async fn get_json(server: &Server, token: &str, path: &str) -> serde_json::Value {
    let resp = http()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// (visits, changes) on the server.
pub async fn counts(server: &Server) -> (i64, i64) {
    let v: serde_json::Value = http()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        v["visits"].as_i64().unwrap(),
        v["changes"].as_i64().unwrap(),
    )
}

pub fn stores_of(r: &ReferenceData, territory: &str) -> Vec<String> {
    r.stores
        .iter()
        .filter(|s| s.territory_id == territory)
        .map(|s| s.id.clone())
        .collect()
}

/// The `i`-th store of `territory` and its position (where a rep checks in).
pub fn shop(r: &ReferenceData, territory: &str, i: usize) -> (Shop, GeoPoint) {
    let id = &stores_of(r, territory)[i];
    let s = r.stores.iter().find(|s| &s.id == id).unwrap().clone();
    let at = GeoPoint {
        lat: s.lat,
        lng: s.lng,
    };
    (s, at)
}

/// Stops `server`, imports `next` into its database as `admin import` would (with
/// `--allow-removals`), and starts it again on the same port (phones keep their server
/// address).
pub fn import_while_stopped(server: &mut Server, next: ReferenceData) -> Server {
    server.stop();
    {
        let store = SqliteStore::open_dir(&server.data_dir).unwrap();
        store.import_reference(next).unwrap();
    }
    Server::start(&server.data_dir, server.port)
}

pub fn user_id(r: &ReferenceData, username: &str) -> String {
    r.users
        .iter()
        .find(|u| u.username == username)
        .unwrap()
        .id
        .clone()
}

pub fn is_rep(r: &ReferenceData, username: &str) -> bool {
    r.users
        .iter()
        .any(|u| u.username == username && u.role == Role::Rep)
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `fieldsync-server admin backup FILE` of the server data in `data`.
pub fn admin_backup(data: &Path, file: &Path) {
    let out = std::process::Command::new(BIN)
        .args(["admin", "backup"])
        .arg(file)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Puts `backup` in place of the (stopped) server's database in `data`.
pub fn replace_database(data: &Path, backup: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(data.join(format!("fieldsync.db{suffix}")));
    }
    std::fs::copy(backup, data.join("fieldsync.db")).unwrap();
}
