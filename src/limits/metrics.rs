//! What the connection limiter reports to `/metrics`.

use crate::metrics::{Place, Report, Source};

use super::ConnLimiter;

impl Source for ConnLimiter {
    fn place(&self) -> Place {
        Place::Connections
    }

    fn report(&self, out: &mut Report<'_, '_>) -> std::fmt::Result {
        out.connection_slots(self.counts().total)
    }
}
