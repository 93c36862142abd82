//! Keeps the kernel's routes map equal to a chain snapshot. `edge serve` calls it
//! at start and on every reload; the control socket will call it the same way.
//! Updates go in before removals so that a hostname that stays live never
//! has a moment without a route.

use std::collections::{BTreeMap, HashMap};

use crate::chain::Snapshot;

use super::{RouteAction, RouteTarget, Routes, route_key};

/// The chain id of routes that send a flow to userspace: no chain has it
/// (ids start at 1), so the proxy resolves the name itself.
pub const USERSPACE_CHAIN: u32 = 0;

/// The routes a snapshot asks the kernel for, by lower-case hostname: every
/// chain's names, blocked names (drop), and names whose edge error would
/// otherwise be hidden by their wildcard's chain (passed to userspace).
pub fn wanted(snapshot: &Snapshot) -> BTreeMap<String, RouteTarget> {
    let routes = snapshot.routes().map(|route| {
        let action = if route.blocked {
            RouteAction::Drop
        } else {
            RouteAction::Pass
        };
        (route.hostname, route.chain_id, action)
    });
    let shadowed = snapshot
        .shadowed()
        .map(|hostname| (hostname, USERSPACE_CHAIN, RouteAction::Pass));
    routes
        .chain(shadowed)
        .map(|(hostname, chain_id, action)| {
            let target = RouteTarget {
                chain_id,
                queue: 0,
                action,
            };
            (hostname.to_owned(), target)
        })
        .collect()
}

/// What must change to go from `current` to `next`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New or changed routes, written first.
    pub upserts: Vec<(String, RouteTarget)>,
    /// Hostnames gone from the snapshot, removed after the upserts.
    pub removals: Vec<String>,
}

pub fn plan(current: &BTreeMap<String, RouteTarget>, next: &BTreeMap<String, RouteTarget>) -> Plan {
    let upserts = next
        .iter()
        .filter(|(host, target)| current.get(*host) != Some(*target))
        .map(|(host, target)| (host.clone(), *target))
        .collect();
    let removals = current
        .keys()
        .filter(|host| !next.contains_key(*host))
        .cloned()
        .collect();
    Plan { upserts, removals }
}

/// The routes map as this process last wrote it.
#[derive(Debug, Default)]
pub struct RouteSync {
    installed: BTreeMap<String, RouteTarget>,
}

impl RouteSync {
    /// Brings `routes` to `snapshot`, returning how many entries changed.
    /// A snapshot the maps cannot hold is refused with [`RoutesFull`](super::RoutesFull) before
    /// anything is written. On any other error the entries already written
    /// stay and are remembered, so the next call retries only what is still
    /// missing.
    pub fn apply(&mut self, routes: &mut Routes, snapshot: &Snapshot) -> anyhow::Result<usize> {
        let next = wanted(snapshot);
        routes.check_fits(next.len(), snapshot.max_chain_id())?;
        let plan = plan(&self.installed, &next);
        let changed = plan.upserts.len() + plan.removals.len();
        // Upserts first keep every staying name routed throughout; when the
        // old and the new names together would overflow the map, the gone
        // names make room first (they only lose their route early).
        let added = plan
            .upserts
            .iter()
            .filter(|(host, _)| !self.installed.contains_key(host))
            .count();
        let (before, after) = if self.installed.len() + added > routes.max_routes() as usize {
            (plan.removals, Vec::new())
        } else {
            (Vec::new(), plan.removals)
        };
        self.remove(routes, before)?;
        for (host, target) in plan.upserts {
            routes.insert(&host, target)?;
            self.installed.insert(host, target);
        }
        self.remove(routes, after)?;
        Ok(changed)
    }

    fn remove(&mut self, routes: &mut Routes, removals: Vec<String>) -> anyhow::Result<()> {
        for host in removals {
            routes.remove(&host)?;
            self.installed.remove(&host);
        }
        Ok(())
    }

