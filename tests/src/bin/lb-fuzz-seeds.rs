//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/TARGET/seed-*`)
//! from lbd's own encoders and the test suite's frame builders:
//! `cargo run -p lb-tests --bin lb-fuzz-seeds [-- DIR]` (default: the
//! repository's `fuzz/corpus`). Inputs the fuzzer found are left alone.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os().nth(1).map_or_else(
        || {
            let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
            tests.parent().unwrap_or(tests).join("fuzz/corpus")
        },
        PathBuf::from,
    );
    for (target, name, bytes) in lb_tests::fuzz::seeds() {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir)
            .with_context(|| format!("creating {}", target_dir.display()))?;
        let path = target_dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
