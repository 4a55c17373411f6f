//! The INI files of the AWS CLI (`~/.aws/credentials`, `~/.aws/config`): read by the
//! control-plane client's credential lookup, and by the simulated account for the
//! credentials file it writes in that format. Spec: AWS SDKs and Tools reference guide,
//! "Shared config and credentials files".

use std::collections::BTreeMap;

/// Each `[section]`'s `key = value` pairs.
pub type Sections = BTreeMap<String, BTreeMap<String, String>>;

/// Parses an AWS INI file: `[name]` sections of `key = value` lines, `#`/`;` comments.
/// The indented lines of nested values (the `s3 =` sub-sections) are skipped.
pub fn parse(text: &str) -> Sections {
    let mut out = Sections::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let name = name.trim().to_string();
            out.entry(name.clone()).or_default();
            current = Some(name);
        } else if let (Some(sec), Some((k, v))) = (&current, t.split_once('=')) {
            if line.starts_with([' ', '\t']) {
                continue;
            }
            out.entry(sec.clone())
                .or_default()
                .insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}
