//! The control socket: Cloudflare API v4 shaped JSON over HTTP/1.1 on a Unix
//! domain socket, the durable store behind it, and `edge ctl` in front of it.
//!
//! Every write runs the same way, one at a time: the handler turns the request
//! into [`Change`]s against the current state, the result is validated whole
//! and compiled, committed durably to the [`Store`], and only then made live
//! through [`Applier::apply`]. A rejected write changes nothing anywhere.

mod activation;
mod api;
pub mod cli;
pub mod client;
mod dry_run;
mod envelope;
mod ids;
mod router;
pub mod socket;
pub mod store;
mod verification;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyhow::Result;
use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::apply::{Applier, ApplyError, Write};
use crate::config::Config;
use crate::downstream::LocalCa;
use crate::metrics::Metrics;
use crate::routing::Routing;
use crate::state::{Change, State};
use crate::xdp::XdpRuntime;
pub use dry_run::{Body, dry_run};
pub use envelope::ApiError;
pub use socket::serve;
use store::Store;

/// The edge's state and the one writer that may change it; clones share both.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    /// The committed (durable and live) state, for readers that must not
    /// wait for a write in progress.
    state: ArcSwap<State>,
    routing: Arc<ArcSwap<Routing>>,
    writer: Mutex<Writer>,
    /// Every committed state, for the hostname verifier.
    published: watch::Sender<Arc<State>>,
    verifier: verification::VerifierSlot,
    /// Set once by `edge serve` (an embedding without XDP answers `/xdp`
    /// with 404).
    xdp: OnceLock<Arc<XdpRuntime>>,
    /// Set once by `edge serve`, for `/metrics`.
    metrics: OnceLock<Arc<Metrics>>,
}

struct Writer {
    store: Store,
    applier: Applier,
}

impl Control {
    /// Opens the store in the state directory (seeding it from the config's
    /// state on first start) and builds the live routing and certificates.
    pub fn start(config: &Config, ca: LocalCa) -> Result<Control> {
        let store = Store::open(&config.state_dir)?;
        let state = store.load_or_seed(&config.state)?;
        let applier = Applier::new(config, ca, &state)?;
        let state = Arc::new(state);
        Ok(Control {
            inner: Arc::new(Inner {
                state: ArcSwap::new(state.clone()),
                routing: applier.routing(),
                writer: Mutex::new(Writer { store, applier }),
                published: watch::Sender::new(state),
                verifier: Default::default(),
                xdp: OnceLock::new(),
                metrics: OnceLock::new(),
            }),
        })
    }

    pub fn routing(&self) -> Arc<ArcSwap<Routing>> {
        self.inner.routing.clone()
    }

    pub fn acceptor(&self) -> crate::downstream::TlsAcceptor {
        self.writer().applier.acceptor()
    }

    /// Every later write and reload keeps the XDP routes map in step, and
    /// `/xdp` drives `xdp`. Call it once.
    pub fn use_xdp(&self, xdp: Arc<XdpRuntime>) {
        self.writer().applier.use_xdp(xdp.clone());
        if self.inner.xdp.set(xdp).is_err() {
            tracing::warn!("the control API keeps the XDP runtime it was given first");
        }
    }

    /// The XDP runtime `/xdp` drives, once `edge serve` has handed it over.
    pub fn xdp(&self) -> Option<Arc<XdpRuntime>> {
        self.inner.xdp.get().cloned()
    }

    /// `/metrics` answers with `metrics`. Call it once.
    pub fn use_metrics(&self, metrics: Arc<Metrics>) {
        if self.inner.metrics.set(metrics).is_err() {
            tracing::warn!("the control API keeps the metrics it was given first");
        }
    }

    pub fn metrics(&self) -> Option<Arc<Metrics>> {
        self.inner.metrics.get().cloned()
    }

