//! Output of client commands: tables sized to the terminal, or JSON.

use std::io::Write;

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

use super::Format;

/// One column: its header and how to render a row's cell.
pub struct Column {
    pub header: &'static str,
    pub cell: fn(&Value) -> String,
}

impl Column {
    pub const fn new(header: &'static str, cell: fn(&Value) -> String) -> Self {
        Self { header, cell }
    }
}

/// Prints `rows` as a table (wrapped to the terminal's width when stdout is
/// one) or as pretty JSON.
pub fn print_rows(format: Format, rows: &[Value], columns: &[Column], empty: &str) {
    match format {
        Format::Json => emit(&pretty(&Value::Array(rows.to_vec()))),
        Format::Table if rows.is_empty() => emit(empty),
        Format::Table => {
            let mut table = Table::new();
            table
                .load_style(NOTHING)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(columns.iter().map(|c| c.header));
            for row in rows {
                table.add_row(columns.iter().map(|c| (c.cell)(row)));
            }
            emit(&table.to_string());
        }
    }
}

/// Prints a line to stdout. A closed pipe (`certctl certs list | head`)
/// ends the program quietly instead of panicking.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("certctl: error: cannot write output: {e}");
        std::process::exit(1);
    }
}

/// Prints one object as `key  value` lines, or as JSON.
pub fn print_object(format: Format, value: &Value, fields: &[Column]) {
    match format {
        Format::Json => emit(&pretty(value)),
        Format::Table => {
            let mut table = Table::new();
            table
                .load_style(NOTHING)
                .set_content_arrangement(ContentArrangement::Dynamic);
            for f in fields {
                table.add_row(vec![f.header.to_owned(), (f.cell)(value)]);
            }
            emit(&table.to_string());
        }
    }
}

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A string field, or `-`.
pub fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// A Unix-time field as a UTC date and time, or `-`.
pub fn when(v: &Value, key: &str) -> String {
    match v[key].as_i64() {
        Some(t) => certctl_engine::clock::to_rfc3339(t)
            .replace('T', " ")
            .trim_end_matches('Z')
            .to_owned(),
        None => "-".into(),
    }
}

/// An expiry as a date with the days left (`2027-01-10 (in 43d)`).
pub fn expiry(v: &Value, key: &str, now: i64) -> String {
    match v[key].as_i64() {
        // Certificates without a version carry the far-future sentinel.
        Some(t) if t < 253_402_300_799 => {
            let date = certctl_engine::clock::to_rfc3339(t);
            let date = date.get(..10).unwrap_or(&date).to_owned();
            let days = (t - now).div_euclid(86_400);
            if t < now {
                format!("{date} (expired)")
            } else {
                format!("{date} (in {days}d)")
            }
        }
        _ => "-".into(),
    }
}

/// Parses a time argument: Unix seconds, an RFC 3339 time, a date
/// (`2027-01-31`), or a span from now (`30d`, `12h`, `-7d`).
pub fn parse_time(s: &str, now: i64) -> anyhow::Result<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    if let Some((num, unit)) = s.split_at_checked(s.len().saturating_sub(1))
        && let Ok(n) = num.parse::<i64>()
    {
        let secs = match unit {
            "d" => 86_400,
            "h" => 3_600,
            "m" => 60,
            "s" => 1,
            _ => anyhow::bail!("unknown time unit in '{s}' (use d, h, m or s)"),
        };
        return Ok(now + n * secs);
    }
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let date_format = time::format_description::parse_borrowed::<2>("[year]-[month]-[day]")?;
    if let Ok(d) = time::Date::parse(s, &date_format) {
        return Ok(d.midnight().assume_utc().unix_timestamp());
    }
    anyhow::bail!(
        "'{s}' is not a time: use Unix seconds, 2027-01-31, an RFC 3339 time, or 30d/12h from now"
    )
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1700000000", 0).unwrap(), 1_700_000_000);
        assert_eq!(parse_time("30d", 100).unwrap(), 100 + 30 * 86_400);
        assert_eq!(parse_time("-2h", 10_000).unwrap(), 10_000 - 7_200);
        assert_eq!(parse_time("1970-01-02", 0).unwrap(), 86_400);
        assert_eq!(parse_time("1970-01-01T00:01:00Z", 0).unwrap(), 60);
        assert!(parse_time("soon", 0).is_err());
        assert!(parse_time("3w", 0).is_err());
    }

    #[test]
    fn expiry_reads_well() {
        let v = serde_json::json!({ "a": 86_400 * 10, "b": 253_402_300_799_i64 });
        assert_eq!(expiry(&v, "a", 0), "1970-01-11 (in 10d)");
        assert_eq!(expiry(&v, "a", 86_400 * 11), "1970-01-11 (expired)");
        assert_eq!(expiry(&v, "b", 0), "-");
        assert_eq!(expiry(&v, "missing", 0), "-");
    }
}
