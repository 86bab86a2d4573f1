//! Replays every committed fuzz input (`fuzz/corpus/TARGET/*`: the seeds
//! and every crash found and fixed) through the same checks the fuzz
//! targets run, so they stay regression tests in the ordinary suite,
//! without cargo-fuzz or nightly. The `packet` target loads the XDP
//! program: root, as for the rest of the suite.

use std::path::PathBuf;

use lb_tests::fuzz::{seeds, TARGETS};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, check) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("known target");
    let files = corpus(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    for (path, bytes) in files {
        eprintln!("{}", path.display());
        check(&bytes);
    }
}

#[test]
fn vrrp_advert_corpus() {
    replay("vrrp_advert");
}

#[test]
fn api_request_corpus() {
    replay("api_request");
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn sync_frame_corpus() {
    replay("sync_frame");
}

#[test]
fn packet_corpus() {
    replay("packet");
}

#[test]
fn seeds_are_committed_as_generated() {
    for (target, name, bytes) in seeds() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target)
            .join(&name);
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -p lb-tests --bin lb-fuzz-seeds`",
                path.display()
            )
        });
        assert!(
            committed == bytes,
            "{} differs from what lb-fuzz-seeds writes now; rerun it",
            path.display()
        );
    }
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    for (target, _) in TARGETS {
        assert!(
            dir.join(format!("{target}.rs")).is_file(),
            "fuzz/fuzz_targets/{target}.rs is missing"
        );
    }
}
