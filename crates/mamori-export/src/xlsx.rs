//! XLSX (Office Open XML spreadsheet) through rust_xlsxwriter.

use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook, XlsxError};
use zeroize::Zeroizing;

use crate::error::{ExportError, Result};
use crate::table::Table;

/// Data rows a worksheet holds below the header row (Excel: 1,048,576 rows in all).
pub const MAX_XLSX_ROWS: usize = 1_048_575;
/// Columns of a worksheet (Excel: XFD).
pub const MAX_XLSX_COLUMNS: usize = 16_384;
/// Characters in one cell (Excel).
pub const MAX_XLSX_CELL_CHARS: usize = 32_767;

/// Rows looked at to size the columns (enough to be representative, cheap for big tables).
const WIDTH_SAMPLE_ROWS: usize = 1_000;
const MIN_WIDTH: usize = 6;
const MAX_WIDTH: usize = 50;

/// Writes `table` as a one-sheet XLSX workbook named `sheet_name`, in memory.
///
/// - Every cell is written as a **string** (shared string), never as a number or formula,
///   whatever it looks like: `=1+1` stays the text `=1+1`, `007` keeps its zeros. So no
///   apostrophe guard is needed here, unlike [`crate::write_csv`].
/// - The header row is bold and frozen (it stays visible while scrolling), with an
///   autofilter over the table.
/// - Column widths follow the longest value among the header and the first 1,000 rows,
///   counting East Asian wide characters as two, between 6 and 50 characters.
/// - The document's creation time is fixed to 1980-01-01T00:00:00Z (the zip entries' epoch):
///   this crate never reads the clock, the export ledger records when an export was made,
///   and the same table gives the same bytes.
/// - The workbook is built in memory; rust_xlsxwriter's constant-memory mode is not used
///   because it spills cell contents to temporary files. rust_xlsxwriter's own copies of the
///   strings are not zeroized (its internals are out of our reach); the returned buffer is.
///
/// # Errors
/// [`ExportError::SheetName`] for a name Excel refuses; [`ExportError::XlsxLimit`] when the
/// table exceeds Excel's row, column or cell-length limits; [`ExportError::Xlsx`] otherwise.
pub fn write_xlsx(table: &Table, sheet_name: &str) -> Result<Zeroizing<Vec<u8>>> {
    if table.row_count() > MAX_XLSX_ROWS {
        return Err(ExportError::XlsxLimit("more than 1,048,575 rows"));
    }
    if table.column_count() > MAX_XLSX_COLUMNS {
        return Err(ExportError::XlsxLimit("more than 16,384 columns"));
    }

    let mut workbook = Workbook::new();
    let epoch = ExcelDateTime::from_ymd(1980, 1, 1).map_err(|_| ExportError::Xlsx)?;
    workbook.set_properties(&DocProperties::new().set_creation_datetime(&epoch));

    let sheet = workbook.add_worksheet();
    sheet.set_name(sheet_name).map_err(|_| ExportError::SheetName)?;

    let bold = Format::new().set_bold();
    for (col, header) in table.headers().iter().enumerate() {
        let col = col_num(col)?;
        check_cell(header)?;
        sheet.write_string_with_format(0, col, header.as_str(), &bold).map_err(map_err)?;
    }
    for (r, row) in table.rows().iter().enumerate() {
        let r = row_num(r + 1)?;
        for (col, cell) in row.iter().enumerate() {
            if cell.is_empty() {
                continue;
            }
            check_cell(cell)?;
            sheet.write_string(r, col_num(col)?, cell.as_str()).map_err(map_err)?;
        }
    }

    for col in 0..table.column_count() {
        let width = std::iter::once(&table.headers()[col])
            .chain(table.rows().iter().take(WIDTH_SAMPLE_ROWS).map(|r| &r[col]))
            .map(|s| display_width(s))
            .max()
            .unwrap_or(0)
            .clamp(MIN_WIDTH, MAX_WIDTH);
        // usize → f64: width is at most MAX_WIDTH + 2, exact.
        let width = u32::try_from(width + 2).map_err(|_| ExportError::Xlsx)?;
        sheet.set_column_width(col_num(col)?, f64::from(width)).map_err(map_err)?;
    }
    sheet.set_freeze_panes(1, 0).map_err(map_err)?;
    let last_row = row_num(table.row_count())?;
    let last_col = col_num(table.column_count() - 1)?;
    sheet.autofilter(0, 0, last_row, last_col).map_err(map_err)?;

    let bytes = workbook.save_to_buffer().map_err(map_err)?;
    Ok(Zeroizing::new(bytes))
}

fn check_cell(cell: &str) -> Result<()> {
    // Bytes bound the characters from above: only count when it could matter.
    if cell.len() > MAX_XLSX_CELL_CHARS && cell.chars().count() > MAX_XLSX_CELL_CHARS {
        return Err(ExportError::XlsxLimit("a cell longer than 32,767 characters"));
    }
    Ok(())
}

