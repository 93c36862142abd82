//! Keeps the kernel's routes map equal to a chain snapshot. `edge serve` calls it
//! at start, on every reload and on every control-socket write. Updates go in
//! before removals so that a hostname that stays live never has a moment
//! without a route.
//!
//! A write changes a few names of a million: when the snapshot was derived
//! from the one the map holds ([`Snapshot::changed_since`]), only the names
//! it changed are looked at; otherwise (start, attach, a rebuilt snapshot,
//! after a failure) the whole snapshot is compared by SNI hash.

use std::collections::HashMap;

use edge_common::sni;

use crate::chain::Snapshot;

use super::{RouteAction, RouteTarget, Routes};

/// The chain id of routes that send a flow to userspace: no chain has it
/// (ids start at 1), so the proxy resolves the name itself.
pub const USERSPACE_CHAIN: u32 = 0;

/// A route the snapshot asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// Lower-case; `*.example.com` for a wildcard.
    pub host: &'a str,
    pub target: RouteTarget,
}

fn target(chain_id: u32, action: RouteAction) -> RouteTarget {
    RouteTarget {
        chain_id,
        queue: 0,
        action,
    }
}

/// The routes a snapshot asks the kernel for, by SNI hash: every chain's
/// names, blocked names (drop), and names whose edge error would otherwise be
/// hidden by their wildcard's chain (passed to userspace).
pub fn wanted(snapshot: &Snapshot) -> HashMap<u64, Wanted<'_>> {
    let routes = snapshot.routes().map(|route| {
        let action = if route.blocked {
            RouteAction::Drop
        } else {
            RouteAction::Pass
        };
        (route.hostname, target(route.chain_id, action))
    });
    let shadowed = snapshot
        .shadowed()
        .map(|host| (host, target(USERSPACE_CHAIN, RouteAction::Pass)));
    routes
        .chain(shadowed)
        .map(|(host, target)| (sni::hash(host.as_bytes()), Wanted { host, target }))
        .collect()
}

/// The route the snapshot asks for under one name (as [`wanted`] holds it).
fn wanted_one(snapshot: &Snapshot, host: &str) -> Option<RouteTarget> {
    if let Some(route) = snapshot.route(host) {
        let action = if route.blocked {
            RouteAction::Drop
        } else {
            RouteAction::Pass
        };
        return Some(target(route.chain_id, action));
    }
    snapshot
        .is_shadowed(host)
        .then(|| target(USERSPACE_CHAIN, RouteAction::Pass))
}

/// What must change in the map.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New or changed routes, written first.
    pub upserts: Vec<(String, RouteTarget)>,
    /// Hostnames gone from the snapshot, removed after the upserts.
    pub removals: Vec<String>,
}

#[derive(Debug)]
struct Installed {
    host: Box<str>,
    target: RouteTarget,
}

/// The routes map as this process last wrote it, by SNI hash (the map's key).
#[derive(Debug, Default)]
pub struct RouteSync {
    installed: HashMap<u64, Installed>,
    /// The generation of the snapshot the map equals, when the last apply
    /// finished: the base that [`Snapshot::changed_since`] is asked about.
    synced: Option<u64>,
}

impl RouteSync {
    /// Brings `routes` to `snapshot`, returning how many entries changed:
    /// only the names the snapshot changed when it derives from the one the
    /// map holds, else the whole snapshot. A snapshot the maps cannot hold is
    /// refused with [`RoutesFull`](super::RoutesFull) before anything is
    /// written. On any other error the entries already written stay and are
    /// remembered, so the next call retries only what is still missing.
    pub fn apply(&mut self, routes: &mut Routes, snapshot: &Snapshot) -> anyhow::Result<usize> {
        let plan = match self.synced.and_then(|base| snapshot.changed_since(base)) {
            Some(names) => self.plan_names(snapshot, names),
            None => self.plan(snapshot),
        };
        self.execute(routes, snapshot, plan)
    }

    /// [`RouteSync::apply`] comparing the whole snapshot, whatever it derives from.
    pub fn apply_all(&mut self, routes: &mut Routes, snapshot: &Snapshot) -> anyhow::Result<usize> {
        let plan = self.plan(snapshot);
        self.execute(routes, snapshot, plan)
    }

