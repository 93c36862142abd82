//! The QUIC side of the classifier: which connection ID belongs to which
//! chain, and what the program counted.
//!
//! QUIC hides the SNI inside encrypted Initials, so XDP cannot classify it the
//! way it classifies TCP. The edge's QUIC server learns the host name from the
//! handshake and records the connection's CID here ([`QuicChains`], plugged
//! into the server as its [`ConnectionIds`]); from then on XDP counts every
//! datagram carrying that CID to the chain, in the same `CHAIN_COUNTERS` as
//! TCP.

use std::sync::Mutex;

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData, MapError, PerCpuArray};
use edge_common::quic::{
    CID_LEN, QUIC_CIDS, QUIC_COUNTERS, QuicCid, QuicCounters, QuicRoute, SERVER_ID_LEN,
};

use super::Classifier;
use crate::downstream::h3::ConnectionIds;

/// Handles on the QUIC maps of a loaded classifier.
pub struct QuicMaps {
    cids: HashMap<MapData, QuicCid, QuicRoute>,
    counters: PerCpuArray<MapData, QuicCounters>,
}

impl QuicMaps {
    /// Takes the QUIC maps out of `classifier` (once per load).
    pub fn take(classifier: &mut Classifier) -> Result<Self> {
        let ebpf = classifier.ebpf_mut();
        let cids = ebpf
            .take_map(QUIC_CIDS)
            .with_context(|| format!("the XDP object has no map {QUIC_CIDS} (or it was taken)"))?;
        let counters = ebpf.take_map(QUIC_COUNTERS).with_context(|| {
            format!("the XDP object has no map {QUIC_COUNTERS} (or it was taken)")
        })?;
        Ok(Self {
            cids: cids.try_into()?,
            counters: counters.try_into()?,
        })
    }

    /// Counts datagrams to `cid` to `chain_id` from now on.
    pub fn insert(&mut self, cid: &[u8], chain_id: u32) -> Result<()> {
        let key = key(cid)?;
        let mut server_id = [0; 2];
        server_id[2 - SERVER_ID_LEN..].copy_from_slice(&key.cid[1..=SERVER_ID_LEN]);
        let route = QuicRoute {
            chain_id,
            server_id: u16::from_be_bytes(server_id),
            _pad: 0,
        };
        self.cids
            .insert(&key, &route, 0)
            .with_context(|| format!("cannot record QUIC connection ID {}", hex(cid)))
    }

    /// Forgets `cid`; `false` if it was not recorded.
    pub fn remove(&mut self, cid: &[u8]) -> Result<bool> {
        match self.cids.remove(&key(cid)?) {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            // The delete syscall reports a missing key as ENOENT.
            Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
                Ok(false)
            }
            Err(e) => Err(anyhow::anyhow!(
                "cannot remove QUIC connection ID {}: {e}",
                hex(cid)
            )),
        }
    }

    /// The chain recorded for `cid`.
    pub fn get(&self, cid: &[u8]) -> Result<Option<u32>> {
        match self.cids.get(&key(cid)?, 0) {
            Ok(route) => Ok(Some(route.chain_id)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("cannot read QUIC connection ID: {e}")),
        }
    }

    /// Every recorded connection ID with its chain.
    pub fn cids(&self) -> Result<Vec<([u8; CID_LEN], u32)>> {
        self.cids
            .iter()
            .map(|entry| {
                let (key, route) = entry?;
                Ok((key.cid, route.chain_id))
            })
            .collect()
    }

    /// The QUIC counters, summed over CPUs.
    pub fn counters(&self) -> Result<QuicCounters> {
        let mut sum = QuicCounters::default();
        for cpu in self.counters.get(&0, 0)?.iter() {
            sum.add(cpu);
        }
        Ok(sum)
    }
}

fn key(cid: &[u8]) -> Result<QuicCid> {
    let cid: [u8; CID_LEN] = cid.try_into().map_err(|_| {
        anyhow::anyhow!(
            "a QUIC connection ID of the edge has {CID_LEN} bytes, not {}",
            cid.len()
        )
    })?;
    Ok(QuicCid { cid, _pad: 0 })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// [`ConnectionIds`] writing into the classifier's maps: a connection's CID
/// goes in with the chain of the host its handshake named, and out when the
/// connection closes.
pub struct QuicChains<F> {
    maps: Mutex<QuicMaps>,
    /// The chain (and its XDP route) of a host name; `None`: not served here.
    chain_of: F,
}

impl<F> QuicChains<F>
where
    F: Fn(&str) -> Option<u32> + Send + Sync + 'static,
{
    /// A chain is counted once it has a counter entry, which its host
    /// names' TCP routes create ([`super::Routes::insert`]).
    pub fn new(maps: QuicMaps, chain_of: F) -> Self {
        Self {
            maps: Mutex::new(maps),
            chain_of,
        }
    }

    /// Reads the maps (e.g. the counters) under the writer's lock.
    pub fn with_maps<T>(&self, read: impl FnOnce(&QuicMaps) -> T) -> T {
        read(&self.maps.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<F> ConnectionIds for QuicChains<F>
where
    F: Fn(&str) -> Option<u32> + Send + Sync + 'static,
{
    fn named(&self, cid: &[u8], server_name: &str) {
        let Some(chain_id) = (self.chain_of)(server_name) else {
            return;
        };
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = maps.insert(cid, chain_id) {
            tracing::warn!(%error, server_name, "QUIC connection not counted per chain");
        }
    }

    fn closed(&self, cid: &[u8]) {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = maps.remove(cid) {
            tracing::warn!(%error, "QUIC connection ID stays in the map until the LRU drops it");
        }
    }
}
