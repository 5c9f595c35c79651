//! Output formats, tables and human times (pure).

use jiff::Timestamp;
use serde::Serialize;

use crate::error::{PluginError, Result};

/// `-o`: how results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
    /// YAML for scripts and manifests.
    Yaml,
}

/// `value` as JSON or YAML text (`None` for [`Format::Table`]).
pub fn structured<T: Serialize>(format: Format, value: &T) -> Result<Option<String>> {
    let text = match format {
        Format::Table => return Ok(None),
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml::to_string(value).map_err(|e| e.to_string()),
    };
    text.map(Some)
        .map_err(|e| PluginError::Usage(format!("cannot render the output: {e}")))
}

/// Writes `text` to stdout; a reader that stopped reading (`| head`) is not an error.
pub fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(PluginError::Io {
            what: "writing to stdout".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Rows under headers, each column as wide as its widest cell, separated by three spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// How long ago `then` was (`5m ago`), or how far ahead (`in 3h`), from `now`.
pub fn relative(then: Timestamp, now: Timestamp) -> String {
    let seconds = now.as_second() - then.as_second();
    let (amount, future) = (seconds.unsigned_abs(), seconds < 0);
    let text = match amount {
        0..60 => format!("{amount}s"),
        60..3600 => format!("{}m", amount / 60),
        3600..172_800 => format!("{}h", amount / 3600),
        _ => format!("{}d", amount / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_times_read_naturally() {
        let text = table(
            &["NAME", "PHASE"],
            &[vec!["nightly".into(), "Ready".into()], vec!["a".into(), "".into()]],
        );
        assert_eq!(text, "NAME      PHASE\nnightly   Ready\na\n");
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        assert_eq!(relative("2026-11-30T11:55:00Z".parse().unwrap(), now), "5m ago");
        assert_eq!(relative("2026-11-30T15:00:00Z".parse().unwrap(), now), "in 3h");
        assert_eq!(relative("2026-11-20T12:00:00Z".parse().unwrap(), now), "10d ago");
        assert!(structured(Format::Table, &1).unwrap().is_none());
        assert_eq!(structured(Format::Json, &[1]).unwrap().unwrap(), "[\n  1\n]\n");
    }
}
