//! What the listener's TLS reports to `/metrics`: when its certificate
//! expires, and how its ACME client's orders went.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::acme::AcmeStats;
use super::server::CertStore;
use crate::metrics::{Place, Report, Source};

/// The listener's certificate, and the ACME client's counters (with ACME).
pub(crate) struct TlsFigures {
    pub(crate) store: Arc<CertStore>,
    pub(crate) acme: Option<Arc<AcmeStats>>,
}

impl Source for TlsFigures {
    fn place(&self) -> Place {
        Place::Tls
    }

    fn report(&self, out: &mut Report<'_, '_>) -> std::fmt::Result {
        out.gauge(
            "tls_certificate_not_after_timestamp_seconds",
            "When the certificate the listener presents expires (0: none yet)",
            self.store.not_after().unwrap_or(0),
        )?;
        let Some(a) = &self.acme else {
            return Ok(());
        };
        out.counters_by(
            "acme_orders",
            "ACME certificate orders by result",
            "result",
            [
                ("issued", a.issued.load(Relaxed)),
                ("failed", a.failed.load(Relaxed)),
            ],
        )
    }
}
