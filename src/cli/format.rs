//! The output convention every command that prints data follows: `--format json|table|text`
//! chooses how (each command offers the forms that fit its data), and `-o/--output FILE`,
//! where a command has it, names a file to write. Older flags (`--json`, `shadow get
//! --output json|table`) stay accepted as aliases.

use clap::builder::{PossibleValuesParser, TypedValueParser};

/// How a command prints its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON document (for scripts; always valid JSON).
    Json,
    /// Aligned columns.
    Table,
    /// Lines for people to read.
    Text,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Table => "table",
            Format::Text => "text",
        }
    }
}

/// A clap value parser that takes only the `allowed` formats (so `--help` and the error
/// for another value list exactly what the command offers).
pub fn parser(allowed: &'static [Format]) -> impl TypedValueParser<Value = Format> {
    PossibleValuesParser::new(allowed.iter().map(|f| f.name())).map(move |name: String| {
        // The possible-values parser let only these names through.
        allowed
            .iter()
            .copied()
            .find(|f| f.name() == name)
            .unwrap_or(allowed[0])
    })
}

/// `--format text|json` with the older `--json` kept as a hidden alias: the options of the
/// commands that print a report (`pki inspect`, `pki check`, `doctor`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct FormatArgs {
    /// Output format: text (lines to read), or json (one JSON document).
    #[arg(long, value_name = "FORMAT", default_value = "text",
          value_parser = parser(&[Format::Text, Format::Json]))]
    format: Format,
    /// Same as --format json (the older name).
    #[arg(long, hide = true, conflicts_with = "format")]
    json: bool,
}

impl FormatArgs {
    /// `--format`, or `json` when the old `--json` flag was given.
    pub fn chosen(self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.format
        }
    }
}
