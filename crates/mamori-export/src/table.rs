//! [`Table`]: the rows of an export, before they become a file.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{ExportError, Result};

/// A table to export: one header row and rows of cell strings.
///
/// The cells are personal data, so `Debug` prints only the shape (column and row counts) and
/// every string is zeroized when the table is dropped. Every row has exactly one cell per
/// header ([`Table::push_row`] checks it).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers and no rows.
    ///
    /// # Errors
    /// [`ExportError::NoColumns`] if `headers` is empty.
    pub fn new(headers: Vec<String>) -> Result<Self> {
        Self::with_capacity(headers, 0)
    }

    /// Like [`Table::new`], with room for `rows` rows (avoids re-allocating the row list).
    ///
    /// # Errors
    /// [`ExportError::NoColumns`] if `headers` is empty.
    pub fn with_capacity(headers: Vec<String>, rows: usize) -> Result<Self> {
        if headers.is_empty() {
            return Err(ExportError::NoColumns);
        }
        Ok(Self { headers, rows: Vec::with_capacity(rows) })
    }

    /// Appends a row.
    ///
    /// # Errors
    /// [`ExportError::RowWidth`] if the row does not have one cell per header; the row is
    /// zeroized and dropped.
    pub fn push_row(&mut self, mut row: Vec<String>) -> Result<()> {
        if row.len() != self.headers.len() {
            let got = row.len();
            row.zeroize();
            return Err(ExportError::RowWidth { row: self.rows.len() + 1, expected: self.headers.len(), got });
        }
        self.rows.push(row);
        Ok(())
    }

    /// The column headers.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The data rows (without the header row).
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    /// Number of columns.
    pub fn column_count(&self) -> usize {
        self.headers.len()
    }

    /// Number of data rows.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("columns", &self.headers.len())
            .field("rows", &self.rows.len())
            .finish_non_exhaustive()
    }
}

/// A table from string literals, for the format tests.
#[cfg(test)]
pub(crate) fn test_table(headers: &[&str], rows: &[&[&str]]) -> Table {
    let mut t = Table::new(headers.iter().map(|s| (*s).to_owned()).collect()).expect("columns");
    for r in rows {
        t.push_row(r.iter().map(|s| (*s).to_owned()).collect()).expect("one cell per column");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn debug_of_table_does_not_print_values() {
        let mut t = Table::new(vec![s("氏名"), s("電話番号")]).unwrap();
        t.push_row(vec![s("山田太郎"), s("090-1234-5678")]).unwrap();
        let d = format!("{t:?}");
        assert!(!d.contains("山田"), "{d}");
        assert!(!d.contains("090"), "{d}");
        assert!(!d.contains("氏名"), "{d}");
        assert!(d.contains("columns: 2") && d.contains("rows: 1"), "{d}");
    }

    #[test]
    fn row_of_the_wrong_width_is_refused_without_its_values_in_the_error() {
        let mut t = Table::new(vec![s("a"), s("b")]).unwrap();
        let err = t.push_row(vec![s("秘密の値")]).unwrap_err();
        let msg = err.to_string();
        assert_eq!(msg, "row 1 has 1 cells, the table has 2 columns");
        assert_eq!(t.row_count(), 0);
    }

    #[test]
    fn table_without_columns_is_refused() {
        assert!(matches!(Table::new(vec![]), Err(ExportError::NoColumns)));
    }
}
