//! Writes the synthetic customers CSV that `mamori import` and the benchmarks load.
//!
//! Usage: `gen_csv ROWS SEED OUT.csv`

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [rows, seed, out] = args.as_slice() else {
        anyhow::bail!("usage: gen_csv ROWS SEED OUT.csv");
    };
    let rows: usize = rows.replace('_', "").parse()?;
    mamori_bench::write_csv(std::path::Path::new(out), rows, seed.parse()?)
}