    /// What must change to go from the installed routes to `snapshot`'s,
    /// comparing every name (no syscall).
    pub fn plan(&self, snapshot: &Snapshot) -> Plan {
        let next = wanted(snapshot);
        let upserts = next
            .iter()
            .filter(|(key, wanted)| {
                self.installed
                    .get(key)
                    .is_none_or(|installed| installed.target != wanted.target)
            })
            .map(|(_, wanted)| (wanted.host.to_owned(), wanted.target))
            .collect();
        let removals = self
            .installed
            .iter()
            .filter(|(key, _)| !next.contains_key(key))
            .map(|(_, installed)| installed.host.to_string())
            .collect();
        Plan { upserts, removals }
    }

    /// The same plan, looking only at `names` (every other name is as installed).
    fn plan_names(&self, snapshot: &Snapshot, names: &[Box<str>]) -> Plan {
        let mut plan = Plan::default();
        for host in names {
            let installed = self.installed.get(&sni::hash(host.as_bytes()));
            match wanted_one(snapshot, host) {
                Some(target) if installed.is_none_or(|i| i.target != target) => {
                    plan.upserts.push((host.to_string(), target));
                }
                Some(_) => {}
                None if installed.is_some() => plan.removals.push(host.to_string()),
                None => {}
            }
        }
        plan
    }

    fn execute(
        &mut self,
        routes: &mut Routes,
        snapshot: &Snapshot,
        plan: Plan,
    ) -> anyhow::Result<usize> {
        let added = plan
            .upserts
            .iter()
            .filter(|(host, _)| !self.installed.contains_key(&sni::hash(host.as_bytes())))
            .count();
        let needed = self.installed.len() + added - plan.removals.len();
        routes.check_fits(needed, snapshot.max_chain_id())?;
        // From here the map may end between two snapshots.
        self.synced = None;
        let changed = plan.upserts.len() + plan.removals.len();
        // Upserts first keep every staying name routed throughout; when the
        // old and the new names together would overflow the map, the gone
        // names make room first (they only lose their route early).
        let (before, after) = if self.installed.len() + added > routes.max_routes() as usize {
            (plan.removals, Vec::new())
        } else {
            (Vec::new(), plan.removals)
        };
        self.remove(routes, before)?;
        for (host, target) in plan.upserts {
            routes.insert(&host, target)?;
            let key = sni::hash(host.as_bytes());
            self.installed.insert(
                key,
                Installed {
                    host: host.into(),
                    target,
                },
            );
        }
        self.remove(routes, after)?;
        self.synced = Some(snapshot.generation());
        Ok(changed)
    }

