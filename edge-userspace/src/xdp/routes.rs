//! Host name → chain routes: the one place that writes the ROUTES map, used
//! by `edge xdp attach`, by the zone-snapshot sync and by the control socket.

use aya::maps::{Array, HashMap, MapData};
use edge_common::maps::{ACTION_DROP, ACTION_PASS, Config, Route};
use edge_common::sni;

const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAction {
    /// Classify the flow into the chain and let it through.
    Pass,
    /// The host name is blocked: XDP drops its ClientHellos.
    Drop,
}

/// Where a host name's flows go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteTarget {
    pub chain_id: u32,
    /// The proxy's accept queue for the chain; XDP records it, the proxy uses it.
    pub queue: u16,
    pub action: RouteAction,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostnameError {
    #[error("host name is empty")]
    Empty,
    #[error("host name {0:?} is longer than {MAX_NAME} bytes")]
    TooLong(String),
    #[error("host name {0:?} has an empty label or a trailing dot")]
    EmptyLabel(String),
    #[error("host name {0:?} has a label longer than {MAX_LABEL} bytes")]
    LabelTooLong(String),
    #[error(
        "host name {0:?} has a character other than a-z, 0-9, '-', '_', '.' (or a leading \"*.\")"
    )]
    BadCharacter(String),
}

/// The ROUTES key of a host name: its SNI hash. A wildcard `*.example.com` is
/// hashed as written, which is the key the XDP program computes for
/// `shop.example.com` (see `edge_common::sni::wildcard_hash`).
pub fn route_key(host: &str) -> Result<u64, HostnameError> {
    if host.is_empty() {
        return Err(HostnameError::Empty);
    }
    if host.len() > MAX_NAME {
        return Err(HostnameError::TooLong(host.into()));
    }
    let labels = host.strip_prefix("*.").unwrap_or(host);
    for label in labels.split('.') {
        if label.is_empty() {
            return Err(HostnameError::EmptyLabel(host.into()));
        }
        if label.len() > MAX_LABEL {
            return Err(HostnameError::LabelTooLong(host.into()));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(HostnameError::BadCharacter(host.into()));
        }
    }
    Ok(sni::hash(host.as_bytes()))
}

/// A state that needs more routes (or chain ids) than the loaded maps hold.
/// Checked before anything is written, so that the write is refused whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoutesFull {
    #[error(
        "the state needs {needed} XDP routes, more than the routes map holds \
         ({max}, xdp.routes_max in the config; detach and attach again to size it for the state)"
    )]
    Routes { needed: usize, max: u32 },
    #[error(
        "the state uses chain id {chain_id}, beyond the {max} chains the XDP counters hold \
         (xdp.routes_max in the config sizes both)"
    )]
    Chains { chain_id: u32, max: u32 },
}

pub struct Routes {
    routes: HashMap<MapData, u64, Route>,
    /// For `Config::chains_used`, which tells counter readers how far to read.
    config: Array<MapData, Config>,
    /// What the kernel created the maps with (sized at load, see
    /// [`super::LoadOptions::routes_max`]).
    max_routes: u32,
    max_chains: u32,
    /// `Config::chains_used` as last read or written here: the config map is
    /// only touched when a route raises it.
    chains_used: u32,
}

impl Routes {
    pub(super) fn new(
        routes: HashMap<MapData, u64, Route>,
        config: Array<MapData, Config>,
        max_routes: u32,
        max_chains: u32,
    ) -> Self {
        Self {
            routes,
            config,
            max_routes,
            max_chains,
            chains_used: 0,
        }
    }

    /// How many routes the kernel map holds at most.
    pub fn max_routes(&self) -> u32 {
        self.max_routes
    }

    /// Chain ids below this have a counter slot (and may be routed to).
    pub fn max_chains(&self) -> u32 {
        self.max_chains
    }

    /// Refuses `needed` routes whose highest chain id is `max_chain_id`
    /// when the maps cannot hold them.
    pub fn check_fits(&self, needed: usize, max_chain_id: u32) -> Result<(), RoutesFull> {
        if needed > self.max_routes as usize {
            return Err(RoutesFull::Routes {
                needed,
                max: self.max_routes,
            });
        }
        if max_chain_id >= self.max_chains {
            return Err(RoutesFull::Chains {
                chain_id: max_chain_id,
                max: self.max_chains,
            });
        }
        Ok(())
    }

