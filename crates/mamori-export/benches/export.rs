//! Take-out file formats on a 100,000-row × 6-column table of made-up Japanese-looking
//! records (no real data): plaintext XLSX, XLSX + agile encryption, CSV, CSV + age.
//!
//! `cargo bench -p mamori-export --bench export`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mamori_export::{SecretPassword, Table, age_encrypt, encrypt_ooxml, write_csv, write_xlsx};

const ROWS: usize = 100_000;

const FAMILY: &[(&str, &str)] = &[
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
];
const GIVEN: &[(&str, &str)] = &[
    ("太郎", "タロウ"),
    ("花子", "ハナコ"),
    ("一郎", "イチロウ"),
    ("美咲", "ミサキ"),
    ("健太", "ケンタ"),
    ("陽菜", "ヒナ"),
    ("翔太", "ショウタ"),
    ("結衣", "ユイ"),
];
const PLACES: &[&str] = &[
    "東京都千代田区丸の内",
    "大阪府大阪市北区梅田",
    "愛知県名古屋市中区栄",
    "北海道札幌市中央区大通西",
    "福岡県福岡市博多区博多駅前",
    "神奈川県横浜市西区みなとみらい",
];
const NOTES: &[&str] = &["", "要連絡", "住所変更あり（2025年）", "郵送不可", "代理人: 同居の家族"];

/// Deterministic made-up records.
fn synthetic_table() -> Table {
    let headers = ["氏名", "フリガナ", "生年月日", "電話番号", "住所", "備考"];
    let mut t = Table::with_capacity(headers.iter().map(|s| (*s).to_owned()).collect(), ROWS).expect("headers");
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        // xorshift64: a fixed pattern generator for test data, not for anything secret.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..ROWS {
        let r = next();
        let (f, fk) = FAMILY[(r % FAMILY.len() as u64) as usize];
        let (g, gk) = GIVEN[((r >> 8) % GIVEN.len() as u64) as usize];
        let place = PLACES[((r >> 16) % PLACES.len() as u64) as usize];
        let note = NOTES[((r >> 24) % NOTES.len() as u64) as usize];
        t.push_row(vec![
            format!("{f} {g}"),
            format!("{fk} {gk}"),
            format!("{}-{:02}-{:02}", 1940 + (r >> 32) % 70, 1 + (r >> 40) % 12, 1 + (r >> 44) % 28),
            format!("0{}0-{:04}-{:04}", 7 + (r >> 48) % 3, i % 10_000, (r >> 20) % 10_000),
            format!("{place}{}-{}-{}", 1 + i % 9, 1 + (r >> 52) % 30, 1 + (r >> 56) % 20),
            note.to_owned(),
        ])
        .expect("row width");
    }
    t
}

fn bench(c: &mut Criterion) {
    let table = synthetic_table();
    let password = SecretPassword::new("bench-password-not-secret");
    let recipient = age::x25519::Identity::generate().to_public().to_string();

    let mut g = c.benchmark_group("export_100k_rows");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(ROWS as u64));

    g.bench_function("xlsx", |b| b.iter(|| write_xlsx(black_box(&table), "データ").expect("xlsx")));
    g.bench_function("xlsx_agile_encrypted", |b| {
        b.iter(|| {
            let x = write_xlsx(black_box(&table), "データ").expect("xlsx");
            encrypt_ooxml(&x, &password).expect("encrypt")
        })
    });
    g.bench_function("csv", |b| b.iter(|| write_csv(black_box(&table)).expect("csv")));
    g.bench_function("csv_age", |b| {
        b.iter(|| {
            let csv = write_csv(black_box(&table)).expect("csv");
            age_encrypt(&csv, &recipient).expect("age")
        })
    });
    g.finish();

    // Sizes, for the record.
    let x = write_xlsx(&table, "データ").expect("xlsx");
    let csv = write_csv(&table).expect("csv");
    eprintln!(
        "sizes: xlsx {} bytes, encrypted xlsx {} bytes, csv {} bytes, csv.age {} bytes",
        x.len(),
        encrypt_ooxml(&x, &password).expect("encrypt").len(),
        csv.len(),
        age_encrypt(&csv, &recipient).expect("age").len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
