//! One sweep: list the App's deliveries back to the previous sweep's mark,
//! group the attempts by delivery id, and ask again, once, for each
//! webhook that no attempt delivered and that hookfan has not accepted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use super::SweepError;
use super::api::{AppApi, Delivery};
use super::stats::RedeliveryStats;
use crate::webhook::DeliveryIds;

/// Most pages read in one sweep (100 deliveries each).
const MAX_PAGES: usize = 1_000;

/// The next sweep looks this far behind the start of the previous one, so
/// that an attempt recorded late is not missed (the overlap costs nothing:
/// a redelivered webhook's 2xx attempt is in the list by then).
const MARK_OVERLAP: Duration = Duration::from_secs(60);

/// What a sweep found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Swept {
    /// Webhooks none of whose attempts succeeded.
    pub failed: usize,
    /// Of those, the ones hookfan had accepted all the same.
    pub accepted: usize,
    /// Redeliveries asked for.
    pub redelivered: usize,
    /// Whether the sweep went through everything back to its mark.
    pub complete: bool,
}

/// The attempts of one webhook seen in a sweep.
struct Webhook {
    /// The newest attempt: what a redelivery names.
    latest: u64,
    delivered: bool,
}

/// The sweeps of one node: the API, the delivery ids intake accepted, and
/// the mark the next sweep lists back to.
pub(super) struct Sweeper {
    pub api: AppApi,
    pub accepted: Arc<DeliveryIds>,
    pub stats: Arc<RedeliveryStats>,
    pub lookback: Duration,
    pub max_per_sweep: usize,
    /// Where the last complete sweep started, less the overlap.
    pub mark: Option<SystemTime>,
}

impl Sweeper {
    /// One sweep. The mark moves on only when it went through everything.
    pub(super) async fn sweep(&mut self) -> Result<Swept, SweepError> {
        let started = SystemTime::now();
        let since = self.mark.unwrap_or(started - self.lookback);
        let (failed, listed_all) = self.failed_since(since).await?;
        self.stats
            .failed_seen
            .fetch_add(failed.len() as u64, Relaxed);
        let mut swept = Swept {
            failed: failed.len(),
            ..Swept::default()
        };
        for (guid, id) in failed {
            if self.accepted.contains(&guid) {
                swept.accepted += 1;
                continue;
            }
            if swept.redelivered == self.max_per_sweep {
                break;
            }
            self.redeliver(id).await?;
            swept.redelivered += 1;
        }
        swept.complete = listed_all && swept.redelivered + swept.accepted == swept.failed;
        if swept.complete {
            self.mark = Some(started - MARK_OVERLAP);
        }
        Ok(swept)
    }

    /// The webhooks attempted since `since` that no attempt delivered, as
    /// (delivery id, newest attempt), oldest first; and whether the list
    /// was read back to `since` (not cut at [`MAX_PAGES`]).
    async fn failed_since(
        &self,
        since: SystemTime,
    ) -> Result<(Vec<(String, u64)>, bool), SweepError> {
        let mut seen: HashMap<String, Webhook> = HashMap::new();
        // Newest first, as listed; reversed at the end.
        let mut order = Vec::new();
        let mut url = self.api.first_page();
        for _ in 0..MAX_PAGES {
            let page = self.api.list(&url).await?;
            let reached_mark = take_page(&page.deliveries, since, &mut seen, &mut order);
            match page.next {
                Some(next) if !reached_mark && !page.deliveries.is_empty() => url = next,
                _ => return Ok((undelivered(order, &seen), true)),
            }
        }
        tracing::warn!(
            pages = MAX_PAGES,
            "redelivery sweep: the list of deliveries is longer than one sweep reads; \
             the next sweep goes on"
        );
        Ok((undelivered(order, &seen), false))
    }

    /// Asks for attempt `id` again, counted by outcome.
    async fn redeliver(&self, id: u64) -> Result<(), SweepError> {
        let s = &self.stats;
        let out = self.api.redeliver(id).await;
        let counter = match &out {
            Ok(()) => &s.requests_accepted,
            Err(SweepError::Refused { .. }) => &s.requests_refused,
            Err(SweepError::RateLimited(_)) => &s.requests_rate_limited,
            Err(SweepError::Failed(_)) => &s.requests_failed,
        };
        counter.fetch_add(1, Relaxed);
        out
    }
}

/// Adds a page's attempts made since `since` to `seen` (a delivery id's
/// first sighting to `order`); whether the page reached back past `since`.
fn take_page(
    page: &[Delivery],
    since: SystemTime,
    seen: &mut HashMap<String, Webhook>,
    order: &mut Vec<String>,
) -> bool {
    let mut reached = false;
    for d in page {
        // A time that does not parse counts as recent: better looked at.
        if d.at().is_some_and(|at| at < since) {
            reached = true;
            continue;
        }
        let w = seen.entry(d.guid.clone()).or_insert_with(|| {
            order.push(d.guid.clone());
            Webhook {
                latest: d.id,
                delivered: false,
            }
        });
        w.delivered |= d.succeeded();
    }
    reached
}

/// The undelivered webhooks of `order` (newest first), oldest first.
fn undelivered(order: Vec<String>, seen: &HashMap<String, Webhook>) -> Vec<(String, u64)> {
    order
        .into_iter()
        .rev()
        .filter_map(|guid| {
            let w = &seen[&guid];
            (!w.delivered).then(|| {
                let latest = w.latest;
                (guid, latest)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(id: u64, guid: &str, secs_ago: u64, status: u16) -> Delivery {
        let at = SystemTime::now() - Duration::from_secs(secs_ago);
        Delivery {
            id,
            guid: guid.to_owned(),
            delivered_at: humantime::format_rfc3339_seconds(at).to_string(),
            status_code: status,
        }
    }

    #[test]
    fn groups_by_guid_newest_attempt_oldest_webhook_first() {
        let since = SystemTime::now() - Duration::from_secs(100);
        let (mut seen, mut order) = (HashMap::new(), Vec::new());
        // Newest first, as GitHub lists them.
        let page = [
            attempt(6, "c", 1, 503),
            attempt(5, "a", 2, 200),
            attempt(4, "b", 3, 0),
            attempt(3, "b", 4, 502),
            attempt(2, "a", 5, 0),
            attempt(1, "d", 200, 0),
        ];
        assert!(take_page(&page, since, &mut seen, &mut order));
        assert_eq!(
            undelivered(order, &seen),
            [("b".to_owned(), 4), ("c".to_owned(), 6)]
        );
    }

    #[test]
    fn a_page_within_the_mark_goes_on() {
        let since = SystemTime::now() - Duration::from_secs(100);
        let (mut seen, mut order) = (HashMap::new(), Vec::new());
        let unparsable = Delivery {
            delivered_at: "yesterday".to_owned(),
            ..attempt(2, "x", 0, 0)
        };
        assert!(!take_page(
            &[attempt(1, "a", 5, 0), unparsable],
            since,
            &mut seen,
            &mut order
        ));
        assert_eq!(order, ["a", "x"]);
    }
}
