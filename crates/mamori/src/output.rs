//! Text and JSON output for commands.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// A plain aligned table; column widths count characters (full-width characters are counted
/// as two columns so Japanese text lines up).
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let width = |s: &str| s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum::<usize>();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().enumerate().map(|(i, c)| format!("{c}{}", " ".repeat(widths[i] - width(c)))).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A time for a table cell: RFC 3339 to the second.
pub fn timestamp(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

/// An optional time for a table cell (empty when absent).
pub fn maybe_timestamp(t: Option<OffsetDateTime>) -> String {
    t.map(timestamp).unwrap_or_default()
}

/// A file refused as a whole (an import, an HR roster): every problem with its line, on
/// stderr, or as JSON on stdout; the exit status says it failed.
pub fn rejected(
    what: &str,
    errors: &[mamori_vault::RowError],
    truncated: bool,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    if json {
        self::json(&serde_json::json!({"rejected": true, "errors": errors, "truncated": truncated}))?;
    } else {
        eprintln!("{what} rejected; nothing was written:");
        for e in errors {
            eprintln!("  {e}");
        }
        if truncated {
            eprintln!("  … more problems not shown");
        }
    }
    Ok(std::process::ExitCode::FAILURE)
}
