//! Reading the file's text into a [`Config`] without stopping at the first
//! problem: a syntax error names its line and column; otherwise every key
//! that does not parse (an unknown key or section, a value of the wrong
//! type) is reported by its path, and the config is built from the rest.

use serde::Deserialize;

use super::{Config, SECTIONS};
use crate::checks::ConfigError;

/// Parses `text` as TOML; a syntax error is the one problem under `config`.
pub(super) fn parse_table(text: &str) -> Result<toml::Table, ConfigError> {
    text.parse()
        .map_err(|e: toml::de::Error| ConfigError::new("config", syntax_message(text, &e)))
}

/// Deserializes `table`; on failure, retries key by key so that every bad
/// key is reported, and returns the config built from the keys that parsed.
pub(super) fn deserialize_collecting(table: toml::Table) -> (Config, Vec<ConfigError>) {
    if let Ok(c) = Config::deserialize(toml::Value::Table(table.clone())) {
        return (c, Vec::new());
    }
    let mut errors = Vec::new();
    let mut good = toml::Table::new();
    for (section, value) in table {
        let toml::Value::Table(keys) = value else {
            // A top-level key (`development`), or a section given as a value.
            let mut probe = toml::Table::new();
            probe.insert(section.clone(), value.clone());
            match probe_error(probe) {
                None => {
                    good.insert(section, value);
                }
                Some(msg) => errors.push(ConfigError::new(section.clone(), msg)),
            }
            continue;
        };
        if !SECTIONS.contains(&section.as_str()) {
            errors.push(ConfigError::new(section, unknown_section_message()));
            continue;
        }
        let (good_keys, bad_keys) = collect_section(&section, keys);
        errors.extend(bad_keys);
        good.insert(section, toml::Value::Table(good_keys));
    }
    let config = Config::deserialize(toml::Value::Table(good)).unwrap_or_default();
    (config, errors)
}

/// The keys of one known section that parse, and a problem for each other.
fn collect_section(section: &str, keys: toml::Table) -> (toml::Table, Vec<ConfigError>) {
    let mut good_keys = toml::Table::new();
    let mut errors = Vec::new();
    for (key, v) in keys {
        let mut inner = toml::Table::new();
        inner.insert(key.clone(), v.clone());
        let mut probe = toml::Table::new();
        probe.insert(section.to_owned(), toml::Value::Table(inner));
        match probe_error(probe) {
            None => {
                good_keys.insert(key, v);
            }
            Some(msg) => errors.push(ConfigError::new(format!("{section}.{key}"), msg)),
        }
    }
    (good_keys, errors)
}

/// "unknown section (expected server, webhook, ... or cluster)".
fn unknown_section_message() -> String {
    let (last, rest) = SECTIONS.split_last().expect("there are sections");
    format!("unknown section (expected {} or {last})", rest.join(", "))
}

fn probe_error(probe: toml::Table) -> Option<String> {
    Config::deserialize(toml::Value::Table(probe))
        .err()
        .map(|e| e.message().trim().to_owned())
}

fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!(
                "TOML syntax error at line {line}, column {column}: {}",
                e.message().trim()
            )
        }
        None => format!("TOML syntax error: {}", e.message().trim()),
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_section_lists_the_sections() {
        assert_eq!(
            unknown_section_message(),
            "unknown section (expected server, webhook, broker, auth, limits, tiers, payloads, log, replay, cluster, github_app or redelivery)"
        );
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 3), (2, 1));
    }
}
