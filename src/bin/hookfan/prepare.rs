//! What serving and `check-config` share: the configuration with
//! everything it points at loaded (certificate files, webhook secret, auth
//! provider), every problem collected.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hookfan::auth::AuthProvider;
use hookfan::auth::github::GithubProvider;
use hookfan::auth::static_tokens::StaticTokens;
use hookfan::config::{
    AuthProviderKind, Config, ConfigError, ConfigErrors, SECRET_ENV, WebhookSecret,
};

/// A configuration with everything it points at loaded.
pub(crate) struct Prepared {
    pub(crate) config: Config,
    pub(crate) secret: WebhookSecret,
    pub(crate) auth: Arc<dyn AuthProvider>,
    pub(crate) auth_summary: String,
}

/// Loads the config, the secret and the auth provider, collecting every problem.
pub(crate) fn prepare(path: &Path, listen: Option<SocketAddr>) -> Result<Prepared, ConfigErrors> {
    let (mut config, mut errors) = Config::load_lenient(path);
    if errors.iter().any(|e| e.key == "config") {
        return Err(ConfigErrors(errors));
    }
    if let Some(l) = listen {
        config.server.listen = l;
    }
    // The certificate files too: check-config finds a bad one before a
    // restart does.
    if let Err(e) = hookfan::server::check_tls_files(&config) {
        errors.push(e);
    }
    let env = std::env::var(SECRET_ENV).ok();
    let secret = WebhookSecret::load(&config, env.as_deref())
        .map_err(|e| errors.push(e))
        .ok();
    // What the auth section points at is checked only when the section is valid.
    let auth_valid = !errors.iter().any(|e| e.key.starts_with("auth."));
    let auth = if auth_valid {
        auth_provider(&config, &mut errors)
    } else {
        None
    };
    match (secret, auth) {
        (Some(secret), Some((auth, auth_summary))) if errors.is_empty() => Ok(Prepared {
            config,
            secret,
            auth,
            auth_summary,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The auth provider `auth.provider` names, and a line saying what it is;
/// `None` (with the problems in `errors`) when it cannot be built.
fn auth_provider(
    config: &Config,
    errors: &mut Vec<ConfigError>,
) -> Option<(Arc<dyn AuthProvider>, String)> {
    match config.auth.provider {
        AuthProviderKind::Static => {
            let file = (config.auth.tokens_file.clone())
                .expect("validated: the static provider has a tokens_file");
            match StaticTokens::load(&file) {
                Ok(t) => {
                    let t = t.with_default_tier(config.tiers.default_tier);
                    let summary = format!("static, {} tokens from {}", t.len(), file.display());
                    Some((Arc::new(t), summary))
                }
                Err(e) => {
                    errors.extend(e);
                    None
                }
            }
        }
        AuthProviderKind::Github => match GithubProvider::new(&config.auth, &config.tiers) {
            Ok(p) => {
                let summary = format!("github, {}", p.base_url());
                Some((Arc::new(p), summary))
            }
            Err(e) => {
                // `to_string` takes the provider's error whatever its type.
                errors.push(ConfigError::new("auth.github_api_url", e.to_string()));
                None
            }
        },
    }
}
