//! The static auth provider: a TOML table of tokens, for development, tests,
//! load tests and closed deployments without GitHub access.
//!
//! ```toml
//! [[token]]
//! token = "ghp_..."            # or token_sha256 = "<64 hex digits>"
//! login = "alice"
//! orgs = ["acme"]
//! tier = "free"                # free (default), pro or flock
//! # app_installation = true    # an app installation token: exactly one org
//! ```
//!
//! Tokens are held only as SHA-256 hashes once loaded. The table can be
//! replaced while the daemon runs ([`AuthProvider::reload`], on SIGHUP):
//! connections check their token against the table of the moment.

use std::path::Path;
use std::sync::RwLock;

use ahash::AHashMap;
use serde::Deserialize;

use super::token::{looks_like_github_token, sha256};
use super::{
    AuthError, AuthFuture, AuthProvider, Identity, IdentityKind, OrgSet, ReloadError, Tier, Token,
};
use crate::auth::AuthConfig;
use crate::checks::{ConfigError, is_login};
use crate::tier::TiersConfig;

/// Login reported for app installation tokens, as the GitHub provider does.
pub const APP_LOGIN: &str = "app[installation]";

/// A token table.
#[derive(Debug, Default)]
pub struct StaticTokens {
    table: RwLock<Table>,
}

#[derive(Debug, Default)]
struct Table {
    by_hash: AHashMap<[u8; 32], Listed>,
    /// The tier of an entry that names none (`tiers.default_tier`).
    default_tier: Tier,
}

/// A token's account; its tier is `tiers.default_tier` unless the entry
/// gave one.
#[derive(Debug)]
struct Listed {
    identity: Identity,
    tier_given: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    token: Option<String>,
    token_sha256: Option<String>,
    login: Option<String>,
    #[serde(default)]
    orgs: Vec<String>,
    #[serde(default)]
    tier: Option<Tier>,
    #[serde(default)]
    app_installation: bool,
}

impl StaticTokens {
    /// Loads the table at `path`, reporting every bad entry. Errors name the
    /// config key `auth.tokens_file` and never contain a token.
    pub fn load(path: &Path) -> Result<StaticTokens, Vec<ConfigError>> {
        let err = |msg: String| {
            ConfigError::new("auth.tokens_file", format!("{}: {msg}", path.display()))
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| vec![err(format!("cannot read: {e}"))])?;
        let file: File =
            toml::from_str(&text).map_err(|e| vec![err(e.message().trim().to_owned())])?;
        let mut table = AHashMap::new();
        let mut errors = Vec::new();
        for (i, entry) in file.token.into_iter().enumerate() {
            let n = i + 1;
            match entry.into_listed() {
                Ok((hash, listed)) => {
                    if table.insert(hash, listed).is_some() {
                        errors.push(err(format!(
                            "token entry {n}: the same token appears twice"
                        )));
                    }
                }
                Err(msg) => errors.push(err(format!("token entry {n}: {msg}"))),
            }
        }
        if errors.is_empty() {
            Ok(StaticTokens {
                table: RwLock::new(Table {
                    by_hash: table,
                    default_tier: Tier::Free,
                }),
            })
        } else {
            Err(errors)
        }
    }

    /// The table, with `tier` (`tiers.default_tier`) for entries that name
    /// no tier.
    pub fn with_default_tier(mut self, tier: Tier) -> Self {
        self.table_mut().default_tier = tier;
        self
    }

