//! Replays every input kept under `tests/fuzz/regressions/<target>/` (crashes found by
//! `scripts/fuzz.sh`, and seeds worth keeping) through the same code the fuzz targets run,
//! so a fixed crash stays fixed without cargo-fuzz or a nightly toolchain.
//!
//! Inputs named `oom-*`, `slow-*`, `timeout-*` or `bomb-*` are resource findings: change
//! bytes that made Automerge 0.12 allocate gigabytes or spin (see
//! `fieldsync_core::sync::guard`). Each must now be refused as "not an Automerge change"
//! within a second or two. Should the guard regress, replaying them would take the test
//! machine's memory, so they are replayed in a child process of this test binary whose
//! address space is capped (`ulimit -v`): a regression fails the test instead.

use std::time::{Duration, Instant};

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod support;

/// Set in the capped child process.
const CAPPED: &str = "FIELDSYNC_FUZZ_MEMORY_CAPPED";
/// The child's address-space cap, in KiB. The findings asked for 2 GiB and more at once.
const CAP_KIB: u64 = 1024 * 1024;
/// How long refusing one resource finding may take (debug build, shared machine).
const QUICK: Duration = Duration::from_secs(3);

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn is_resource_finding(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    ["oom-", "slow-", "timeout-", "bomb-"]
        .iter()
        .any(|p| name.starts_with(p))
}

fn capped() -> bool {
    std::env::var_os(CAPPED).is_some()
}

/// Replays the target's inputs: the crash inputs here, the resource findings only in the
/// capped child (`check` asserts each was refused, quickly). Returns how many of each ran.
fn replay(target: &str, run: impl Fn(&[u8]), check: impl Fn(&str, &[u8])) -> (usize, usize) {
    let (mut plain, mut resource) = (0, 0);
    for (name, data) in &inputs(target) {
        if !is_resource_finding(name) {
            eprintln!("replaying {name}");
            run(data);
            plain += 1;
        } else if capped() {
            eprintln!("replaying {name} (memory capped)");
            let start = Instant::now();
            check(name, data);
            assert!(
                start.elapsed() < QUICK,
                "{name} took {:?} to refuse",
                start.elapsed()
            );
            resource += 1;
        }
    }
    eprintln!("{target}: {plain} inputs replayed, {resource} resource findings");
    (plain, resource)
}

#[test]
fn sync_ingest_regressions() {
    let (plain, resource) = replay(
        "sync_ingest",
        |d| {
            support::sync_ingest(d);
        },
        |name, d| {
            // One raw change pushed for the visit: refused, with the guard's reason.
            assert!(d[0] & 1 == 1, "{name}: resource findings are raw changes");
            let outcomes = support::sync_ingest(d);
            assert_eq!(outcomes.len(), 1, "{name}");
            let reason = &outcomes[0]
                .rejection
                .as_ref()
                .unwrap_or_else(|| panic!("{name} was not refused: {outcomes:?}"))
                .reason;
            assert!(
                reason.contains("not an Automerge change"),
                "{name}: {reason}"
            );
            assert!(outcomes[0].acks.is_empty() && outcomes[0].applied == 0);
        },
    );
    assert!(plain >= 3);
    if capped() {
        assert!(resource >= 9, "the sync_ingest findings are gone");
    }
}

#[test]
fn reference_import_regressions() {
    replay("reference_import", support::reference_import, |name, _| {
        panic!("{name}: no resource findings expected for the importer")
    });
}

#[test]
fn apply_remote_regressions() {
    let (plain, resource) = replay(
        "apply_remote",
        |d| {
            let _ = support::apply_remote(d);
        },
        |name, d| {
            let e = support::apply_remote(d).expect_err(name);
            assert!(e.contains("not an Automerge change"), "{name}: {e}");
        },
    );
    assert!(plain >= 3);
    if capped() {
        assert!(resource >= 6, "the apply_remote findings are gone");
    }
}

/// Runs the two tests above again in a child process whose address space is capped, with
/// the resource findings included.
#[cfg(target_os = "linux")]
#[test]
fn resource_findings_are_refused_under_a_memory_cap() {
    if capped() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {CAP_KIB} && exec \"$0\" \"$@\""))
        .arg(&exe)
        .args([
            "--exact",
            "sync_ingest_regressions",
            "apply_remote_regressions",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CAPPED, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "capped replay failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("2 passed"), "{stdout}");
    assert!(stderr.contains("(memory capped)"), "{stderr}");
}