    /// Routes `host` (exact, or a `*.` wildcard one label deep) to `target`,
    /// replacing any previous route of the same name. The chain's counters
    /// exist already (an array slot); a chain id above all routed so far is
    /// recorded first, so that readers of the counters include it.
    pub fn insert(&mut self, host: &str, target: RouteTarget) -> anyhow::Result<()> {
        let key = route_key(host)?;
        if target.chain_id >= self.max_chains {
            anyhow::bail!(
                "chain id {} is out of range (the XDP counters hold {} chains)",
                target.chain_id,
                self.max_chains
            );
        }
        self.mark_chain_used(target.chain_id)?;
        let route = Route {
            chain_id: target.chain_id,
            queue: target.queue,
            action: match target.action {
                RouteAction::Pass => ACTION_PASS,
                RouteAction::Drop => ACTION_DROP,
            },
            _pad: 0,
        };
        self.routes.insert(&key, &route, 0).map_err(|e| {
            anyhow::anyhow!(
                "cannot insert the route for {host} (at most {} routes): {e}",
                self.max_routes
            )
        })
    }

    /// Removes the route of `host`; `false` if there was none.
    pub fn remove(&mut self, host: &str) -> anyhow::Result<bool> {
        let key = route_key(host)?;
        match self.routes.remove(&key) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(e) => Err(anyhow::anyhow!("cannot remove the route for {host}: {e}")),
        }
    }

    /// The route of `host` as the kernel sees it.
    pub fn get(&self, host: &str) -> anyhow::Result<Option<RouteTarget>> {
        let key = route_key(host)?;
        match self.routes.get(&key, 0) {
            Ok(route) => Ok(Some(target(&route))),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("cannot read the route for {host}: {e}")),
        }
    }

    /// Every route in the kernel map by key (the map holds SNI hashes, not
    /// names), in the map's order: one syscall per entry.
    pub fn entries(&self) -> impl Iterator<Item = anyhow::Result<(u64, RouteTarget)>> + '_ {
        self.routes.iter().map(|entry| {
            let (key, route) =
                entry.map_err(|e| anyhow::anyhow!("cannot read the routes map: {e}"))?;
            Ok((key, target(&route)))
        })
    }

    fn mark_chain_used(&mut self, chain_id: u32) -> anyhow::Result<()> {
        if chain_id < self.chains_used {
            return Ok(());
        }
        let read = |e| anyhow::anyhow!("cannot read the XDP config map: {e}");
        let config = self.config.get(&0, 0).map_err(read)?;
        if config.chains_used <= chain_id {
            let raised = Config {
                chains_used: chain_id + 1,
                ..config
            };
            self.config.set(0, &raised, 0).map_err(|e| {
                anyhow::anyhow!("cannot record chain {chain_id} in the XDP config map: {e}")
            })?;
        }
        self.chains_used = config.chains_used.max(chain_id + 1);
        Ok(())
    }
}

fn target(route: &Route) -> RouteTarget {
    RouteTarget {
        chain_id: route.chain_id,
        queue: route.queue,
        action: if route.action == ACTION_DROP {
            RouteAction::Drop
        } else {
            RouteAction::Pass
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_keys_are_sni_hashes_and_bad_names_are_refused() {
        assert_eq!(
            route_key("Shop.Example.com"),
            Ok(sni::hash(b"shop.example.com"))
        );
        assert_eq!(
            route_key("*.example.com"),
            Ok(sni::wildcard_hash(b"shop.example.com").unwrap())
        );
        assert_eq!(route_key(""), Err(HostnameError::Empty));
        assert!(matches!(
            route_key("a..b"),
            Err(HostnameError::EmptyLabel(_))
        ));
        assert!(matches!(
            route_key("example.com."),
            Err(HostnameError::EmptyLabel(_))
        ));
        assert!(matches!(
            route_key("a.*.b"),
            Err(HostnameError::BadCharacter(_))
        ));
        assert!(matches!(
            route_key("ex ample.com"),
            Err(HostnameError::BadCharacter(_))
        ));
        assert!(matches!(
            route_key(&format!("{}.com", "a".repeat(64))),
            Err(HostnameError::LabelTooLong(_))
        ));
        let long = ["a".repeat(63).as_str(); 4].join(".") + ".com";
        assert!(matches!(route_key(&long), Err(HostnameError::TooLong(_))));
    }
}
