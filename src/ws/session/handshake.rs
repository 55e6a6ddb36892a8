//! The handshake: the client's subscription, checked, and its token,
//! checked by the auth provider, give what the session registers with.

use crate::auth::OrgSet;
use crate::auth::{AuthError, Identity, IdentityKind, Token};
use crate::broker::Filter;
use crate::payloads::PayloadRefusal;
use crate::subscription::Subscription;

use super::super::WsContext;
use super::super::codec::{self, Message, ProtocolError};
use super::super::messages::HandshakeError;
use super::super::wire::Wire;
use super::conn::{Conn, ConnError, MAX_MESSAGE, ReadOutcome};

/// What the client sent first.
enum First {
    Text(String),
    Binary,
    Closed,
}

/// A successful handshake.
pub(crate) struct Accepted {
    /// As accepted: username and pinned org filled in.
    pub(crate) subscription: Subscription,
    pub(crate) can_see_private: bool,
    /// The event types the confirmation lists.
    pub(crate) listed: Option<Vec<String>>,
    pub(crate) warnings: Vec<String>,
    pub(crate) filter: Filter,
}

/// Reads the subscription, checks it and the token. `Ok(None)`: the client
/// went away or broke the protocol (already answered).
pub(super) async fn handshake<W: Wire>(
    conn: &mut Conn<W>,
    token: &Token,
    ctx: &WsContext,
) -> Result<Option<Accepted>, HandshakeError> {
    let Some(first) = read_subscription(conn, ctx).await? else {
        return Ok(None);
    };
    check(&first, token, ctx).await.map(Some)
}

/// The checks on a subscription, whichever way it came (the first message
/// on `/ws`, the query of `/events`): its fields, the allowed event types,
/// the token, the organization's membership.
pub(crate) async fn check(
    first: &str,
    token: &Token,
    ctx: &WsContext,
) -> Result<Accepted, HandshakeError> {
    let (sub, unknown) =
        Subscription::parse_with_unknown(first).map_err(HandshakeError::Invalid)?;
    if let Some(allowed) = &ctx.settings.allowed_events
        && let Some(t) = sub.event_types.iter().find(|t| !allowed.contains(t))
    {
        return Err(HandshakeError::EventTypeNotAllowed(t.clone()));
    }
    let payloads = &ctx.settings.payloads;
    if sub.include_payload && !payloads.enabled {
        // Refused before the token check: it cannot change the answer.
        return Err(HandshakeError::PayloadNotAllowed(PayloadRefusal::Disabled));
    }
    let identity = check_token(token, ctx).await?;
    let mut org = sub.organization.clone();
    if !org.is_empty() && org != "*" && !identity.is_member_of(&org) {
        ctx.metrics.auth_result("not_member");
        return Err(HandshakeError::NotMember {
            login: identity.login,
            org,
        });
    }
    ctx.metrics.auth_result("ok");
    if sub.include_payload {
        payloads
            .allows(identity.tier)
            .map_err(HandshakeError::PayloadNotAllowed)?;
    }
    if org.is_empty()
        && identity.kind == IdentityKind::AppInstallation
        && let Some(only) = identity
            .orgs
            .names()
            .next()
            .filter(|_| identity.orgs.len() == 1)
    {
        org = only.to_owned();
    }
    let warnings = crate::subscription::unknown_field_warnings(&unknown);
    let can_see_private = identity.tier.can_see_private();
    let subscription = Subscription {
        organization: org,
        username: identity.login,
        ..sub
    };
    Ok(accept(
        subscription,
        identity.orgs,
        can_see_private,
        warnings,
        ctx,
    ))
}

