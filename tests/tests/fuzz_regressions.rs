//! Replays every input kept under `tests/fuzz/regressions/<target>/` (crashes found by
//! `scripts/fuzz.sh`, and seeds worth keeping) through the same code the fuzz targets run,
//! so a fixed crash stays fixed without cargo-fuzz or a nightly toolchain.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod support;

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

fn replay(target: &str, run: fn(&[u8])) {
    let cases = inputs(target);
    for (name, data) in &cases {
        eprintln!("replaying {name}");
        run(data);
    }
    eprintln!("{target}: {} inputs replayed", cases.len());
}

#[test]
fn sync_ingest_regressions() {
    replay("sync_ingest", support::sync_ingest);
}

#[test]
fn reference_import_regressions() {
    replay("reference_import", support::reference_import);
}

#[test]
fn apply_remote_regressions() {
    replay("apply_remote", support::apply_remote);
}
