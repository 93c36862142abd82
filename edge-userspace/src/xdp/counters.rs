//! Reading the counters: per-CPU values summed into one view.

use aya::maps::{Array, MapData, PerCpuArray};
use edge_common::maps::{CHAIN_OVERFLOW_SLOT, ChainCounters, Config, GlobalCounters, chain_slot};

pub struct Counters {
    global: PerCpuArray<MapData, GlobalCounters>,
    chains: PerCpuArray<MapData, ChainCounters>,
    /// Holds `chains_used`: how many chain slots are worth reading.
    config: Array<MapData, Config>,
    max_chains: u32,
}

impl Counters {
    pub(super) fn new(
        global: PerCpuArray<MapData, GlobalCounters>,
        chains: PerCpuArray<MapData, ChainCounters>,
        config: Array<MapData, Config>,
        max_chains: u32,
    ) -> Self {
        Self {
            global,
            chains,
            config,
            max_chains,
        }
    }

    /// The global counters, summed over CPUs.
    pub fn global(&self) -> anyhow::Result<GlobalCounters> {
        let mut sum = GlobalCounters::default();
        for cpu in self.global.get(&0, 0)?.iter() {
            sum.add(cpu);
        }
        Ok(sum)
    }

    /// One chain's counters summed over CPUs; `None` if the id is beyond the
    /// counters (no route can name it).
    pub fn chain(&self, chain_id: u32) -> anyhow::Result<Option<ChainCounters>> {
        if chain_id >= self.max_chains {
            return Ok(None);
        }
        self.slot(chain_slot(chain_id)).map(Some)
    }

    /// The counters of every chain id routed since the program was loaded
    /// (whether it saw traffic or not), by chain id. One syscall per chain.
    pub fn chains(&self) -> anyhow::Result<Vec<(u32, ChainCounters)>> {
        let used = self
            .config
            .get(&0, 0)
            .map_err(|e| anyhow::anyhow!("cannot read the XDP config map: {e}"))?
            .chains_used
            .min(self.max_chains);
        (0..used)
            .map(|id| Ok((id, self.slot(chain_slot(id))?)))
            .collect()
    }

    /// Packets the program counted for chain ids beyond the counters: zero
    /// unless something routed to such an id behind the route checks.
    pub fn overflow(&self) -> anyhow::Result<ChainCounters> {
        self.slot(CHAIN_OVERFLOW_SLOT)
    }

    fn slot(&self, slot: u32) -> anyhow::Result<ChainCounters> {
        let cpus = self
            .chains
            .get(&slot, 0)
            .map_err(|e| anyhow::anyhow!("cannot read chain counter slot {slot}: {e}"))?;
        let mut sum = ChainCounters::default();
        for cpu in cpus.iter() {
            sum.add(cpu);
        }
        Ok(sum)
    }
}