/// The first message, within the handshake timeout. `Ok(None)`: the
/// client went away or broke the protocol (already answered).
async fn read_subscription<W: Wire>(
    conn: &mut Conn<W>,
    ctx: &WsContext,
) -> Result<Option<String>, HandshakeError> {
    let timeout = ctx.settings.handshake_timeout;
    match tokio::time::timeout(timeout, read_first(conn)).await {
        Err(_) => Err(HandshakeError::Timeout(timeout)),
        Ok(Err(ConnError::Protocol(ProtocolError::TooLarge))) => {
            Err(HandshakeError::TooLarge(MAX_MESSAGE))
        }
        Ok(Err(ConnError::Protocol(e))) => {
            conn.close(e.close_code(), e.reason()).await;
            Ok(None)
        }
        Ok(Err(ConnError::Io(e))) => {
            tracing::debug!(error = %e, "connection failed during the handshake");
            Ok(None)
        }
        Ok(Ok(First::Closed)) => Ok(None),
        Ok(Ok(First::Binary)) => Err(HandshakeError::Binary),
        Ok(Ok(First::Text(t))) => Ok(Some(t)),
    }
}

/// The auth provider's answer on the token, within the auth timeout,
/// counted by result.
async fn check_token(token: &Token, ctx: &WsContext) -> Result<Identity, HandshakeError> {
    let limit = ctx.settings.auth_timeout;
    let checked = tokio::time::timeout(limit, ctx.auth.authenticate(token))
        .await
        .unwrap_or_else(|_| {
            Err(AuthError::Unavailable(format!(
                "token check took longer than {} s (auth.check_timeout_s)",
                limit.as_secs()
            )))
        });
    checked.map_err(|e| {
        ctx.metrics.auth_result(match e {
            AuthError::InvalidToken => "invalid_token",
            AuthError::Forbidden => "forbidden",
            AuthError::RateLimited => "rate_limited",
            AuthError::Unavailable(_) => "unavailable",
        });
        HandshakeError::Auth(e)
    })
}

/// The accepted subscription (username and pinned org filled in) with
/// what its confirmation lists and the filter the shard judges it by.
fn accept(
    subscription: Subscription,
    orgs: OrgSet,
    can_see_private: bool,
    mut warnings: Vec<String>,
    ctx: &WsContext,
) -> Accepted {
    let listed = if subscription.event_types.is_empty() {
        ctx.settings.allowed_events.as_deref()
    } else {
        Some(&subscription.event_types[..])
    };
    if subscription.matches_nothing() {
        warnings.push(
            "this subscription matches no event: it names no organization and no pull_requests, and user_events_only is false".to_owned(),
        );
    }
    let listed = listed.map(<[String]>::to_vec);
    let org = &subscription.organization;
    let lower = |s: &str| Box::<str>::from(s.to_ascii_lowercase());
    let filter = Filter {
        login: lower(&subscription.username),
        orgs,
        organization: lower(org),
        event_types: subscription
            .event_types
            .iter()
            .map(|t| Box::from(t.as_str()))
            .collect(),
        pr_keys: subscription.pr_keys().into_boxed_slice(),
        user_events_only: subscription.user_events_only,
        can_see_private,
        include_payload: subscription.include_payload,
    }
    .normalized();
    Accepted {
        subscription,
        can_see_private,
        listed,
        warnings,
        filter,
    }
}

/// Waits for the client's first data message, answering pings meanwhile.
async fn read_first<W: Wire>(conn: &mut Conn<W>) -> Result<First, ConnError> {
    loop {
        if conn.prefix.is_none() {
            conn.readable().await.map_err(ConnError::Io)?;
        }
        let mut first = None;
        let mut pongs = Vec::new();
        let outcome = conn.read_now(|m| {
            match m {
                Message::Text(t) => first = Some(First::Text(t.to_owned())),
                Message::Binary(_) => first = Some(First::Binary),
                Message::Close(_) => first = Some(First::Closed),
                Message::Ping(p) => pongs.push(codec::pong_frame(p)),
                Message::Pong => {}
            }
            first.is_none()
        })?;
        for p in pongs {
            conn.queue(p);
        }
        conn.flush().await.map_err(ConnError::Io)?;
        if let Some(f) = first {
            return Ok(f);
        }
        if let ReadOutcome::Eof = outcome {
            return Ok(First::Closed);
        }
    }
}
