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

fn admin(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fieldsync-server"))
        .args(["admin", "--data-dir"])
        .arg(dir)
        .args(args)
        .env_remove("FIELDSYNC_DATABASE_URL")
        .output()
        .unwrap()
}

#[test]
fn admin_restore_checks_the_backup_gives_each_restore_a_new_epoch_and_keeps_the_old_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup.db");
    let original = {
        let live = SqliteStore::open_dir(&data).unwrap();
        live.backup(&backup).unwrap();
        live.epoch().unwrap()
    };

    // Not a backup: refused, the live database untouched.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database").unwrap();
    let before = std::fs::read(data.join("fieldsync.db")).unwrap();
    let out = admin(&data, &["restore", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a usable fieldsync backup"), "{err}");
    assert_eq!(std::fs::read(data.join("fieldsync.db")).unwrap(), before);

    // The same backup restored twice: two new epochs, the replaced database kept aside.
    let mut epochs = vec![original.clone()];
    for _ in 0..2 {
        let out = admin(&data, &["restore", backup.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let epoch = SqliteStore::open_dir(&data).unwrap().epoch().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains(&epoch));
        assert!(!epochs.contains(&epoch), "{epoch} reused");
        epochs.push(epoch);
        std::thread::sleep(std::time::Duration::from_millis(1100)); // distinct aside names
    }
    let aside = std::fs::read_dir(&data)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.contains("before-restore") && !name.ends_with("-wal") && !name.ends_with("-shm")
        })
        .count();
    assert_eq!(aside, 2, "each replaced database is moved aside");

    // Not while a server holds the data directory.
    let _held = fieldsync_server::admin::lock_data_dir(&data).unwrap();
    let out = admin(&data, &["restore", backup.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop it first"), "{err}");
}