    /// Runs `change` (attach, detach, policy) as one write: never beside a
    /// state change, so an attach fills the routes map from the state that
    /// is live and stays live until it is done.
    pub(crate) fn xdp_write<R>(
        &self,
        change: impl FnOnce(&XdpRuntime) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let xdp = self.xdp().ok_or_else(api::no_xdp)?;
        let _writer = self.writer();
        change(&xdp)
    }

    /// The committed state.
    pub fn state(&self) -> Arc<State> {
        self.inner.state.load_full()
    }

    /// SIGHUP: the config's certificate files again, with the stored state
    /// (the config's `state` only seeds an empty store).
    pub fn reload(&self, config: &Config) -> Result<(), ApplyError> {
        let mut writer = self.writer();
        writer.applier.reload(config, &self.inner.state.load())
    }

    /// One write: `plan` turns the request into changes against the current
    /// state (and what to answer); they are validated, completed with the
    /// real-time checks this edge can answer itself, committed durably and
    /// made live, or refused with nothing changed.
    pub(crate) fn write<R>(
        &self,
        plan: impl FnOnce(&State) -> Result<(Vec<Change>, R), ApiError>,
    ) -> Result<R, ApiError> {
        let mut writer = self.writer();
        let current = self.inner.state.load_full();
        let (next, changes, answer) = prepare(&current, plan)?;
        let write = Write {
            previous: &current,
            changes: &changes,
        };
        self.commit(&mut writer, next, Some(write), |store, next| {
            store.commit(&changes, next)
        })?;
        Ok(answer)
    }

    /// Replaces the whole state (import): validated and compiled like any write.
    /// An import that keeps none of the current accounts and zones (`{}`, or
    /// another edge's state by mistake) deletes every tenant at once, so it is
    /// refused unless `replace_all` confirms it; the check runs under the
    /// writer's lock, against the state it would replace.
    pub(crate) fn replace(&self, next: State, replace_all: bool) -> Result<(), ApiError> {
        next.validate()?;
        let mut writer = self.writer();
        let current = self.inner.state.load();
        let keeps_nothing = current
            .accounts()
            .iter()
            .all(|a| next.accounts().get(&a.id).is_none())
            && current
                .zones()
                .iter()
                .all(|z| next.zones().get(&z.zone.id).is_none());
        let deletes = current.accounts().len() + current.zones().len();
        if keeps_nothing && deletes > 0 && !replace_all {
            return Err(ApiError::malformed(format!(
                "this import keeps none of the {} accounts and {} zones and would delete them all; \
                 send it with `?{}=true` (`edge ctl import --replace-all`) to confirm",
                current.accounts().len(),
                current.zones().len(),
                api::REPLACE_ALL,
            )));
        }
        self.commit(&mut writer, next, None, |store, next| store.replace(next))
    }

    fn commit(
        &self,
        writer: &mut Writer,
        next: State,
        write: Option<Write<'_>>,
        durable: impl FnOnce(&Store, &State) -> Result<()>,
    ) -> Result<(), ApiError> {
        let Writer { store, applier } = writer;
        applier.apply(&next, write, || durable(store, &next))?;
        let next = Arc::new(next);
        self.inner.state.store(next.clone());
        self.inner.published.send_replace(next);
        Ok(())
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A panicking writer changed nothing (the swap is its last step).
        self.inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A write up to its commit: `plan`'s changes applied to `current` and
/// validated, completed with the real-time checks this edge answers itself.
/// [`dry_run`] stops here too, so that the fuzz target runs what a write runs.
fn prepare<R>(
    current: &State,
    plan: impl FnOnce(&State) -> Result<(Vec<Change>, R), ApiError>,
) -> Result<(State, Vec<Change>, R), ApiError> {
    let (mut changes, answer) = plan(current)?;
    let mut next = current.apply_all(changes.iter().cloned())?;
    let observed = activation::local_checks(current, &next, &changes);
    if !observed.is_empty() {
        next = next.apply_all(observed.iter().cloned())?;
        changes.extend(observed);
    }
    Ok((next, changes, answer))
}
