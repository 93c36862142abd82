//! The verifier task: knows which hostnames await validation (from the
//! control plane's state), runs their checks when the back-off schedule says
//! so, and reports what changed to a [`StatusSink`].
//!
//! Checks run concurrently, at most [`VerifyConfig::concurrency`] at once,
//! each under its own deadline ([`VerifyConfig::check_deadline`]); the task
//! keeps scheduling, following the state and answering refreshes while they
//! run, so one customer's DNS that never answers stalls nobody else's check.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;

use super::{Checker, Retry, VerifyConfig, VerifyError};
use crate::state::activation::transition;
use crate::state::{
    Change, CnameCheck, CustomHostname, Diff, HostnameStatus, Observation, State, Table,
};

/// One hostname's status change, found by a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub zone_id: String,
    pub custom_hostname_id: String,
    pub hostname: String,
    pub from: HostnameStatus,
    /// The status and errors the activation state machine gives the
    /// hostname as the verifier saw it.
    pub to: HostnameStatus,
    pub verification_errors: Vec<String>,
    /// The evidence.
    pub observation: Observation,
}

impl StatusChange {
    /// The write to apply: the state machine runs again on the newest state,
    /// so an operator's change made while the check ran (a block, a new
    /// hostname name) is never overwritten by a stale verdict.
    pub fn to_change(&self) -> Change {
        Change::Observe {
            zone_id: self.zone_id.clone(),
            custom_hostname_id: self.custom_hostname_id.clone(),
            observation: self.observation.clone(),
        }
    }
}

/// Where the verifier's findings go: the control plane's atomic apply.
pub trait StatusSink: Send + Sync + 'static {
    /// Applies all `changes` (their [`StatusChange::to_change`]) in one
    /// atomic write, makes it durable, and publishes the new state on the
    /// verifier's watch channel before returning, so an activated hostname
    /// carries traffic at once and the verifier sees its own result. On
    /// `Err` the verifier checks those hostnames again after
    /// [`VerifyConfig::error_retry`].
    fn apply(&self, changes: Vec<StatusChange>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The running verifier; dropping it stops the task.
pub struct Verifier {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

enum Command {
    Refresh {
        zone_id: String,
        id: String,
        reply: oneshot::Sender<Result<(), VerifyError>>,
    },
}

impl Verifier {
    /// Starts the verifier on the current tokio runtime. `states` carries
    /// the control plane's current state; every hostname that is `pending`,
    /// `active` or `moved` in it is watched, a new one checked at once.
    pub fn spawn<S: StatusSink>(
        config: &VerifyConfig,
        states: watch::Receiver<Arc<State>>,
        sink: Arc<S>,
    ) -> Result<Verifier, VerifyError> {
        let checker = Arc::new(Checker::new(config)?);
        let (commands, receiver) = mpsc::channel(64);
        let task = Task {
            checker,
            config: config.clone(),
            states,
            sink,
            tracks: HashMap::new(),
            seen: Arc::default(),
            queue: Queue::default(),
            running: JoinSet::new(),
            in_flight: HashMap::new(),
            again: HashSet::new(),
        };
        Ok(Verifier {
            commands,
            task: tokio::spawn(task.run(receiver)),
        })
    }

    /// Checks the hostname now instead of when the back-off says, and starts
    /// its schedule again (the customer says they fixed their DNS). Returns
    /// once the check is under way; its result reaches the sink.
    pub async fn refresh(
        &self,
        zone_id: &str,
        custom_hostname_id: &str,
    ) -> Result<(), VerifyError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Refresh {
                zone_id: zone_id.to_string(),
                id: custom_hostname_id.to_string(),
                reply,
            })
            .await
            .map_err(|_| VerifyError::Stopped)?;
        answer.await.map_err(|_| VerifyError::Stopped)?
    }

    /// Stops the task and waits until it has let go of the sink, so that
    /// whatever the sink holds (the control plane's store) is released.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Key = (String, String);

/// What the verifier remembers of one watched hostname.
struct Track {
    hostname: String,
    /// The status the hostname has, or is about to have once the sink applies
    /// the verifier's own change.
    status: HostnameStatus,
    retry: Retry,
    due: Option<Instant>,
}

impl Track {
    fn new(ch: &CustomHostname, now: Instant) -> Track {
        Track {
            hostname: ch.hostname.clone(),
            status: ch.status,
            retry: Retry::start(now.into_std()),
            due: Some(now),
        }
    }

    fn restart(&mut self, now: Instant) {
        self.retry = Retry::start(now.into_std());
        self.due = Some(now);
    }

    /// Plans the next check after one made at `now`.
    fn checked(&mut self, now: Instant, config: &VerifyConfig) {
        self.due = match self.status {
            HostnameStatus::Active => Some(now + config.active_recheck()),
            _ => {
                self.retry.tried(now.into_std());
                self.retry.next_due().map(Instant::from_std)
            }
        };
    }
}

struct Task<S> {
    checker: Arc<Checker>,
    config: VerifyConfig,
    states: watch::Receiver<Arc<State>>,
    sink: Arc<S>,
    tracks: HashMap<Key, Track>,
    /// The state `tracks` follows.
    seen: Arc<State>,
    queue: Queue,
    /// The checks under way.
    running: JoinSet<Checked>,
    /// Which hostname each running check is for.
    in_flight: HashMap<tokio::task::Id, Key>,
    /// Hostnames refreshed while their check ran: checked again once it ends.
    again: HashSet<Key>,
}

/// A finished check: the hostname as it was checked and what was observed.
type Checked = (Key, CustomHostname, Observation);

/// When tracks are due, earliest first, so that finding the due ones costs
/// those, not a walk of every watched hostname. An entry whose track has
/// since been rescheduled or dropped is stale and skipped.
#[derive(Default)]
struct Queue(BinaryHeap<Reverse<(Instant, Key)>>);

impl Queue {
    fn schedule(&mut self, key: &Key, track: &Track) {
        if let Some(at) = track.due {
            self.0.push(Reverse((at, key.clone())));
        }
    }

    fn is_current(tracks: &HashMap<Key, Track>, at: Instant, key: &Key) -> bool {
        tracks.get(key).is_some_and(|t| t.due == Some(at))
    }

    /// The next track due at `now`, if any.
    fn take_due(&mut self, tracks: &HashMap<Key, Track>, now: Instant) -> Option<Key> {
        while let Some(Reverse((at, _))) = self.0.peek()
            && *at <= now
        {
            let Reverse((at, key)) = self.0.pop()?;
            if Self::is_current(tracks, at, &key) {
                return Some(key);
            }
        }
        None
    }

    /// When the next track is due.
    fn next(&mut self, tracks: &HashMap<Key, Track>) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.0.peek() {
            if Self::is_current(tracks, *at, key) {
                return Some(*at);
            }
            self.0.pop();
        }
        None
    }
}

