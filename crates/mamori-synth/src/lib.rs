//! Synthetic Japanese personal data for mamori demos, tests and benchmarks.
//!
//! Every value is assembled at random from short lists of common name parts
//! and public place names kept in this crate, so no record describes a real
//! person: demos and load tests can exercise the vault with realistic-looking
//! 個人情報 (including 要配慮個人情報 such as medical history) without ever
//! touching real data. Generation is seeded and deterministic so that tests
//! and benchmark runs are reproducible.

mod data;

use data::{
    BUILDING_KINDS, BUILDING_NAMES, EMAIL_DOMAINS, FAMILY_NAMES, GIVEN_NAMES, MEDICAL_CONDITIONS, MOBILE_PREFIXES,
    PREFECTURES, TOWN_STEMS, TOWN_SUFFIXES,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// One synthetic person.
///
/// All fields are plain strings because they are fed to the vault exactly as
/// an importer would receive them from a customer CSV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// `"S"` plus the zero-padded generation index, so ids are unique and
    /// stable for a given seed and sort in generation order.
    pub subject_id: String,
    /// Family and given name in kanji separated by one ASCII space, which
    /// keeps the split unambiguous for tools that do not know U+3000.
    pub name: String,
    /// Katakana reading of `name`, separated the same way; always the reading
    /// of the kanji actually chosen so kana-based search finds the person.
    pub name_kana: String,
    /// `YYYY-MM-DD`, a valid calendar date giving an age of 18 to 90 in 2026.
    pub birth_date: String,
    /// `NNN-NNNN`; random digits, not checked against the postal database.
    pub postal_code: String,
    /// Prefecture, municipality, a made-up town name, 丁目 and 番地-号, and
    /// sometimes a building with a room number after an ASCII space.
    pub address: String,
    /// Mostly mobile (`090-1234-5678`), otherwise a landline using the area
    /// code of the prefecture in `address`.
    pub phone: String,
    /// ASCII address at a domain reserved for documentation, so mail to it
    /// can never be delivered to anyone.
    pub email: String,
    /// 要配慮個人情報: either `"なし"` (about 40 %) or one condition.
    pub medical_history: String,
}

/// Schema (TOML) of the demo `customers` collection that the generated CSV fills.
pub const CUSTOMERS_SCHEMA_TOML: &str = include_str!("../customers.toml");

/// Deterministic generator: same seed => same sequence of people.
///
/// Uses `StdRng` so that sequences are reproducible across platforms for a
/// given `rand` version; the counter provides unique subject ids.
#[derive(Debug)]
pub struct Generator {
    rng: StdRng,
    index: u64,
}

/// CSV header used by the demo "customers" collection, in this order.
pub const CUSTOMER_CSV_HEADER: [&str; 9] =
    ["subject_id", "name", "name_kana", "birth_date", "postal_code", "address", "phone", "email", "medical_history"];

/// Birth years giving ages 18..=90 in the reference year 2026.
const BIRTH_YEARS: std::ops::RangeInclusive<u32> = (2026 - 90)..=(2026 - 18);

impl Generator {
    /// Creates a generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { rng: StdRng::seed_from_u64(seed), index: 0 }
    }

    /// The next person; the i-th call (0-based) has subject_id format!("S{:08}", i).
    pub fn person(&mut self) -> Person {
        let index = self.index;
        self.index += 1;
        let rng = &mut self.rng;

        let mut subject_id = String::with_capacity(9);
        subject_id.push('S');
        push_padded(&mut subject_id, index, 8);

        let (family, family_kana, family_roman) = pick(rng, FAMILY_NAMES);
        let (given, given_kana, given_roman) = pick(rng, GIVEN_NAMES);
        let name = join_space(family, given);
        let name_kana = join_space(family_kana, given_kana);

        let year = rng.gen_range(BIRTH_YEARS);
        let month = rng.gen_range(1..=12);
        let day = rng.gen_range(1..=days_in_month(year, month));
        let mut birth_date = String::with_capacity(10);
        push_padded(&mut birth_date, u64::from(year), 4);
        birth_date.push('-');
        push_padded(&mut birth_date, u64::from(month), 2);
        birth_date.push('-');
        push_padded(&mut birth_date, u64::from(day), 2);

        let mut postal_code = String::with_capacity(8);
        push_padded(&mut postal_code, rng.gen_range(0..1000), 3);
        postal_code.push('-');
        push_padded(&mut postal_code, rng.gen_range(0..10_000), 4);

        let (prefecture, area_code, municipalities) = pick(rng, PREFECTURES);
        let municipality = pick(rng, municipalities);
        let address = address(rng, prefecture, municipality);
        let phone = phone(rng, area_code);
        let email = email(rng, family_roman, given_roman, year, index);

        // Decided apart from the condition list so the share of "なし" does
        // not drift when conditions are added or removed.
        let medical_history = if rng.gen_bool(0.4) { "なし" } else { pick(rng, MEDICAL_CONDITIONS) };

        Person {
            subject_id,
            name,
            name_kana,
            birth_date,
            postal_code,
            address,
            phone,
            email,
            medical_history: medical_history.to_owned(),
        }
    }
}

