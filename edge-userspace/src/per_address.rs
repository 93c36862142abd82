//! Per-client-address caps: what one address may hold at once, so that one client (or one
//! attacker) cannot take what every client shares (a listener's connections, an origin's
//! in-flight slots).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Things held per client address (connections, requests to one origin), capped: one
/// semaphore per address that holds something, dropped with its last holder.
pub struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

impl PerAddress {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::default(),
        })
    }

    fn semaphore(&self, ip: IpAddr) -> Arc<Semaphore> {
        let mut open = self.open.lock().expect("per-address lock poisoned");
        open.entry(ip)
            .or_insert_with(|| Arc::new(Semaphore::new(self.max)))
            .clone()
    }

    /// Counts one for `ip` until the guard drops; `None` when `ip` has its maximum.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<AddressGuard> {
        let ip = canonical(ip);
        let permit = self.semaphore(ip).try_acquire_owned().ok();
        let guard = AddressGuard(self.clone(), ip, permit);
        guard.2.is_some().then_some(guard)
    }

    /// Counts one for `ip` once one of its others ends, if it has its maximum; waits at most
    /// until `deadline` (`None` then).
    pub async fn admit_by(
        self: &Arc<Self>,
        ip: IpAddr,
        deadline: tokio::time::Instant,
    ) -> Option<AddressGuard> {
        let ip = canonical(ip);
        let semaphore = self.semaphore(ip);
        let permit = tokio::time::timeout_at(deadline, semaphore.acquire_owned())
            .await
            .ok()
            .map(|permit| permit.expect("per-address semaphores are never closed"));
        // Made even without a permit: its drop forgets the address if nothing else holds it.
        let guard = AddressGuard(self.clone(), ip, permit);
        guard.2.is_some().then_some(guard)
    }
}

/// IPv4-mapped IPv6 addresses count as their IPv4 address.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// One of an address's count.
pub struct AddressGuard(Arc<PerAddress>, IpAddr, Option<OwnedSemaphorePermit>);

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().expect("per-address lock poisoned");
        drop(self.2.take());
        // Only the map holds it: no permit out, nobody waiting.
        if open.get(&self.1).is_some_and(|s| Arc::strong_count(s) == 1) {
            open.remove(&self.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_maximum_and_its_slots_back() {
        let per = PerAddress::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let first = per.admit(ip).unwrap();
        let _second = per.admit(mapped).unwrap();
        assert!(
            per.admit(ip).is_none(),
            "the mapped form is the same address"
        );
        assert!(per.admit("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert!(per.admit(ip).is_some());
        assert!(per.open.lock().unwrap().len() <= 2);
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_slot_its_address_frees_or_gives_up() {
        let per = PerAddress::new(1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let held = per.admit(ip).unwrap();
        let soon = || tokio::time::Instant::now() + std::time::Duration::from_millis(50);
        assert!(
            per.admit_by(ip, soon()).await.is_none(),
            "gave up at the deadline"
        );
        let waiting = {
            let per = per.clone();
            tokio::spawn(async move { per.admit_by(ip, soon()).await.is_some() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        drop(held);
        assert!(waiting.await.unwrap(), "took the freed slot");
        assert!(
            per.open.lock().unwrap().is_empty(),
            "nothing left for the address"
        );
    }
}
