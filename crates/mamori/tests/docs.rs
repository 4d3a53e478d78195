//! Documentation that must stay true: every crate ARCHITECTURE.md names exists (and every
//! crate exists in ARCHITECTURE.md), and every measure id cited in the code is a real one.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn architecture_names_exactly_the_crates_that_exist() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let named: Vec<&str> =
        doc.lines().filter_map(|l| l.strip_prefix("### `crates/")).map(|l| l.trim_end_matches('`')).collect();
    let mut existing: Vec<String> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| root().join("crates").join(n).join("Cargo.toml").exists())
        .collect();
    existing.sort();
    let mut named_sorted: Vec<String> = named.iter().map(|s| s.to_string()).collect();
    named_sorted.sort();
    assert_eq!(named_sorted, existing, "ARCHITECTURE.md code map and crates/ disagree");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Measure ids look like `002-T-3-c`, `001-20-tech-4-1`, `004-V-1-33-a`, `000-8-access-1`.
fn cited_ids(text: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        let mut parts = word.split('-');
        let seed = parts.next().unwrap_or("");
        let second = parts.next().unwrap_or("");
        let is_seed = matches!(seed, "000" | "001" | "002" | "003" | "004");
        let looks_like_measure = matches!(second, "8" | "20" | "T" | "S" | "I" | "V" | "VII" | "case" | "gen");
        if is_seed && looks_like_measure && word.matches('-').count() >= 2 {
            ids.push(word.trim_end_matches('-').to_owned());
        }
    }
    ids
}

#[test]
fn cited_measure_ids_exist() {
    let measures = root().join("../shared/measures");
    if !measures.exists() {
        eprintln!("SKIPPED: cited_measure_ids_exist — ../shared/measures is not beside the repository");
        return;
    }
    let mut known = std::collections::HashSet::new();
    for entry in std::fs::read_dir(&measures).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                known.insert(v["id"].as_str().unwrap().to_owned());
            }
        }
    }
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    let mut cited = 0;
    for file in files {
        for id in cited_ids(&std::fs::read_to_string(&file).unwrap()) {
            assert!(known.contains(&id), "{} cites unknown measure {id}", file.display());
            cited += 1;
        }
    }
    assert!(cited >= 20, "expected the code to cite measures, found {cited}");
}

/// The `unaudited-benchmark` feature of `mamori-vault` (BENCHMARKS.md, session 7) comes only
/// from an explicit `--features` on the command line: no manifest may enable it, or feature
/// unification could make a normal build unaudited. This test binary itself is audited.
#[test]
fn no_manifest_enables_the_unaudited_benchmark_feature() {
    assert!(
        !std::hint::black_box(mamori_vault::UNAUDITED_BENCHMARK),
        "these tests were built with mamori-vault/unaudited-benchmark"
    );
    let mut manifests = vec![root().join("Cargo.toml")];
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        if manifest.exists() {
            manifests.push(manifest);
        }
    }
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest).unwrap();
        let mentions: Vec<&str> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| l.contains("unaudited"))
            .collect();
        let allowed: &[&str] =
            if manifest.ends_with("crates/mamori-vault/Cargo.toml") { &["unaudited-benchmark = []"] } else { &[] };
        assert_eq!(mentions, allowed, "{} must not enable the unaudited benchmark feature", manifest.display());
    }
}
