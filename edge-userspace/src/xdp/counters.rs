//! Reading the counters: per-CPU values summed into one view.

use aya::maps::{MapData, MapError, PerCpuArray, PerCpuHashMap};
use edge_common::maps::{ChainCounters, GlobalCounters};

pub struct Counters {
    global: PerCpuArray<MapData, GlobalCounters>,
    chains: PerCpuHashMap<MapData, u32, ChainCounters>,
}

impl Counters {
    pub(super) fn new(
        global: PerCpuArray<MapData, GlobalCounters>,
        chains: PerCpuHashMap<MapData, u32, ChainCounters>,
    ) -> Self {
        Self { global, chains }
    }

    /// The global counters, summed over CPUs.
    pub fn global(&self) -> anyhow::Result<GlobalCounters> {
        let mut sum = GlobalCounters::default();
        for cpu in self.global.get(&0, 0)?.iter() {
            sum.add(cpu);
        }
        Ok(sum)
    }

    /// One chain's counters summed over CPUs; `None` if no route ever used it.
    pub fn chain(&self, chain_id: u32) -> anyhow::Result<Option<ChainCounters>> {
        match self.chains.get(&chain_id, 0) {
            Ok(values) => Ok(Some(sum(values.iter()))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(anyhow::anyhow!(
                "cannot read counters of chain {chain_id}: {e}"
            )),
        }
    }

    /// Every chain's counters, sorted by chain id.
    pub fn chains(&self) -> anyhow::Result<Vec<(u32, ChainCounters)>> {
        let mut all = self
            .chains
            .iter()
            .map(|entry| entry.map(|(id, values)| (id, sum(values.iter()))))
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by_key(|(id, _)| *id);
        Ok(all)
    }
}

fn sum<'a>(cpus: impl Iterator<Item = &'a ChainCounters>) -> ChainCounters {
    let mut sum = ChainCounters::default();
    for cpu in cpus {
        sum.add(cpu);
    }
    sum
}
