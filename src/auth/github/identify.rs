//! One API round: who a token belongs to, asked of GitHub (the round's
//! steps are in the module doc of [`super`]).

use hyper::header;
use hyper::{StatusCode, Uri};
use serde::Deserialize;

use super::api::{Api, Reply};
use super::stats::inc;
use crate::auth::static_tokens::APP_LOGIN;
use crate::auth::{AuthError, Identity, IdentityKind, OrgSet, Token};

/// Most `/user/orgs` pages followed (100 orgs each).
const MAX_ORG_PAGES: usize = 100;

#[derive(Deserialize)]
struct Login {
    login: String,
}

#[derive(Deserialize)]
struct Repository {
    owner: Login,
}

#[derive(Deserialize)]
struct InstallationRepositories {
    #[serde(default)]
    repositories: Vec<Repository>,
}

impl Api {
    /// One API round for `token`, with its outcome counted and logged.
    pub(super) async fn round(&self, token: Token) -> Result<Identity, AuthError> {
        let out = self.identify(&token).await;
        let c = &self.counters;
        let fp = token.fingerprint();
        match &out {
            Ok(id) => {
                inc(&c.rounds_accepted);
                tracing::debug!(token = %fp, login = %id.login, kind = ?id.kind, orgs = id.orgs.len(), tier = id.tier.as_str(), "GitHub token accepted");
            }
            Err(AuthError::InvalidToken) => {
                inc(&c.rounds_invalid);
                tracing::debug!(token = %fp, "GitHub token rejected (401)");
            }
            Err(AuthError::Forbidden) => {
                inc(&c.rounds_forbidden);
                tracing::debug!(token = %fp, "GitHub token forbidden (403)");
            }
            Err(AuthError::RateLimited) => {
                inc(&c.rounds_rate_limited);
                tracing::warn!(token = %fp, "GitHub API rate limit exceeded for this token");
            }
            Err(AuthError::Unavailable(why)) => {
                inc(&c.rounds_unavailable);
                tracing::warn!(token = %fp, error = %why, "GitHub token check failed");
            }
        }
        out
    }

    async fn identify(&self, token: &Token) -> Result<Identity, AuthError> {
        if let Some(installation) = self.installation(token).await? {
            return Ok(installation);
        }
        let login = self.user(token).await?;
        let orgs = self.user_orgs(token).await?;
        let tier = self
            .tiers()
            .tier(std::iter::once(login.as_str()).chain(orgs.iter().map(String::as_str)));
        Ok(Identity {
            login,
            orgs: OrgSet::new(orgs),
            tier,
            kind: IdentityKind::User,
        })
    }

    /// Step 1: the app installation behind `token`, or `None` for a user
    /// token.
    async fn installation(&self, token: &Token) -> Result<Option<Identity>, AuthError> {
        let what = "/installation/repositories";
        let r = self
            .get(&format!("{}{what}?per_page=1", self.base), what, token)
            .await?;
        if r.status.is_success() {
            let repos: InstallationRepositories = r.json(what)?;
            let orgs: Vec<String> = repos
                .repositories
                .into_iter()
                .take(1)
                .map(|r| r.owner.login)
                .collect();
            let tier = self.tiers().tier(orgs.iter().map(String::as_str));
            return Ok(Some(Identity {
                login: APP_LOGIN.to_owned(),
                orgs: OrgSet::new(orgs),
                tier,
                kind: IdentityKind::AppInstallation,
            }));
        }
        // 403 (GitHub's answer to a user token here), 404 and anything else:
        // not an installation token, so a user token.
        if let Some(e @ (AuthError::InvalidToken | AuthError::RateLimited)) = r.auth_error() {
            return Err(e);
        }
        Ok(None)
    }

    /// Step 2: the user's login.
    async fn user(&self, token: &Token) -> Result<String, AuthError> {
        let what = "/user";
        let r = self
            .get(&format!("{}{what}", self.base), what, token)
            .await?;
        expect_success(&r, what)?;
        let login = r.json::<Login>(what)?.login;
        if login.is_empty() {
            return Err(AuthError::Unavailable(format!(
                "GitHub API {what}: answer without a login"
            )));
        }
        Ok(login)
    }

    /// Step 2, on: the user's organizations, every page.
    async fn user_orgs(&self, token: &Token) -> Result<Vec<String>, AuthError> {
        let what = "/user/orgs";
        let mut orgs = Vec::new();
        let mut url = format!("{}{what}?per_page=100", self.base);
        for page in 1.. {
            let r = self.get(&url, what, token).await?;
            expect_success(&r, what)?;
            orgs.extend(r.json::<Vec<Login>>(what)?.into_iter().map(|o| o.login));
            let Some(next) = r
                .headers
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
            else {
                break;
            };
            if page >= MAX_ORG_PAGES {
                return Err(AuthError::Unavailable(format!(
                    "GitHub API {what}: more than {MAX_ORG_PAGES} pages"
                )));
            }
            if !self.same_origin(next) {
                return Err(AuthError::Unavailable(format!(
                    "GitHub API {what}: the next page is on another server ({}); not following it",
                    next.parse::<Uri>()
                        .ok()
                        .and_then(|u| u.authority().map(|a| a.to_string()))
                        .unwrap_or_else(|| "not a URL".to_owned())
                )));
            }
            url = next.to_owned();
        }
        Ok(orgs)
    }
}

/// The error of a non-2xx answer to `/user` or `/user/orgs`.
fn expect_success(r: &Reply, what: &str) -> Result<(), AuthError> {
    if r.status.is_success() {
        return Ok(());
    }
    Err(r.auth_error().unwrap_or_else(|| {
        AuthError::Unavailable(format!(
            "GitHub API {what}: unexpected answer {}{}",
            r.status,
            if r.status == StatusCode::NOT_FOUND {
                " (is auth.github_api_url the API's base URL?)"
            } else {
                ""
            }
        ))
    }))
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<&str> {
    for part in header.split(',') {
        let Some((url, params)) = part
            .trim()
            .strip_prefix('<')
            .and_then(|p| p.split_once('>'))
        else {
            continue;
        };
        let next = params.split(';').any(|p| {
            let p = p.trim();
            p.get(..4).is_some_and(|k| k.eq_ignore_ascii_case("rel="))
                && p[4..]
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if next {
            return Some(url.trim());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn link_header() {
        let h = r#"<https://api.github.com/user/orgs?per_page=100&page=2>; rel="next", <https://api.github.com/user/orgs?per_page=100&page=3>; rel="last""#;
        assert_eq!(
            next_link(h),
            Some("https://api.github.com/user/orgs?per_page=100&page=2")
        );
        let h = r#"<https://x/?page=1>; rel="prev", <https://x/?page=1>; rel="first""#;
        assert_eq!(next_link(h), None);
        assert_eq!(
            next_link(r#"<https://x/?page=4>;rel=next"#),
            Some("https://x/?page=4")
        );
        assert_eq!(
            next_link(r#"<https://x/?page=4>; type="a"; REL="last next""#),
            Some("https://x/?page=4")
        );
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("garbage; rel=\"next\""), None);
    }
}
