//! `[github_app]`: who hookfan is to GitHub when it calls the API as the
//! App (to ask for redeliveries): the App's id and its private key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::AppKey;
use crate::checks::{ConfigError, Section, require, resolve_path};

/// `[github_app]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubAppConfig {
    /// The App's id (its settings page, "App ID").
    pub app_id: Option<u64>,
    /// The App's private key, the PEM file GitHub hands out (RSA).
    pub private_key_file: Option<PathBuf>,
}

impl GithubAppConfig {
    /// Whether the section is filled in (both keys set).
    pub fn is_set(&self) -> bool {
        self.app_id.is_some() && self.private_key_file.is_some()
    }
}

impl Section for GithubAppConfig {
    fn validate(&self) -> Vec<ConfigError> {
        let mut errors: Vec<ConfigError> = [
            require(
                self.app_id.is_some() || self.private_key_file.is_none(),
                "github_app.app_id",
                "not set, but github_app.private_key_file is",
            ),
            require(
                self.private_key_file.is_some() || self.app_id.is_none(),
                "github_app.private_key_file",
                "not set, but github_app.app_id is",
            ),
            require(
                self.app_id != Some(0),
                "github_app.app_id",
                "must be the App's id (a positive number), got 0",
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(path) = &self.private_key_file
            && let Err(e) = AppKey::load(path)
        {
            errors.push(ConfigError::new(
                "github_app.private_key_file",
                e.to_string(),
            ));
        }
        errors
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.private_key_file {
            resolve_path(base, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(app_id: Option<u64>, key: Option<&str>) -> Vec<String> {
        let mut c = GithubAppConfig {
            app_id,
            private_key_file: key.map(PathBuf::from),
        };
        c.resolve_paths(Path::new("/nonexistent"));
        c.validate().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn both_keys_or_neither() {
        assert!(problems(None, None).is_empty());
        assert_eq!(
            problems(Some(7), None),
            ["github_app.private_key_file: not set, but github_app.app_id is"]
        );
        assert_eq!(
            problems(Some(0), Some("k.pem")),
            [
                "github_app.app_id: must be the App's id (a positive number), got 0",
                "github_app.private_key_file: cannot read /nonexistent/k.pem: \
                 No such file or directory (os error 2)"
            ]
        );
    }
}
