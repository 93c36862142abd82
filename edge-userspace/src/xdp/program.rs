//! Loading, attaching and detaching the classifier program.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use aya::programs::{Xdp, XdpMode, xdp::XdpLinkId};
use aya::{Ebpf, EbpfLoader};
use edge_common::maps::{self as names, CHAINS_MAX, ROUTES_MAX};
use tracing::{info, warn};

use super::{Maps, UnknownSni};

/// The object `cargo xtask build-ebpf` built, embedded at compile time so the
/// `edge` binary needs no file beside it. Empty when the object was missing at
/// build time (see `build.rs`): such an edge serves, but cannot load XDP.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("EDGE_EBPF_OBJECT"));

/// The embedded object, or a refusal with the way out when this binary was
/// built without the program.
fn embedded(object: &'static [u8]) -> Result<&'static [u8]> {
    if object.is_empty() {
        bail!(
            "this edge was built without the XDP program (edge-ebpf's object was missing at \
             build time): run `cargo xtask build-ebpf`, then rebuild edge"
        );
    }
    Ok(object)
}

const PROGRAM: &str = "edge_sni";
/// Where `edge xdp attach` pins the maps, one directory per interface.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/edge";
/// The TLS and QUIC port watched unless told otherwise.
const DEFAULT_PORT: u16 = 443;
/// aya-log levels (aya_log_common::Level): the kernel side logs at debug only,
/// and only when the `edge_ebpf` tracing target is enabled at debug.
const LOG_LEVEL_WARN: u8 = 2;
const LOG_LEVEL_DEBUG: u8 = 4;

/// The largest routes map a config may ask for: at about 64 bytes of kernel
/// memory per preallocated entry (plus per-CPU chain counters of the same
/// count), 16 Mi entries is already more than a gigabyte.
pub const ROUTES_LIMIT: u32 = 1 << 24;

/// The routes map size for a state of `needed` routes: `configured` if set,
/// else twice the state rounded up to a power of two, never below the
/// compiled [`ROUTES_MAX`]. The map cannot grow once loaded, so the headroom
/// is what writes can add before the next attach (the control API refuses a
/// write beyond it, naming the limit).
pub fn routes_max(configured: Option<u32>, needed: usize) -> u32 {
    configured.unwrap_or_else(|| {
        let wanted = needed.saturating_mul(2).checked_next_power_of_two();
        let wanted = wanted.map_or(ROUTES_LIMIT, |n| {
            u32::try_from(n).map_or(ROUTES_LIMIT, |n| n.min(ROUTES_LIMIT))
        });
        wanted.max(ROUTES_MAX)
    })
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Pin the maps in this directory (created, and removed again on drop),
    /// so that `edge xdp stats` and later tools can open them.
    pub pin_dir: Option<PathBuf>,
    pub unknown_sni: UnknownSni,
    /// Entries of the routes map (and chain ids of the chain counters, so
    /// that every routable chain id is counted; never fewer than
    /// [`CHAINS_MAX`], plus the overflow slot).
    /// `None`: the sizes compiled into the object ([`ROUTES_MAX`]).
    pub routes_max: Option<u32>,
}

/// How the program ended up attached (or, asked for, the only mode to try).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// In the driver, before any skb exists.
    Native,
    /// Generic (SKB) mode: the driver has no XDP support; same verdicts, later.
    Generic,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Generic => "generic (SKB)",
        })
    }
}

/// The loaded classifier. Dropping it detaches the program and removes the pins.
pub struct Classifier {
    ebpf: Ebpf,
    pub maps: Maps,
    link: Option<XdpLinkId>,
    pin_dir: Option<PathBuf>,
}

