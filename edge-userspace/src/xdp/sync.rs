//! Keeps the kernel's routes map equal to a chain snapshot. `edge serve` calls it
//! at start and on every reload; the control socket will call it the same way.
//! Updates go in before removals so that a hostname that stays live never
//! has a moment without a route.

use std::collections::BTreeMap;

use crate::chain::Snapshot;

use super::{RouteAction, RouteTarget, Routes};

/// The routes a snapshot asks the kernel for, by lower-case hostname.
pub fn wanted(snapshot: &Snapshot) -> BTreeMap<String, RouteTarget> {
    snapshot
        .routes()
        .map(|route| {
            let action = if route.blocked {
                RouteAction::Drop
            } else {
                RouteAction::Pass
            };
            let target = RouteTarget {
                chain_id: route.chain_id,
                queue: 0,
                action,
            };
            (route.hostname.to_owned(), target)
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
    /// On an error the entries already written stay and are remembered, so the
    /// next call retries only what is still missing.
    pub fn apply(&mut self, routes: &mut Routes, snapshot: &Snapshot) -> anyhow::Result<usize> {
        let next = wanted(snapshot);
        let plan = plan(&self.installed, &next);
        let changed = plan.upserts.len() + plan.removals.len();
        for (host, target) in plan.upserts {
            routes.insert(&host, target)?;
            self.installed.insert(host, target);
        }
        for host in plan.removals {
            routes.remove(&host)?;
            self.installed.remove(&host);
        }
        Ok(changed)
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

    #[test]
    fn plan_of_equal_sets_is_empty() {
        let same = BTreeMap::from([("a.example".to_owned(), target(1, RouteAction::Pass))]);
        assert_eq!(plan(&same, &same), Plan::default());
    }
}
