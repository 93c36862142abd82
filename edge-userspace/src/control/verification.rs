//! The hostname verifier ([`crate::verify`]) attached to the control plane.
//!
//! The verifier follows the committed state on a watch channel that every
//! commit publishes to (API writes, imports and its own results alike), and
//! its status changes are one more [`Control::write`]: validated, durable and
//! live in the same atomic apply as an operator's write, so a hostname that
//! becomes active carries traffic at once and nothing it finds is lost in a
//! crash. There is no second write path.

use std::sync::{Arc, PoisonError, Weak};

use tokio::sync::watch;

use super::Control;
use crate::state::{Change, State};
use crate::verify::{StatusChange, StatusSink, Verifier, VerifyConfig, VerifyError};

/// Applies the verifier's findings through the control plane's one writer.
struct Sink(Control);

impl StatusSink for Sink {
    async fn apply(&self, changes: Vec<StatusChange>) -> anyhow::Result<()> {
        let control = self.0.clone();
        // The write waits for fsync and rebuilds routing: off the async workers.
        tokio::task::spawn_blocking(move || control.observe(&changes)).await?
    }
}

impl Control {
    /// Every state committed from now on, starting with the current one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<State>> {
        self.inner.published.subscribe()
    }

    /// Starts validating custom hostnames beyond this edge. The returned
    /// verifier is the only strong reference: the process keeps it while it
    /// serves and dropping it stops validation (the control plane holds it
    /// weakly for refreshes, so the two do not keep each other alive).
    pub fn start_verifier(&self, config: &VerifyConfig) -> Result<Arc<Verifier>, VerifyError> {
        let sink = Arc::new(Sink(self.clone()));
        let verifier = Arc::new(Verifier::spawn(config, self.subscribe(), sink)?);
        *self
            .inner
            .verifier
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Arc::downgrade(&verifier);
        Ok(verifier)
    }

    /// Cloudflare validates a custom hostname again when it is PATCHed: asks
    /// the verifier to check it now instead of when its back-off says. Runs in
    /// the background after the write committed (and published, so the
    /// verifier already sees the patched hostname), so a verifier busy with
    /// slow checks never holds up the API. Without a `verify` section there
    /// is nothing to ask: the write itself ran the checks this edge answers
    /// from its own zones.
    pub(crate) fn refresh(&self, zone_id: &str, custom_hostname_id: &str) {
        let verifier = self
            .inner
            .verifier
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .upgrade();
        let Some(verifier) = verifier else {
            return;
        };
        let (zone_id, id) = (zone_id.to_owned(), custom_hostname_id.to_owned());
        tokio::runtime::Handle::current().spawn(async move {
            match verifier.refresh(&zone_id, &id).await {
                Ok(()) => tracing::debug!(%zone_id, %id, "hostname validation refreshed"),
                // Blocked and pending-deletion hostnames are not validated.
                Err(error @ VerifyError::UnknownHostname { .. }) => {
                    tracing::debug!(%error, "no validation to refresh")
                }
                Err(error) => tracing::warn!(%error, "hostname validation refresh failed"),
            }
        });
    }

    /// The verifier's changes as one write on the newest state. A hostname
    /// deleted while its check ran has nothing left to record, so its change
    /// is dropped rather than failing the others (and no write is made when
    /// none is left).
    fn observe(&self, changes: &[StatusChange]) -> anyhow::Result<()> {
        if still_present(&self.state(), changes).is_empty() {
            return Ok(());
        }
        self.write(|state| Ok((still_present(state, changes), ())))?;
        for c in changes {
            tracing::info!(
                hostname = %c.hostname,
                from = ?c.from,
                to = ?c.to,
                errors = ?c.verification_errors,
                "custom hostname validation"
            );
        }
        Ok(())
    }
}

/// The writes for the `changes` whose hostname `state` still holds.
fn still_present(state: &State, changes: &[StatusChange]) -> Vec<Change> {
    changes
        .iter()
        .filter(|c| {
            state
                .zone(&c.zone_id)
                .is_some_and(|z| z.custom_hostnames.get(&c.custom_hostname_id).is_some())
        })
        .map(StatusChange::to_change)
        .collect()
}

/// The weak handle [`Control`] keeps; empty until a verifier starts.
pub(super) type VerifierSlot = std::sync::Mutex<Weak<Verifier>>;