impl Iterator for Generator {
    type Item = Person;

    /// Never ends: callers bound the count with `take`.
    fn next(&mut self) -> Option<Person> {
        Some(self.person())
    }
}

impl Person {
    /// Values in CUSTOMER_CSV_HEADER order.
    pub fn csv_record(&self) -> [&str; 9] {
        [
            &self.subject_id,
            &self.name,
            &self.name_kana,
            &self.birth_date,
            &self.postal_code,
            &self.address,
            &self.phone,
            &self.email,
            &self.medical_history,
        ]
    }
}

/// Writes a header and `count` people from `seed` as CSV (UTF-8, no BOM) to `out`.
///
/// No BOM because the vault's importer and most Unix tools expect plain UTF-8;
/// Excel users can import explicitly.
pub fn write_customers_csv<W: std::io::Write>(out: W, count: usize, seed: u64) -> csv::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(CUSTOMER_CSV_HEADER)?;
    for person in Generator::new(seed).take(count) {
        writer.write_record(person.csv_record())?;
    }
    // Surface write errors here instead of losing them in `Drop`.
    writer.flush()?;
    Ok(())
}

/// Uniform choice; the tables are non-empty constants, so `choose` cannot fail.
fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    *items.choose(rng).expect("non-empty table")
}

fn join_space(first: &str, second: &str) -> String {
    let mut s = String::with_capacity(first.len() + 1 + second.len());
    s.push_str(first);
    s.push(' ');
    s.push_str(second);
    s
}

/// Appends `value` in decimal, left-padded with zeros to at least `width`.
/// Hand-rolled because `format!` machinery dominates when generating
/// millions of short numeric fields.
fn push_padded(out: &mut String, mut value: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (value % 10) as u8;
        len += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for _ in len..width {
        out.push('0');
    }
    for &d in digits[..len].iter().rev() {
        out.push(char::from(d));
    }
}

