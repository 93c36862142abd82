//! Typed handles on the classifier's maps, from a freshly loaded program or
//! from the pins of a running one (so `edge xdp stats` can read it).

use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{Context, Result, bail};
use aya::Ebpf;
use aya::maps::{Map, MapData, MapError};
use edge_common::maps as names;

use super::{Counters, Flows, Routes, Settings};

/// Every map of the program, split by who uses it: the control plane writes
/// `routes` and `settings`, the proxy reads `flows`, operators read `counters`.
pub struct Maps {
    pub routes: Routes,
    pub flows: Flows,
    pub counters: Counters,
    pub settings: Settings,
}

const ALL: [&str; 6] = [
    names::ROUTES,
    names::FLOWS,
    names::CHAIN_COUNTERS,
    names::GLOBAL_COUNTERS,
    names::LISTEN_PORTS,
    names::CONFIG,
];

impl Maps {
    /// Takes the maps out of a loaded program, pinning each under `pin_dir`
    /// if given (a stale pin of the same name is replaced).
    pub(super) fn take(ebpf: &mut Ebpf, pin_dir: Option<&Path>) -> Result<Self> {
        let mut take = |name: &str| -> Result<Map> {
            let map = ebpf
                .take_map(name)
                .with_context(|| format!("the XDP object has no map {name}"))?;
            if let Some(dir) = pin_dir {
                let path = dir.join(name);
                if path.exists() {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("cannot remove stale pin {}", path.display()))?;
                }
                map.pin(&path).with_context(|| {
                    format!(
                        "cannot pin {name} at {} (is bpffs mounted there? \
                         `mount -t bpf bpf /sys/fs/bpf`)",
                        path.display()
                    )
                })?;
            }
            Ok(map)
        };
        let [routes, flows, chains, global, ports, config] = ALL.map(&mut take);
        Self::typed(routes?, flows?, chains?, global?, ports?, config?)
    }

    /// Opens the maps a running `edge xdp attach` pinned under `dir`.
    pub fn open_pinned(dir: &Path) -> Result<Self> {
        let open = |name: &str| -> Result<Map> {
            let path = dir.join(name);
            let data = MapData::from_pin(&path).with_context(|| {
                format!(
                    "cannot open {} (is `edge xdp attach` running for this interface?)",
                    path.display()
                )
            })?;
            Ok(Map::from_map_data(data)?)
        };
        let [routes, flows, chains, global, ports, config] = ALL.map(open);
        Self::typed(routes?, flows?, chains?, global?, ports?, config?)
    }

    fn typed(
        routes: Map,
        flows: Map,
        chains: Map,
        global: Map,
        ports: Map,
        config: Map,
    ) -> Result<Self> {
        // Sized at load time: the kernel says how large.
        let Map::PerCpuArray(chain_data) = &chains else {
            bail!("{} is not a per-CPU array", names::CHAIN_COUNTERS);
        };
        // One slot is the overflow slot, not a chain's.
        let max_chains = chain_data.info()?.max_entries().saturating_sub(1);
        let Map::HashMap(route_data) = &routes else {
            bail!("{} is not a hash map", names::ROUTES);
        };
        let max_routes = route_data.info()?.max_entries();
        // Routes raise `Config::chains_used`, Counters and Settings read it:
        // three handles on the one-entry config map.
        let Map::Array(config_data) = &config else {
            bail!("{} is not an array", names::CONFIG);
        };
        let config_for_routes = second_handle(config_data)?;
        let config_for_counters = second_handle(config_data)?;
        Ok(Self {
            routes: Routes::new(
                routes.try_into()?,
                config_for_routes,
                max_routes,
                max_chains,
            ),
            flows: Flows::new(flows.try_into()?),
            counters: Counters::new(
                global.try_into()?,
                chains.try_into()?,
                config_for_counters,
                max_chains,
            ),
            settings: Settings::new(ports.try_into()?, config.try_into()?),
        })
    }
}

/// Another typed handle on the same kernel map (a duplicated fd).
fn second_handle<T: TryFrom<Map, Error = MapError>>(data: &MapData) -> Result<T> {
    let data = MapData::from_fd(data.fd().as_fd().try_clone_to_owned()?)?;
    Ok(Map::from_map_data(data)?.try_into()?)
}
