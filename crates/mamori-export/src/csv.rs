//! CSV for spreadsheet users: UTF-8 with BOM, RFC 4180 quoting, formula injection defused.

use csv_core::{QuoteStyle, Terminator, WriteResult, WriterBuilder};
use zeroize::Zeroizing;

use crate::error::{ExportError, Result};
use crate::table::Table;

/// The UTF-8 byte order mark. Excel reads a CSV file without it in the system code page
/// (Shift_JIS/CP932 on Japanese Windows), which garbles Japanese text.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Characters that make a spreadsheet treat a cell as a formula (or, for TAB and CR, that
/// spreadsheet importers strip in front of one). The full-width forms are included for
/// Japanese input methods.
const FORMULA_TRIGGERS: &[char] = &['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];

/// Whether [`write_csv`] prefixes this cell with an apostrophe.
pub fn needs_formula_guard(cell: &str) -> bool {
    cell.starts_with(FORMULA_TRIGGERS)
}

/// Writes `table` as CSV: the header row, then the rows.
///
/// - **Encoding:** UTF-8 with a byte order mark ([`UTF8_BOM`]), so Excel on Japanese Windows
///   opens it without mojibake.
/// - **Quoting:** RFC 4180 — fields are separated by commas, records end with CRLF, and a
///   field that contains a comma, a double quote, CR or LF is enclosed in double quotes with
///   its quotes doubled (the `csv` crate's engine, `csv-core`, does it).
/// - **Formula injection (CSV injection):** a cell (header or data) that begins with `=`,
///   `+`, `-`, `@`, TAB or CR, or their full-width forms `＝＋－＠`, gets a leading
///   apostrophe `'`, so a spreadsheet shows it as text instead of evaluating it
///   (`=HYPERLINK(...)`, `=cmd|...`). The value read back then starts with `'`; negative
///   numbers and `+81…` phone numbers are affected too — that is the price of the defence.
///
/// No intermediate buffer holds the content: the output is allocated once with room for the
/// worst case and written in place, so no freed re-allocation is left with plaintext in it.
/// (A record of a single empty field is written as `""`, so it is not an empty line.)
///
/// # Errors
/// [`ExportError::Csv`] only on an internal inconsistency (it should not happen).
pub fn write_csv(table: &Table) -> Result<Zeroizing<Vec<u8>>> {
    let mut bound = UTF8_BOM.len();
    let mut widest = 0;
    for row in std::iter::once(table.headers()).chain(table.rows().iter().map(Vec::as_slice)) {
        for cell in row {
            // apostrophe + every byte doubled (quotes) + the enclosing quotes + a delimiter
            bound = bound.saturating_add(cell.len().saturating_mul(2).saturating_add(4));
            widest = widest.max(cell.len());
        }
        bound = bound.saturating_add(2);
    }

    let mut out = Zeroizing::new(vec![0u8; bound]);
    out[..UTF8_BOM.len()].copy_from_slice(UTF8_BOM);
    let mut pos = UTF8_BOM.len();
    let mut scratch = Zeroizing::new(Vec::with_capacity(widest + 1));
    let mut writer = WriterBuilder::new().terminator(Terminator::CRLF).quote_style(QuoteStyle::Necessary).build();

    for row in std::iter::once(table.headers()).chain(table.rows().iter().map(Vec::as_slice)) {
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                let (res, n) = writer.delimiter(&mut out[pos..]);
                check(res)?;
                pos += n;
            }
            let input: &[u8] = if needs_formula_guard(cell) {
                scratch.clear();
                scratch.push(b'\'');
                scratch.extend_from_slice(cell.as_bytes());
                &scratch
            } else {
                cell.as_bytes()
            };
            let (res, nin, nout) = writer.field(input, &mut out[pos..]);
            check(res)?;
            if nin != input.len() {
                return Err(ExportError::Csv);
            }
            pos += nout;
        }
        let (res, n) = writer.terminator(&mut out[pos..]);
        check(res)?;
        pos += n;
    }
    let (res, n) = writer.finish(&mut out[pos..]);
    check(res)?;
    pos += n;
    out.truncate(pos);
    Ok(out)
}

fn check(res: WriteResult) -> Result<()> {
    match res {
        WriteResult::InputEmpty => Ok(()),
        WriteResult::OutputFull => Err(ExportError::Csv),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::table::test_table as table;

    fn read_back(bytes: &[u8]) -> Vec<Vec<String>> {
        assert!(bytes.starts_with(UTF8_BOM));
        let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(&bytes[UTF8_BOM.len()..]);
        r.records().map(|rec| rec.unwrap().iter().map(str::to_owned).collect()).collect()
    }

    #[test]
    fn round_trip_with_japanese_text_and_rfc4180_quoting() {
        let t = table(
            &["氏名", "住所", "備考"],
            &[
                &["山田 太郎", "東京都千代田区1-1", "「引用」\"二重\"、カンマ,あり"],
                &["鈴木花子", "大阪府\r\n改行あり", ""],
            ],
        );
        let bytes = write_csv(&t).unwrap();
        let text = std::str::from_utf8(&bytes[3..]).unwrap();
        assert!(text.starts_with("氏名,住所,備考\r\n"), "{text}");
        assert!(text.contains("\"「引用」\"\"二重\"\"、カンマ,あり\""), "{text}");
        let rows = read_back(&bytes);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1][2], "「引用」\"二重\"、カンマ,あり");
        assert_eq!(rows[2][1], "大阪府\r\n改行あり");
        assert_eq!(rows[2][2], "");
    }

    #[test]
    fn csv_formula_injection_is_neutralised() {
        let payloads = [
            "=HYPERLINK(\"http://x.invalid\",\"click\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
            "＝1+1",
            "＠SUM(A1)",
        ];
        let rows: Vec<[&str; 1]> = payloads.iter().map(|p| [*p]).collect();
        let rows: Vec<&[&str]> = rows.iter().map(|r| &r[..]).collect();
        let t = table(&["=header"], &rows);
        let back = read_back(&write_csv(&t).unwrap());
        assert_eq!(back[0][0], "'=header");
        for (p, row) in payloads.iter().zip(&back[1..]) {
            assert_eq!(row[0], format!("'{p}"));
        }
    }

    #[test]
    fn harmless_cells_are_not_changed() {
        let t = table(&["a"], &[&["a=b"], &["090-1234"], &["'quoted"], &[" =space"]]);
        let back = read_back(&write_csv(&t).unwrap());
        assert_eq!(back[1..], [["a=b"], ["090-1234"], ["'quoted"], [" =space"]]);
    }

    #[test]
    fn single_empty_column_is_not_an_empty_line() {
        let t = table(&["a"], &[&[""], &["x"]]);
        let back = read_back(&write_csv(&t).unwrap());
        assert_eq!(back, [["a"], [""], ["x"]]);
    }
}