impl<S: StatusSink> Task<S> {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        self.reconcile(Instant::now());
        loop {
            self.start_due();
            // With every slot taken, the next due check waits for a slot.
            let next = if self.running.len() < self.config.concurrency {
                self.queue.next(&self.tracks)
            } else {
                None
            };
            tokio::select! {
                Some(joined) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    let mut finished = vec![joined];
                    while let Some(more) = self.running.try_join_next_with_id() {
                        finished.push(more);
                    }
                    self.finish(finished).await;
                }
                changed = self.states.changed() => match changed {
                    Ok(()) => self.reconcile(Instant::now()),
                    Err(_) => return,
                },
                command = commands.recv() => match command {
                    Some(Command::Refresh { zone_id, id, reply }) => {
                        let _ = reply.send(self.refresh(zone_id, id));
                    }
                    None => return,
                },
                _ = sleep_until(next) => {}
            }
        }
    }

    /// Follows the control plane's state: watches hostnames awaiting or
    /// holding validation, forgets deleted or blocked ones, and starts over
    /// for one whose name or status an operator changed. Only what changed
    /// since the state seen last is looked at: the zones, and in each the
    /// hostnames the two states do not share.
    fn reconcile(&mut self, now: Instant) {
        let next = self.states.borrow_and_update().clone();
        let previous = std::mem::replace(&mut self.seen, next.clone());
        let empty = Table::default();
        for zone in next.zones() {
            let id = &zone.zone.id;
            let before = previous.zone(id).map_or(&empty, |z| &z.custom_hostnames);
            for change in before.diff(&zone.custom_hostnames) {
                match change {
                    Diff::Removed(ch) => {
                        self.tracks.remove(&(id.clone(), ch.id.clone()));
                    }
                    Diff::Added(ch) | Diff::Changed(_, ch) => self.watch(id, ch, now),
                }
            }
        }
        for zone in previous.zones() {
            if next.zone(&zone.zone.id).is_none() {
                for ch in &zone.custom_hostnames {
                    self.tracks.remove(&(zone.zone.id.clone(), ch.id.clone()));
                }
            }
        }
    }

    fn watch(&mut self, zone_id: &str, ch: &CustomHostname, now: Instant) {
        let key = (zone_id.to_owned(), ch.id.clone());
        if !matches!(
            ch.status,
            HostnameStatus::Pending | HostnameStatus::Active | HostnameStatus::Moved
        ) {
            self.tracks.remove(&key);
            return;
        }
        match self.tracks.get(&key) {
            Some(t) if t.hostname == ch.hostname && t.status == ch.status => {}
            _ => {
                let track = Track::new(ch, now);
                self.queue.schedule(&key, &track);
                self.tracks.insert(key, track);
            }
        }
    }

    fn refresh(&mut self, zone_id: String, id: String) -> Result<(), VerifyError> {
        // The control plane may have published the hostname an instant ago.
        self.reconcile(Instant::now());
        let key = (zone_id, id);
        match self.tracks.get_mut(&key) {
            Some(_) if self.in_flight.values().any(|k| *k == key) => {
                self.again.insert(key);
                Ok(())
            }
            Some(track) => {
                track.restart(Instant::now());
                self.queue.schedule(&key, track);
                Ok(())
            }
            None => Err(VerifyError::UnknownHostname {
                zone_id: key.0,
                id: key.1,
            }),
        }
    }

    /// Starts the due checks while a slot is free. A check that misses its
    /// deadline or gets no answer is an [`Observation::Unanswered`].
    fn start_due(&mut self) {
        let state = self.states.borrow().clone();
        while self.running.len() < self.config.concurrency {
            let Some(key) = self.queue.take_due(&self.tracks, Instant::now()) else {
                return;
            };
            // Still running (a check can outlast `error_retry`): its end
            // schedules the next one.
            if self.in_flight.values().any(|k| *k == key) {
                continue;
            }
            let Some(ch) = find(&state, &key) else {
                self.tracks.remove(&key);
                continue;
            };
            // Replaced when the check concludes; bounds the repeats of one
            // that never does (its task panicked).
            if let Some(track) = self.tracks.get_mut(&key) {
                track.due = Some(Instant::now() + self.config.error_retry());
                self.queue.schedule(&key, track);
            }
            let (checker, state, id) = (self.checker.clone(), state.clone(), key.clone());
            let deadline = self.config.check_deadline();
            let task = self.running.spawn(async move {
                let checked = tokio::time::timeout(deadline, checker.observe(&state, &key.0, &ch));
                let observation = match checked.await {
                    Ok(Ok(observation)) => observation,
                    Ok(Err(error)) => Observation::Unanswered {
                        reason: error.to_string(),
                    },
                    Err(_) => Observation::Unanswered {
                        reason: VerifyError::Deadline {
                            hostname: ch.hostname.clone(),
                            ms: deadline.as_millis(),
                        }
                        .to_string(),
                    },
                };
                (key, ch, observation)
            });
            self.in_flight.insert(task.id(), id);
        }
    }

    /// Concludes finished checks and reports the changes they found in one batch.
    async fn finish(&mut self, finished: Vec<Result<(tokio::task::Id, Checked), JoinError>>) {
        let state = self.states.borrow().clone();
        let mut changes = Vec::new();
        for joined in finished {
            let (key, ch, observation) = match joined {
                Ok((id, checked)) => {
                    self.in_flight.remove(&id);
                    checked
                }
                // Panicked: its track retries after `error_retry`.
                Err(error) => {
                    self.in_flight.remove(&error.id());
                    continue;
                }
            };
            if let Some(change) = self.conclude(&key, &ch, observation) {
                changes.push(change);
            }
            if self.again.remove(&key)
                && let Some(track) = self.tracks.get_mut(&key)
            {
                track.restart(Instant::now());
                self.queue.schedule(&key, track);
            }
        }
        if changes.is_empty() {
            return;
        }
        let keys: Vec<Key> = changes
            .iter()
            .map(|c| (c.zone_id.clone(), c.custom_hostname_id.clone()))
            .collect();
        if let Err(error) = self.sink.apply(changes).await {
            tracing::warn!(%error, "the control plane refused hostname status changes; checking again later");
            let retry_at = Instant::now() + self.config.error_retry();
            for key in keys {
                if let (Some(track), Some(ch)) = (self.tracks.get_mut(&key), find(&state, &key)) {
                    track.status = ch.status;
                    track.due = Some(retry_at);
                    self.queue.schedule(&key, track);
                }
            }
        }
    }

    /// Turns one check's result into the change to report, if any, and
    /// plans the hostname's next check.
    fn conclude(
        &mut self,
        key: &Key,
        ch: &CustomHostname,
        observation: Observation,
    ) -> Option<StatusChange> {
        let now = Instant::now();
        let track = self.tracks.get_mut(key)?;
        match &observation {
            Observation::Unanswered { reason } => {
                tracing::warn!(hostname = %ch.hostname, %reason, "hostname validation check failed");
            }
            Observation::Cname { result }
                if ch.status == HostnameStatus::Active
                    && *result != CnameCheck::Provider
                    && !ch.cname_observed =>
            {
                tracing::debug!(hostname = %ch.hostname, "active by pre-validation, DNS not pointing here yet");
                track.checked(now, &self.config);
                self.queue.schedule(key, track);
                return None;
            }
            _ => {}
        }
        let next = transition(ch, &observation);
        let changed = next.changes(ch);
        if next.status != track.status {
            track.status = next.status;
            track.retry = Retry::start(now.into_std());
        }
        track.checked(now, &self.config);
        self.queue.schedule(key, track);
        changed.then(|| StatusChange {
            zone_id: key.0.clone(),
            custom_hostname_id: key.1.clone(),
            hostname: ch.hostname.clone(),
            from: ch.status,
            to: next.status,
            verification_errors: next.verification_errors,
            observation,
        })
    }
}

fn find(state: &State, (zone_id, id): &Key) -> Option<CustomHostname> {
    state.zone(zone_id)?.custom_hostnames.get(id).cloned()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
