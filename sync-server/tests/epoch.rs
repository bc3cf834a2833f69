//! A backup file restored twice must not reuse its epoch: `admin new-epoch` gives the second
//! restore a fresh one, so devices reconcile instead of trusting their cursors.

use fieldsync_server::{SqliteStore, Store};
use std::process::Command;

#[test]
fn new_epoch_separates_a_second_restore_of_the_same_backup() {
    let dir = tempfile::tempdir().unwrap();
    let live = SqliteStore::open(&dir.path().join("live.db")).unwrap();
    let original = live.epoch().unwrap();
    let backup = dir.path().join("backup.db");
    live.backup(&backup).unwrap();

    // Two restores of the same file carry the same epoch...
    std::fs::create_dir(dir.path().join("first")).unwrap();
    std::fs::create_dir(dir.path().join("second")).unwrap();
    std::fs::copy(&backup, dir.path().join("first/fieldsync.db")).unwrap();
    std::fs::copy(&backup, dir.path().join("second/fieldsync.db")).unwrap();
    let first = SqliteStore::open_dir(&dir.path().join("first"))
        .unwrap()
        .epoch()
        .unwrap();
    let second_before = SqliteStore::open_dir(&dir.path().join("second"))
        .unwrap()
        .epoch()
        .unwrap();
    assert_ne!(first, original);
    assert_eq!(first, second_before);

    // ...until the operator runs `admin new-epoch` on the second one.
    let out = Command::new(env!("CARGO_BIN_EXE_fieldsync-server"))
        .args(["admin", "--data-dir"])
        .arg(dir.path().join("second"))
        .arg("new-epoch")
        .env_remove("FIELDSYNC_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let second = SqliteStore::open_dir(&dir.path().join("second"))
        .unwrap()
        .epoch()
        .unwrap();
    assert!(printed.contains(&second), "{printed}");
    assert_ne!(second, first);
    assert_ne!(second, original);
}
