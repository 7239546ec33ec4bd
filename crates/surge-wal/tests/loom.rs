//! Runs the loom model of the group-commit handoff (`src/handoff.rs`) as part of the
//! ordinary `cargo test`: loom needs the whole crate built with `--cfg loom`, so this test
//! starts that build in its own target directory (`target/loom`) and fails with its output
//! if any interleaving breaks the handoff. By hand:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p surge-wal --release --lib loom
//! ```
//!
//! `SURGE_SKIP_LOOM=1` skips it (for quick local runs; CI never sets it).

use std::path::Path;
use std::process::Command;

#[test]
fn loom_model_of_the_group_commit_handoff() {
    if std::env::var_os("SURGE_SKIP_LOOM").is_some() {
        eprintln!("SURGE_SKIP_LOOM is set: the loom model did not run");
        return;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .current_dir(&workspace)
        .args(["test", "-p", "surge-wal", "--release", "--lib", "loom"])
        .env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", workspace.join("target/loom"))
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the loom model failed:\n{stdout}\n{stderr}"
    );
    // The filter must have selected the model, not nothing.
    assert!(
        stdout.contains("test result: ok.") && !stdout.contains("ok. 0 passed"),
        "the loom model did not run:\n{stdout}"
    );
}
