//! Tidy: every Rust file opens with a `//!` comment saying what it is for, no line is longer
//! than 100 characters, and no debugging macro is left behind.

use std::path::{Path, PathBuf};

const LINE_LENGTH_MAX: usize = 100;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn sources_are_tidy() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["crates", "tests", "benches", "loadtest", "fuzz"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 10,
        "found only {} Rust files under {}",
        files.len(),
        root.display()
    );
    // Built from pieces so this file does not trip its own check.
    let debug_macro = ["db", "g!("].concat();
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable source");
        let relative = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        if !text.starts_with("//!") {
            problems.push(format!("{relative}: does not open with a `//!` comment"));
        }
        for (number, line) in text.lines().enumerate() {
            let length = line.chars().count();
            if length > LINE_LENGTH_MAX {
                problems.push(format!("{relative}:{}: {length} characters", number + 1));
            }
            if line.contains(&debug_macro) {
                problems.push(format!("{relative}:{}: leftover debug macro", number + 1));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "untidy sources:\n{}",
        problems.join("\n")
    );
}