    /// How many routes this process has in the kernel map.
    pub fn installed(&self) -> usize {
        self.installed.len()
    }

    /// The name behind each installed key, for showing the kernel's map
    /// (which holds SNI hashes only).
    pub fn names(&self) -> HashMap<u64, &str> {
        self.installed
            .keys()
            .filter_map(|host| Some((route_key(host).ok()?, host.as_str())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(chain_id: u32, action: RouteAction) -> RouteTarget {
        RouteTarget {
            chain_id,
            queue: 0,
            action,
        }
    }

    #[test]
    fn plan_upserts_new_and_changed_and_removes_gone() {
        let current = BTreeMap::from([
            ("a.example".to_owned(), target(1, RouteAction::Pass)),
            ("b.example".to_owned(), target(2, RouteAction::Pass)),
            ("c.example".to_owned(), target(3, RouteAction::Pass)),
        ]);
        let next = BTreeMap::from([
            ("a.example".to_owned(), target(1, RouteAction::Pass)),
            ("b.example".to_owned(), target(0, RouteAction::Drop)),
            ("d.example".to_owned(), target(4, RouteAction::Pass)),
        ]);
        let plan = plan(&current, &next);
        assert_eq!(
            plan.upserts,
            vec![
                ("b.example".to_owned(), target(0, RouteAction::Drop)),
                ("d.example".to_owned(), target(4, RouteAction::Pass)),
            ]
        );
        assert_eq!(plan.removals, vec!["c.example".to_owned()]);
    }

    /// A pending name below an active wildcard answers 1016 in userspace; the
    /// kernel must not give it the wildcard's chain, so it gets a route of
    /// its own to userspace. Pending names without a wildcard stay unknown.
    #[test]
    fn names_shadowed_by_a_wildcard_go_to_userspace() {
        let state: crate::state::State = serde_json::from_value(serde_json::json!({
            "accounts": [{"id": "acct-provider", "name": "Provider"}],
            "zones": [{
                "zone": {"id": "zp", "name": "saasprovider.com", "account": {"id": "acct-provider"}},
                "dns_records": [
                    {"id": "r1", "type": "CNAME", "name": "customers.saasprovider.com", "content": "origin.saasprovider.com", "proxied": true},
                    {"id": "r2", "type": "A", "name": "origin.saasprovider.com", "content": "192.0.2.1", "proxied": true}
                ],
                "custom_hostname_settings": {"cname_target": "customers.saasprovider.com"},
                "fallback_origin": {"origin": "origin.saasprovider.com", "status": "active"},
                "custom_hostnames": [
                    {"id": "c1", "hostname": "*.shops.com", "status": "active"},
                    {"id": "c2", "hostname": "pending.shops.com", "status": "pending"},
                    {"id": "c3", "hostname": "blocked.shops.com", "status": "blocked"},
                    {"id": "c4", "hostname": "pending.elsewhere.com", "status": "pending"}
                ]
            }]
        }))
        .unwrap();
        let snapshot = Snapshot::build(&state);
        let wanted = wanted(&snapshot);
        let wildcard = snapshot.resolve("any.shops.com").unwrap().id;
        assert_eq!(wanted["*.shops.com"], target(wildcard, RouteAction::Pass));
        assert_eq!(
            wanted["pending.shops.com"],
            target(USERSPACE_CHAIN, RouteAction::Pass)
        );
        assert_eq!(wanted["blocked.shops.com"], target(0, RouteAction::Drop));
        assert!(!wanted.contains_key("pending.elsewhere.com"));
        assert!(snapshot.resolve("pending.shops.com").is_err());
    }

    #[test]
    fn plan_of_equal_sets_is_empty() {
        let same = BTreeMap::from([("a.example".to_owned(), target(1, RouteAction::Pass))]);
        assert_eq!(plan(&same, &same), Plan::default());
    }
}
