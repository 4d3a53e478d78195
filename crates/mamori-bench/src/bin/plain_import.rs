//! The import baseline on its own, so that its time and peak memory can be measured the same
//! way as `mamori import` (`/usr/bin/time -v`). Prints one JSON line.
//!
//! Usage: `plain_import IN.csv OUT.db`

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [csv, db] = args.as_slice() else {
        anyhow::bail!("usage: plain_import IN.csv OUT.db");
    };
    let load = mamori_bench::plain_import(csv.as_ref(), db.as_ref())?;
    println!(
        r#"{{"rows":{},"seconds":{:.3},"rows_per_second":{:.0}}}"#,
        load.rows,
        load.seconds,
        load.rows_per_second()
    );
    Ok(())
}
