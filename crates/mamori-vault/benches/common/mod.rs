//! What the vault's criterion benchmarks share: where criterion writes, and the table of
//! ratios against the baselines measured in the same run.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where criterion writes its results: the same rule as criterion's own default.
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // target/<profile>/deps/<bench binary>
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// The start of this run, read from the file system (the clock rule of the workspace): a
/// marker file named after the benchmark, written now.
/// criterion writing to `dir`, with the short warm-up and measurement every group here uses
/// unless it sets its own.
pub fn criterion(dir: &Path) -> criterion::Criterion {
    criterion::Criterion::default()
        .output_directory(dir)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .configure_from_args()
}

pub fn run_started(dir: &Path, bench: &str) -> Option<SystemTime> {
    let _ = std::fs::create_dir_all(dir);
    let marker = dir.join(format!(".{bench}-bench-run"));
    std::fs::write(&marker, b"").and_then(|_| std::fs::metadata(&marker)?.modified()).ok()
}

/// Median time (ns) of one benchmark, if it was measured after `since`.
pub fn median_ns(dir: &Path, id: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(id).join("new").join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// One row of the ratio table: `group/mamori/input` against `group/baseline/input`, with the
/// goal (a minimum ratio) when there is one.
pub type Pair = (&'static str, &'static str, &'static str, Option<f64>);

/// Prints the ratio table (baseline median time / mamori median time; above 1 means mamori
/// is faster) for the pairs measured in this run.
pub fn print_ratios(dir: &Path, since: SystemTime, pairs: &[Pair]) {
    let mut lines = Vec::new();
    for &(group, input, baseline, goal) in pairs {
        let mamori = median_ns(dir, &format!("{group}/mamori/{input}"), since);
        let base = median_ns(dir, &format!("{group}/{baseline}/{input}"), since);
        let (Some(m), Some(b)) = (mamori, base) else { continue };
        let ratio = b / m;
        let verdict = match goal {
            Some(g) if ratio >= g => format!("≥ {g}×: met"),
            Some(g) => format!("≥ {g}×: not met"),
            None => "-".into(),
        };
        lines.push(format!(
            "| {group} | {input} | {} | {baseline} {} | **{ratio:.3}×** | {verdict} |",
            fmt_ns(m),
            fmt_ns(b)
        ));
    }
    if lines.is_empty() {
        return;
    }
    println!();
    println!("Ratios (baseline median time / mamori median time; throughput ratio, higher is better):");
    println!();
    println!("| group | input | mamori | baseline | ratio | goal |");
    println!("|---|---|---:|---:|---:|---|");
    for l in lines {
        println!("{l}");
    }
}

pub fn fmt_ns(ns: f64) -> String {
    match ns {
        n if n >= 1e9 => format!("{:.3} s", n / 1e9),
        n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.2} µs", n / 1e3),
        n => format!("{n:.1} ns"),
    }
}