    /// Adds an entry (tests and embedders); its tier is the identity's.
    pub fn insert(&mut self, token: &Token, identity: Identity) {
        let listed = Listed {
            identity,
            tier_given: true,
        };
        self.table_mut().by_hash.insert(token.sha256(), listed);
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.table.read().expect("token table lock").by_hash.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn table_mut(&mut self) -> &mut Table {
        self.table.get_mut().expect("token table lock")
    }
}

/// What is wrong with one `[[token]]` entry. Never holds the token.
#[derive(Debug, thiserror::Error)]
enum EntryError {
    #[error("token does not look like a GitHub token, so no client could present it")]
    NotAGithubToken,
    #[error("token_sha256 must be 64 hex digits")]
    BadSha256,
    #[error("give exactly one of token or token_sha256")]
    TokenOrSha256,
    #[error("{0:?} is not an organization login")]
    BadOrg(String),
    #[error("an app installation token needs exactly one org")]
    AppOrgs,
    #[error("login is required")]
    NoLogin,
    #[error("login {0:?} is not a GitHub login")]
    BadLogin(String),
}

impl Entry {
    fn into_listed(self) -> Result<([u8; 32], Listed), EntryError> {
        let hash = match (self.token, self.token_sha256) {
            (Some(t), None) => {
                if !looks_like_github_token(&t) {
                    return Err(EntryError::NotAGithubToken);
                }
                sha256(t.as_bytes())
            }
            (None, Some(h)) => {
                let mut out = [0u8; 32];
                hex::decode_to_slice(h.as_bytes(), &mut out).map_err(|_| EntryError::BadSha256)?;
                out
            }
            _ => return Err(EntryError::TokenOrSha256),
        };
        for org in &self.orgs {
            if !is_login(org) {
                return Err(EntryError::BadOrg(org.clone()));
            }
        }
        let (login, kind) = if self.app_installation {
            if self.orgs.len() != 1 {
                return Err(EntryError::AppOrgs);
            }
            (
                self.login.unwrap_or_else(|| APP_LOGIN.to_owned()),
                IdentityKind::AppInstallation,
            )
        } else {
            let login = self.login.ok_or(EntryError::NoLogin)?;
            if !is_login(&login) {
                return Err(EntryError::BadLogin(login));
            }
            (login, IdentityKind::User)
        };
        let identity = Identity {
            login,
            orgs: OrgSet::new(self.orgs),
            tier: self.tier.unwrap_or_default(),
            kind,
        };
        let tier_given = self.tier.is_some();
        Ok((
            hash,
            Listed {
                identity,
                tier_given,
            },
        ))
    }
}

impl AuthProvider for StaticTokens {
    fn authenticate<'a>(&'a self, token: &'a Token) -> AuthFuture<'a> {
        let found = {
            let table = self.table.read().expect("token table lock");
            table.by_hash.get(&token.sha256()).map(|listed| {
                let mut identity = listed.identity.clone();
                if !listed.tier_given {
                    identity.tier = table.default_tier;
                }
                identity
            })
        };
        Box::pin(async move { found.ok_or(AuthError::InvalidToken) })
    }

    /// Loads `auth.tokens_file` again, with `tiers.default_tier`; a file
    /// with any bad entry replaces nothing.
    fn reload(&self, auth: &AuthConfig, tiers: &TiersConfig) -> Result<(), ReloadError> {
        let Some(path) = &auth.tokens_file else {
            return Err(ReloadError::TokensFileNotSet);
        };
        let fresh = StaticTokens::load(path).map_err(ReloadError::TokensFile)?;
        let fresh = fresh.with_default_tier(tiers.default_tier);
        let fresh = fresh.table.into_inner().expect("token table lock");
        let n = fresh.by_hash.len();
        *self.table.write().expect("token table lock") = fresh;
        tracing::info!(tokens = n, file = %path.display(), "static tokens reloaded");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<StaticTokens, Vec<ConfigError>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.toml");
        std::fs::write(&p, text).unwrap();
        StaticTokens::load(&p)
    }

    const ALICE: &str = "ghp_aliceaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[tokio::test]
    async fn looks_up_by_token_and_by_hash() {
        let bob = format!("ghp_{}", "b".repeat(36));
        let text = format!(
            "[[token]]\ntoken = \"{ALICE}\"\nlogin = \"alice\"\norgs = [\"acme\"]\ntier = \"pro\"\n\
             [[token]]\ntoken_sha256 = \"{}\"\nlogin = \"bob\"\n\
             [[token]]\ntoken = \"ghs_{}\"\norgs = [\"acme\"]\napp_installation = true\n",
            hex::encode(sha256(bob.as_bytes())),
            "c".repeat(36)
        );
        let t = load(&text).unwrap();
        assert_eq!(t.len(), 3);
        let alice = t.authenticate(&Token::new(ALICE)).await.unwrap();
        assert_eq!((alice.login.as_str(), alice.tier), ("alice", Tier::Pro));
        assert_eq!(alice.orgs.names().collect::<Vec<_>>(), ["acme"]);
        let bob = t.authenticate(&Token::new(bob)).await.unwrap();
        assert_eq!((bob.login.as_str(), bob.tier), ("bob", Tier::Free));
        let app = t
            .authenticate(&Token::new(format!("ghs_{}", "c".repeat(36))))
            .await
            .unwrap();
        assert_eq!(
            (app.login.as_str(), app.kind),
            (APP_LOGIN, IdentityKind::AppInstallation)
        );
        assert_eq!(
            t.authenticate(&Token::new(format!("ghp_{}", "z".repeat(36))))
                .await,
            Err(AuthError::InvalidToken)
        );
    }

