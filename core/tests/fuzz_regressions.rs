//! Inputs kept from fuzzing (`fuzz/`, `scripts/fuzz.sh`): every file of
//! `fixtures/fuzz/<target>/` and of the fuzzer's seed corpus `fuzz/corpus/<target>/` goes
//! through the same checks as fuzz target `<target>` and must come out without a panic.
//! Besides findings, the fixture directories hold hostile inputs written by hand (deep nesting,
//! alias expansion, NUL characters, extreme numbers).
//!
//! This replay is what CI runs of the fuzzing: building the instrumented targets takes about
//! 15 minutes on 2 cores, so the live fuzzer (`scripts/fuzz.sh`) runs outside CI.
//!
//! Findings fixed so far: `ref_*` (input_schema `$ref` cycles that overflowed the stack at task
//! creation, now refused at registration) and `deep_*` (templates nested past serde_json's
//! read limit, now refused at the 64-level limit).

use std::fs;
use std::path::{Path, PathBuf};

/// The checks of the fuzz targets, shared with `fuzz/fuzz_targets/`.
#[path = "../../fuzz/src/lib.rs"]
mod fuzz_checks;

/// The files of one input directory, relative to the core crate.
fn inputs(relative: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative).join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

/// Runs `check` on every kept input and seed of `target`, then reports every input that
/// panicked.
fn replay(target: &str, check: fn(&[u8])) {
    let mut panicked = Vec::new();
    let kept = inputs("tests/fixtures/fuzz", target);
    let seeds = inputs("../fuzz/corpus", target);
    for path in kept.into_iter().chain(seeds) {
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panicked.push(path.display().to_string());
        }
    }
    assert!(panicked.is_empty(), "inputs that panicked: {panicked:#?}");
}

#[test]
fn template_yaml_inputs() {
    replay("template_yaml", fuzz_checks::template_yaml);
}

#[test]
fn outcome_json_inputs() {
    replay("outcome_json", fuzz_checks::outcome_json);
}