    fn remove(&mut self, routes: &mut Routes, removals: Vec<String>) -> anyhow::Result<()> {
        for host in removals {
            routes.remove(&host)?;
            self.installed.remove(&sni::hash(host.as_bytes()));
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
            .iter()
            .map(|(key, installed)| (*key, &*installed.host))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Change;

    fn shops() -> crate::state::State {
        serde_json::from_value(serde_json::json!({
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
                    {"id": "c4", "hostname": "pending.elsewhere.com", "status": "pending"},
                    {"id": "c5", "hostname": "a.example", "status": "active"},
                    {"id": "c6", "hostname": "b.example", "status": "active"},
                    {"id": "c7", "hostname": "c.example", "status": "active"}
                ]
            }]
        }))
        .unwrap()
    }

    /// Blocks `a.example` (c5) and deletes `c.example` (c7).
    fn block_a_delete_c(state: &crate::state::State) -> [Change; 2] {
        let mut a = state
            .zone("zp")
            .unwrap()
            .custom_hostnames
            .get("c5")
            .unwrap()
            .clone();
        a.status = crate::state::HostnameStatus::Blocked;
        [
            Change::PutCustomHostname {
                zone_id: "zp".into(),
                custom_hostname: a,
            },
            Change::DeleteCustomHostname {
                zone_id: "zp".into(),
                id: "c7".into(),
            },
        ]
    }

    fn get<'a>(wanted: &'a HashMap<u64, Wanted<'a>>, host: &str) -> Option<RouteTarget> {
        wanted.get(&sni::hash(host.as_bytes())).map(|w| {
            assert_eq!(w.host, host);
            w.target
        })
    }

    /// Installs `snapshot`'s routes as a sync that wrote them would hold them.
    fn synced(snapshot: &Snapshot) -> RouteSync {
        let installed = wanted(snapshot)
            .into_iter()
            .map(|(key, w)| {
                let installed = Installed {
                    host: w.host.into(),
                    target: w.target,
                };
                (key, installed)
            })
            .collect();
        RouteSync {
            installed,
            synced: Some(snapshot.generation()),
        }
    }

    fn sorted(mut plan: Plan) -> Plan {
        plan.upserts.sort_by(|a, b| a.0.cmp(&b.0));
        plan.removals.sort();
        plan
    }

    #[test]
    fn plan_upserts_new_and_changed_and_removes_gone() {
        let state = shops();
        let before = Snapshot::build(&state);
        let add = Change::PutCustomHostname {
            zone_id: "zp".into(),
            custom_hostname: serde_json::from_value(serde_json::json!(
                {"id": "c8", "hostname": "d.example", "status": "active"}
            ))
            .unwrap(),
        };
        let next = state
            .apply_all(block_a_delete_c(&state).into_iter().chain([add]))
            .unwrap();
        let after = before.rebuild(&next);
        let plan = sorted(synced(&before).plan(&after));
        let d = after.resolve("d.example").unwrap().id;
        assert_eq!(
            plan.upserts,
            vec![
                ("a.example".to_owned(), target(0, RouteAction::Drop)),
                ("d.example".to_owned(), target(d, RouteAction::Pass)),
            ]
        );
        assert_eq!(plan.removals, vec!["c.example".to_owned()]);
    }

    /// The plan of a derived snapshot looks at its changed names only, and
    /// agrees with comparing everything.
    #[test]
    fn derived_snapshot_plans_its_changed_names() {
        let state = shops();
        let before = Snapshot::build(&state);
        let next = state.apply_all(block_a_delete_c(&state)).unwrap();
        let names = ["a.example".to_owned(), "c.example".to_owned()];
        let after = before.update(&next, &names, &[]);
        let changed = after.changed_since(before.generation()).unwrap();
        assert_eq!(changed.len(), 2);
        let sync = synced(&before);
        assert_eq!(
            sorted(sync.plan_names(&after, changed)),
            sorted(sync.plan(&after))
        );
        assert!(after.changed_since(after.generation()).is_none());
    }

    /// A pending name below an active wildcard answers 1016 in userspace; the
    /// kernel must not give it the wildcard's chain, so it gets a route of
    /// its own to userspace. Pending names without a wildcard stay unknown.
    #[test]
    fn names_shadowed_by_a_wildcard_go_to_userspace() {
        let snapshot = Snapshot::build(&shops());
        let wanted = wanted(&snapshot);
        let wildcard = snapshot.resolve("any.shops.com").unwrap().id;
        assert_eq!(
            get(&wanted, "*.shops.com"),
            Some(target(wildcard, RouteAction::Pass))
        );
        let userspace = Some(target(USERSPACE_CHAIN, RouteAction::Pass));
        assert_eq!(get(&wanted, "pending.shops.com"), userspace);
        assert_eq!(wanted_one(&snapshot, "pending.shops.com"), userspace);
        assert_eq!(
            get(&wanted, "blocked.shops.com"),
            Some(target(0, RouteAction::Drop))
        );
        assert_eq!(get(&wanted, "pending.elsewhere.com"), None);
        assert_eq!(wanted_one(&snapshot, "pending.elsewhere.com"), None);
        assert!(snapshot.resolve("pending.shops.com").is_err());
    }

    #[test]
    fn plan_of_the_installed_snapshot_is_empty() {
        let snapshot = Snapshot::build(&shops());
        assert_eq!(synced(&snapshot).plan(&snapshot), Plan::default());
    }
}