    #[tokio::test]
    async fn the_default_tier_applies_to_entries_without_one() {
        let carol = format!("ghp_{}", "c".repeat(36));
        let text = format!(
            "[[token]]\ntoken = \"{ALICE}\"\nlogin = \"alice\"\ntier = \"free\"\n\
             [[token]]\ntoken = \"{carol}\"\nlogin = \"carol\"\n"
        );
        let tier = |t: &StaticTokens, token: &str| {
            let id = futures_util::FutureExt::now_or_never(t.authenticate(&Token::new(token)));
            id.unwrap().unwrap().tier
        };
        let t = load(&text).unwrap();
        assert_eq!(
            (tier(&t, ALICE), tier(&t, &carol)),
            (Tier::Free, Tier::Free)
        );
        let t = t.with_default_tier(Tier::Pro);
        assert_eq!((tier(&t, ALICE), tier(&t, &carol)), (Tier::Free, Tier::Pro));
    }

    #[test]
    fn every_bad_entry_is_reported_without_the_token() {
        let text = format!(
            "[[token]]\ntoken = \"short-secret-value\"\nlogin = \"a\"\n\
             [[token]]\nlogin = \"b\"\n\
             [[token]]\ntoken = \"{ALICE}\"\nlogin = \"bad login\"\n\
             [[token]]\ntoken_sha256 = \"xyz\"\nlogin = \"c\"\n\
             [[token]]\ntoken = \"{ALICE}\"\nlogin = \"d\"\ntier = \"gold\"\n"
        );
        let errs = load(&text).unwrap_err();
        assert!(errs.iter().all(|e| e.key == "auth.tokens_file"));
        let all: Vec<String> = errs.iter().map(|e| e.message.clone()).collect();
        let joined = all.join("\n");
        assert!(
            !joined.contains("short-secret-value") && !joined.contains(ALICE),
            "{joined}"
        );
        // A bad tier is a parse error of the whole file; the rest are per entry.
        assert_eq!(errs.len(), 1, "{joined}");
        assert!(joined.contains("gold"), "{joined}");

        let text = text.replace("tier = \"gold\"\n", "");
        let errs = load(&text).unwrap_err();
        let joined: Vec<String> = errs.iter().map(|e| e.message.clone()).collect();
        assert_eq!(errs.len(), 4, "{joined:?}");
        assert!(joined[0].contains("token entry 1") && joined[0].contains("does not look like"));
        assert!(joined[1].contains("token entry 2") && joined[1].contains("exactly one"));
        assert!(joined[2].contains("token entry 3") && joined[2].contains("not a GitHub login"));
        assert!(joined[3].contains("token entry 4") && joined[3].contains("64 hex"));
    }

    #[test]
    fn duplicate_tokens_are_refused() {
        let text = format!(
            "[[token]]\ntoken = \"{ALICE}\"\nlogin = \"a\"\n[[token]]\ntoken = \"{ALICE}\"\nlogin = \"b\"\n"
        );
        let errs = load(&text).unwrap_err();
        assert!(
            errs[0]
                .message
                .contains("token entry 2: the same token appears twice")
        );
    }

    #[test]
    fn a_failed_reload_keeps_the_table_and_says_why() {
        let t = load(&format!("[[token]]\ntoken = \"{ALICE}\"\nlogin = \"a\"\n")).unwrap();
        let tiers = TiersConfig::default();
        let err = t.reload(&AuthConfig::default(), &tiers).unwrap_err();
        assert_eq!(
            err.to_string(),
            "auth.tokens_file: not set; keeping the loaded tokens"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(
            &path,
            "[[token]]\nlogin = \"b\"\n[[token]]\nlogin = \"c\"\n",
        )
        .unwrap();
        let auth = AuthConfig {
            tokens_file: Some(path.clone()),
            ..AuthConfig::default()
        };
        let err = t.reload(&auth, &tiers).unwrap_err();
        let p = path.display();
        assert_eq!(
            err.to_string(),
            format!(
                "auth.tokens_file: {p}: token entry 1: give exactly one of token or token_sha256; \
                 auth.tokens_file: {p}: token entry 2: give exactly one of token or token_sha256"
            )
        );
        assert_eq!(t.len(), 1);
    }
}
