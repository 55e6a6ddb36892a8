//! What a [`Subscriber`](super::Subscriber) yields: events, and what
//! happened to the connection between them.

use std::time::Duration;

use super::Position;

/// An event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// The message exactly as the server sent it.
    pub json: String,
    /// `url`.
    pub url: String,
    /// `type`.
    pub kind: String,
    /// `delivery_id` (may be empty).
    pub delivery_id: String,
    /// `timestamp`.
    pub timestamp: String,
    /// `seq` (absent from webhook-sprinkler).
    pub seq: Option<u64>,
}

/// Events may have been missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The last position seen before the gap.
    pub after: Option<Position>,
    /// The last event's `timestamp` before the gap.
    pub last_event_at: Option<String>,
    /// The server's `resume_error` (`unknown_epoch`, `too_old`), or
    /// `no_resume` when the server does not resume (webhook-sprinkler).
    pub reason: String,
}

impl Gap {
    /// One line for people.
    pub fn describe(&self) -> String {
        let from = match &self.after {
            Some(p) => format!("after seq {} (epoch {})", p.seq, p.epoch),
            None => "since the previous connection".to_owned(),
        };
        let at = self
            .last_event_at
            .as_deref()
            .map(|t| format!(", last event received at {t}"))
            .unwrap_or_default();
        format!(
            "events {from}{at} may have been missed: the server could not replay them ({})",
            self.reason
        )
    }
}

/// What a [`Subscriber`](super::Subscriber) has to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// An event.
    Event(ReceivedEvent),
    /// Subscribed, on `server`; `resumed` when a resume was asked.
    Connected {
        /// The server's URL.
        server: String,
        /// Whether the server replayed what was missed (`None`: nothing to
        /// resume).
        resumed: Option<bool>,
        /// The server's `warnings`.
        warnings: Vec<String>,
    },
    /// Events may have been missed (then [`Update::Connected`] follows).
    Gap(Gap),
    /// The connection ended or could not be made; the next attempt is in
    /// `retry_in`.
    Disconnected {
        /// The server's URL.
        server: String,
        /// What happened.
        error: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_say_what_may_be_missing() {
        let g = Gap {
            after: Some(Position {
                epoch: "e1".into(),
                seq: 41,
            }),
            last_event_at: Some("2026-11-27T00:00:00Z".into()),
            reason: "unknown_epoch".into(),
        };
        assert_eq!(
            g.describe(),
            "events after seq 41 (epoch e1), last event received at 2026-11-27T00:00:00Z may have been missed: the server could not replay them (unknown_epoch)"
        );
    }
}