fn is_leap_year(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn address(rng: &mut StdRng, prefecture: &str, municipality: &str) -> String {
    let stem = pick(rng, TOWN_STEMS);
    let suffix = pick(rng, TOWN_SUFFIXES);
    let mut s = String::with_capacity(128);
    s.push_str(prefecture);
    s.push_str(municipality);
    s.push_str(stem);
    s.push_str(suffix);
    push_padded(&mut s, rng.gen_range(1..=5), 1);
    s.push_str("丁目");
    push_padded(&mut s, rng.gen_range(1..=30), 1);
    s.push('-');
    push_padded(&mut s, rng.gen_range(1..=20), 1);
    // Roughly the share of people living in apartment buildings.
    if rng.gen_bool(0.4) {
        s.push(' ');
        s.push_str(pick(rng, BUILDING_KINDS));
        s.push_str(pick(rng, BUILDING_NAMES));
        push_padded(&mut s, rng.gen_range(1..=9), 1);
        push_padded(&mut s, rng.gen_range(1..=12), 2);
    }
    s
}

/// Japanese numbers have ten digits; a landline's area code takes 2–4 of the
/// six digits before the final four, the exchange the rest.
fn phone(rng: &mut StdRng, area_code: &str) -> String {
    let mut s = String::with_capacity(13);
    let exchange_digits = if rng.gen_bool(0.85) {
        s.push_str(pick(rng, MOBILE_PREFIXES));
        4
    } else {
        s.push_str(area_code);
        6 - area_code.len()
    };
    s.push('-');
    let exchange_max = 10u64.pow(exchange_digits as u32);
    push_padded(&mut s, rng.gen_range(0..exchange_max), exchange_digits);
    s.push('-');
    push_padded(&mut s, rng.gen_range(0..10_000), 4);
    s
}

/// Romanised local part with digits, as people commonly choose, then `.` and the person's
/// index: e-mail is a unique field in the demo schema, so addresses must never collide.
fn email(rng: &mut StdRng, family: &str, given: &str, birth_year: u32, index: u64) -> String {
    let domain = pick(rng, EMAIL_DOMAINS);
    let mut s = String::with_capacity(family.len() + given.len() + domain.len() + 8);
    match rng.gen_range(0..4) {
        0 => {
            s.push_str(given);
            s.push('.');
            s.push_str(family);
            push_padded(&mut s, rng.gen_range(1..1000), 1);
        }
        1 => {
            s.push_str(family);
            s.push('_');
            s.push_str(given);
            push_padded(&mut s, u64::from(birth_year % 100), 2);
        }
        2 => {
            s.push_str(&given[..1]);
            s.push('.');
            s.push_str(family);
            push_padded(&mut s, rng.gen_range(1..10_000), 1);
        }
        _ => {
            s.push_str(family);
            push_padded(&mut s, u64::from(birth_year), 4);
        }
    }
    s.push('.');
    push_padded(&mut s, index, 1);
    s.push('@');
    s.push_str(domain);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people(seed: u64, n: usize) -> Vec<Person> {
        Generator::new(seed).take(n).collect()
    }

    fn all_digits(s: &str, len: usize) -> bool {
        s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
    }

    fn valid_date(s: &str) -> bool {
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() != 3 || !all_digits(parts[0], 4) || !all_digits(parts[1], 2) || !all_digits(parts[2], 2) {
            return false;
        }
        let year: u32 = parts[0].parse().unwrap();
        let month: u32 = parts[1].parse().unwrap();
        let day: u32 = parts[2].parse().unwrap();
        let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let max_day = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return false,
        };
        (2026 - 90..=2026 - 18).contains(&year) && (1..=max_day).contains(&day)
    }

    fn valid_phone(s: &str) -> bool {
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() != 3 || !parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
            return false;
        }
        let mobile = matches!(parts[0], "090" | "080" | "070") && parts[1].len() == 4 && parts[2].len() == 4;
        let landline = parts[0].starts_with('0')
            && !matches!(parts[0], "090" | "080" | "070")
            && (2..=4).contains(&parts[0].len())
            && parts[0].len() + parts[1].len() == 6
            && parts[2].len() == 4;
        mobile || landline
    }

    #[test]
    fn same_seed_same_people_different_seed_differs() {
        assert_eq!(people(7, 100), people(7, 100));
        assert_ne!(people(7, 100), people(8, 100));
    }

    #[test]
    fn subject_ids_are_sequential_and_unique() {
        let ids: Vec<String> = people(1, 1000).into_iter().map(|p| p.subject_id).collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(*id, format!("S{i:08}"));
        }
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn ten_thousand_people_have_well_formed_fields() {
        let mut none_count = 0;
        let mut mobile_count = 0;
        for p in Generator::new(42).take(10_000) {
            assert!(valid_date(&p.birth_date), "birth_date {}", p.birth_date);
            assert!(valid_phone(&p.phone), "phone {}", p.phone);
            if p.phone.starts_with("090") || p.phone.starts_with("080") || p.phone.starts_with("070") {
                mobile_count += 1;
            }

            assert!(p.email.is_ascii(), "email {}", p.email);
            let (local, domain) = p.email.split_once('@').expect("email has @");
            assert!(EMAIL_DOMAINS.contains(&domain), "email {}", p.email);
            assert!(!local.is_empty() && local.bytes().any(|b| b.is_ascii_digit()));
            assert!(
                local.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_'),
                "email {}",
                p.email
            );

            let (first, last) = p.postal_code.split_once('-').expect("postal has -");
            assert!(all_digits(first, 3) && all_digits(last, 4), "postal {}", p.postal_code);

            assert_eq!(p.name.matches(' ').count(), 1, "name {}", p.name);
            assert!(!p.name.starts_with(' ') && !p.name.ends_with(' '));
            assert_eq!(p.name_kana.matches(' ').count(), 1, "kana {}", p.name_kana);
            assert!(
                p.name_kana.chars().all(|c| c == ' ' || c == 'ー' || ('ァ'..='ヶ').contains(&c)),
                "kana {}",
                p.name_kana
            );

            assert!(PREFECTURES.iter().any(|(pref, _, _)| p.address.starts_with(pref)), "address {}", p.address);
            assert!(p.address.contains("丁目"), "address {}", p.address);

            if p.medical_history == "なし" {
                none_count += 1;
            } else {
                assert!(MEDICAL_CONDITIONS.contains(&p.medical_history.as_str()));
            }
        }
        assert!((3_500..=4_500).contains(&none_count), "なし: {none_count}");
        assert!(mobile_count > 7_000, "mobile: {mobile_count}");
    }

    #[test]
    fn name_and_reading_come_from_the_same_table_row() {
        for p in Generator::new(3).take(1000) {
            let (family, given) = p.name.split_once(' ').unwrap();
            let (family_kana, given_kana) = p.name_kana.split_once(' ').unwrap();
            assert!(FAMILY_NAMES.iter().any(|r| r.0 == family && r.1 == family_kana));
            assert!(GIVEN_NAMES.iter().any(|r| r.0 == given && r.1 == given_kana));
        }
    }

    #[test]
    fn tables_meet_minimum_sizes() {
        assert!(FAMILY_NAMES.len() >= 80);
        assert!(GIVEN_NAMES.len() >= 80);
        assert_eq!(PREFECTURES.len(), 47);
        assert!(PREFECTURES.iter().all(|(_, _, m)| (2..=4).contains(&m.len())));
        assert!(TOWN_STEMS.len() + TOWN_SUFFIXES.len() >= 20);
        assert!(FAMILY_NAMES.iter().chain(GIVEN_NAMES).all(|r| r.2.is_ascii() && !r.2.is_empty()));
    }

    #[test]
    fn csv_round_trips() {
        let mut buf = Vec::new();
        write_customers_csv(&mut buf, 250, 9).unwrap();
        assert!(!buf.starts_with(&[0xEF, 0xBB, 0xBF]), "no BOM");

        let mut reader = csv::Reader::from_reader(buf.as_slice());
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(header, CUSTOMER_CSV_HEADER);

        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 250);
        for (record, person) in records.iter().zip(people(9, 250)) {
            assert_eq!(record.iter().collect::<Vec<_>>(), person.csv_record());
        }
    }
}