fn row_num(r: usize) -> Result<u32> {
    u32::try_from(r).map_err(|_| ExportError::XlsxLimit("too many rows"))
}

fn col_num(c: usize) -> Result<u16> {
    u16::try_from(c).map_err(|_| ExportError::XlsxLimit("too many columns"))
}

/// Never passes rust_xlsxwriter's message on: some variants quote the sheet name or a value.
fn map_err(e: XlsxError) -> ExportError {
    match e {
        XlsxError::RowColumnLimitError => ExportError::XlsxLimit("row or column out of range"),
        XlsxError::MaxStringLengthExceeded => ExportError::XlsxLimit("a cell longer than 32,767 characters"),
        _ => ExportError::Xlsx,
    }
}

/// Approximate display width: East Asian wide and full-width characters count two.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let c = u32::from(c);
            let wide = matches!(c,
                0x1100..=0x115F        // Hangul Jamo
                | 0x2E80..=0x303E      // CJK radicals, punctuation
                | 0x3041..=0x33FF      // kana, CJK compatibility
                | 0x3400..=0x4DBF      // CJK extension A
                | 0x4E00..=0x9FFF      // CJK unified ideographs
                | 0xA000..=0xA4CF
                | 0xAC00..=0xD7A3      // Hangul syllables
                | 0xF900..=0xFAFF      // CJK compatibility ideographs
                | 0xFE30..=0xFE4F
                | 0xFF00..=0xFF60      // full-width forms
                | 0xFFE0..=0xFFE6
                | 0x20000..=0x3FFFD);
            if wide { 2 } else { 1 }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;

    use crate::table::test_table as table;

    fn part(xlsx: &[u8], name: &str) -> String {
        let mut zip = zip::ZipArchive::new(Cursor::new(xlsx)).unwrap();
        let mut f = zip.by_name(name).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn round_trip_keeps_japanese_text_as_shared_strings() {
        let t = table(
            &["氏名", "フリガナ", "住所"],
            &[&["山田 太郎", "ヤマダ タロウ", "東京都千代田区千代田1-1"], &["鈴木花子", "", "大阪府"]],
        );
        let x = write_xlsx(&t, "顧客一覧").unwrap();
        assert!(x.starts_with(b"PK"));
        let strings = part(&x, "xl/sharedStrings.xml");
        for v in ["氏名", "山田 太郎", "ヤマダ タロウ", "東京都千代田区千代田1-1", "鈴木花子"]
        {
            assert!(strings.contains(v), "{v} missing");
        }
        let workbook = part(&x, "xl/workbook.xml");
        assert!(workbook.contains("name=\"顧客一覧\""));
        let sheet = part(&x, "xl/worksheets/sheet1.xml");
        assert!(sheet.contains("state=\"frozen\""), "header row is frozen");
        assert!(sheet.contains("<autoFilter ref=\"A1:C3\""), "{sheet}");
        let core = part(&x, "docProps/core.xml");
        assert!(core.contains("1980-01-01T00:00:00Z"), "{core}");
    }

    #[test]
    fn xlsx_formula_injection_is_written_as_text_not_formula() {
        let t = table(&["a"], &[&["=HYPERLINK(\"http://x.invalid\")"], &["+1+1"], &["@SUM(A1)"]]);
        let x = write_xlsx(&t, "Sheet1").unwrap();
        let sheet = part(&x, "xl/worksheets/sheet1.xml");
        assert!(!sheet.contains("<f>"), "no formula cells: {sheet}");
        assert!(sheet.contains("t=\"s\""), "cells are shared strings");
        let strings = part(&x, "xl/sharedStrings.xml");
        assert!(strings.contains("<t>=HYPERLINK(\"http://x.invalid\")</t>"), "{strings}");
    }

    #[test]
    fn numbers_stay_text() {
        let t = table(&["code"], &[&["007"], &["1e5"]]);
        let x = write_xlsx(&t, "Sheet1").unwrap();
        let strings = part(&x, "xl/sharedStrings.xml");
        assert!(strings.contains(">007<") && strings.contains(">1e5<"));
    }

    #[test]
    fn same_table_gives_same_bytes() {
        let t = table(&["a"], &[&["x"]]);
        assert_eq!(*write_xlsx(&t, "S").unwrap(), *write_xlsx(&t, "S").unwrap());
    }

    #[test]
    fn bad_sheet_name_is_refused_without_echoing_it() {
        let t = table(&["a"], &[]);
        for name in ["", "a[b]", "this name is far too long for excel sheets", "'quoted'"] {
            let e = write_xlsx(&t, name).unwrap_err();
            assert!(matches!(e, ExportError::SheetName), "{name}: {e}");
        }
    }

    #[test]
    fn widths_count_wide_characters_twice() {
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("山田"), 4);
        assert_eq!(display_width("ﾔﾏﾀﾞ"), 4); // half-width katakana are narrow
    }
}
