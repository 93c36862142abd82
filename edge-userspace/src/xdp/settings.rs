//! Run-time settings of the program: which ports it watches and what it
//! does with SNIs that have no route.

use aya::maps::{Array, MapData};
use edge_common::maps::{Config, LISTEN_QUIC, LISTEN_TLS, UNKNOWN_SNI_DROP, UNKNOWN_SNI_PASS};

/// What XDP does with a ClientHello whose SNI has no route.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSni {
    /// Let it through; the proxy decides (the default: XDP fails open).
    #[default]
    Pass,
    /// Drop it in XDP (strict mode).
    Drop,
}

pub struct Settings {
    ports: Array<MapData, u8>,
    config: Array<MapData, Config>,
}

impl Settings {
    pub(super) fn new(ports: Array<MapData, u8>, config: Array<MapData, Config>) -> Self {
        Self { ports, config }
    }

    /// Classifies TLS (TCP) to `port`, or stops doing so.
    pub fn set_tls_port(&mut self, port: u16, on: bool) -> anyhow::Result<()> {
        self.set_flag(port, LISTEN_TLS, on)
    }

    /// Counts QUIC (UDP) to `port`, or stops doing so.
    pub fn set_quic_port(&mut self, port: u16, on: bool) -> anyhow::Result<()> {
        self.set_flag(port, LISTEN_QUIC, on)
    }

    fn set_flag(&mut self, port: u16, flag: u8, on: bool) -> anyhow::Result<()> {
        let index = u32::from(port);
        let flags = self.ports.get(&index, 0)?;
        let flags = if on { flags | flag } else { flags & !flag };
        self.ports.set(index, &flags, 0)?;
        Ok(())
    }

    pub fn set_unknown_sni(&mut self, policy: UnknownSni) -> anyhow::Result<()> {
        let config = Config {
            unknown_sni: match policy {
                UnknownSni::Pass => UNKNOWN_SNI_PASS,
                UnknownSni::Drop => UNKNOWN_SNI_DROP,
            },
            ..self.config.get(&0, 0)?
        };
        self.config.set(0, &config, 0)?;
        Ok(())
    }

    pub fn unknown_sni(&self) -> anyhow::Result<UnknownSni> {
        Ok(match self.config.get(&0, 0)?.unknown_sni {
            UNKNOWN_SNI_DROP => UnknownSni::Drop,
            _ => UnknownSni::Pass,
        })
    }
}
