//! Per-client-address caps: what one address may hold at once, so that one client (or one
//! attacker) cannot take what every client shares (a listener's connections, an origin's
//! in-flight slots).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Things held per client address (connections, requests to one origin), capped.
pub struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::default(),
        })
    }

    /// Counts one for `ip` until the guard drops; `None` when `ip` has its maximum.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<AddressGuard> {
        let ip = canonical(ip);
        let mut open = self.open.lock().expect("per-address lock poisoned");
        let count = open.entry(ip).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressGuard(self.clone(), ip))
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
pub struct AddressGuard(Arc<PerAddress>, IpAddr);

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().expect("per-address lock poisoned");
        if let Some(count) = open.get_mut(&self.1) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.1);
            }
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
    }
}