impl Classifier {
    /// Loads and verifies the program, watching TLS and QUIC on port 443.
    pub fn load(options: LoadOptions) -> Result<Self> {
        let object = embedded(OBJECT)?;
        let level = if tracing::enabled!(target: "edge_ebpf", tracing::Level::DEBUG) {
            LOG_LEVEL_DEBUG
        } else {
            LOG_LEVEL_WARN
        };
        let mut loader = EbpfLoader::new();
        loader.override_global("AYA_LOG_LEVEL", &level, false);
        if let Some(max) = options.routes_max {
            if !(1..=ROUTES_LIMIT).contains(&max) {
                bail!("routes_max {max} is out of range (1 to {ROUTES_LIMIT})");
            }
            loader
                .map_max_entries(names::ROUTES, max)
                .map_max_entries(names::CHAIN_COUNTERS, max.max(CHAINS_MAX) + 1);
        }
        let mut ebpf = loader
            .load(object)
            .context("cannot load the XDP object (needs root or CAP_BPF, kernel >= 5.18)")?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .context("the XDP object has no program edge_sni")?
            .try_into()?;
        program
            .load()
            .context("the kernel verifier refused the XDP program")?;
        if let Some(dir) = &options.pin_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the pin directory {}", dir.display()))?;
        }
        let mut maps = match Maps::take(&mut ebpf, options.pin_dir.as_deref()) {
            Ok(maps) => maps,
            Err(e) => {
                // Bad input changes nothing: no half-pinned directory stays.
                if let Some(dir) = &options.pin_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                return Err(e);
            }
        };
        maps.settings.set_tls_port(DEFAULT_PORT, true)?;
        maps.settings.set_quic_port(DEFAULT_PORT, true)?;
        maps.settings.set_unknown_sni(options.unknown_sni)?;
        Ok(Self {
            ebpf,
            maps,
            link: None,
            pin_dir: options.pin_dir,
        })
    }

    /// The program, e.g. for `BPF_PROG_TEST_RUN`.
    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("load() checked that edge_sni is an XDP program")
    }

    fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("load() checked that edge_sni is an XDP program")
    }

    /// Attaches to `interface` (in the calling thread's network namespace):
    /// native mode if the driver supports it, generic mode otherwise.
    pub fn attach(&mut self, interface: &str) -> Result<AttachMode> {
        self.attach_with(interface, None)
    }

    /// [`Classifier::attach`], or with `only` set, in that mode or not at all
    /// (an operator who asked for native mode wants to know it is not there).
    pub fn attach_with(&mut self, interface: &str, only: Option<AttachMode>) -> Result<AttachMode> {
        let name = std::ffi::CString::new(interface)
            .with_context(|| format!("bad interface name {interface:?}"))?;
        let program = self.program_mut();
        let attach = |program: &mut Xdp, mode: AttachMode| {
            let flags = match mode {
                AttachMode::Native => XdpMode::Driver,
                AttachMode::Generic => XdpMode::Skb,
            };
            program
                .attach(name.as_c_str(), flags)
                .with_context(|| format!("cannot attach XDP to {interface} in {mode} mode"))
        };
        let (link, mode) = match only {
            Some(mode) => (attach(program, mode)?, mode),
            None => match attach(program, AttachMode::Native) {
                Ok(link) => (link, AttachMode::Native),
                Err(native) => {
                    warn!(%interface, error = %native, "native XDP refused, trying generic mode");
                    (attach(program, AttachMode::Generic)?, AttachMode::Generic)
                }
            },
        };
        info!(%interface, %mode, "XDP SNI classifier attached");
        self.link = Some(link);
        Ok(mode)
    }

    /// The kernel's id of the loaded program (`bpftool prog show id …`).
    pub fn program_id(&self) -> Result<u32> {
        Ok(self.program().info()?.id())
    }

    /// Detaches from the interface (also done on drop).
    pub fn detach(&mut self) -> Result<()> {
        if let Some(link) = self.link.take() {
            self.program_mut()
                .detach(link)
                .context("cannot detach the XDP program")?;
        }
        Ok(())
    }

    /// Forwards the program's aya-log records to `tracing` (target
    /// `edge_ebpf`). Needs a tokio runtime; runs until the classifier drops.
    pub fn forward_logs(&mut self) -> Result<()> {
        let logger = aya_log::EbpfLogger::init(&mut self.ebpf)
            .context("cannot read the XDP program's log ring")?;
        // SAFETY: the logger owns its ring buffer's fd and never closes or
        // replaces it while registered; the AsyncFd owns the logger.
        let mut logger = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
        }?;
        tokio::spawn(async move {
            while let Ok(mut guard) = logger.readable_mut().await {
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
        });
        Ok(())
    }

    /// For the modules that take maps of their own (QUIC).
    pub(super) fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }
}

impl Drop for Classifier {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            warn!(error = %e, "XDP detach failed");
        }
        if let Some(dir) = &self.pin_dir {
            // Pins keep maps alive after we exit; a stale one would mislead `stats`.
            if let Err(e) = std::fs::remove_dir_all(dir) {
                warn!(dir = %dir.display(), error = %e, "cannot remove XDP map pins");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_max_is_the_config_or_twice_the_state_as_a_power_of_two() {
        assert_eq!(routes_max(Some(8), 1_000_000), 8);
        assert_eq!(routes_max(None, 0), ROUTES_MAX);
        assert_eq!(routes_max(None, 65_536), ROUTES_MAX);
        assert_eq!(routes_max(None, 65_537), 1 << 18);
        assert_eq!(routes_max(None, 1_000_000), 1 << 21);
        assert_eq!(routes_max(None, usize::MAX), ROUTES_LIMIT);
    }

    #[test]
    fn a_binary_built_without_the_object_refuses_xdp_and_says_how_to_build_it() {
        let refused = embedded(b"").unwrap_err().to_string();
        assert!(
            refused.contains("built without the XDP program"),
            "{refused}"
        );
        assert!(refused.contains("cargo xtask build-ebpf"), "{refused}");
        // The suite's own binary embeds the real object (xtask builds it first).
        assert_eq!(embedded(OBJECT).unwrap().get(..4), Some(&b"\x7fELF"[..]));
    }
}
