//! The config file's optional `xdp` section: attach the classifier when
//! `edge serve` starts.

use std::path::PathBuf;

use serde::Deserialize;

use super::{AttachMode, UnknownSni};

/// ```json
/// "xdp": { "interface": "eth0", "mode": "native", "unknown_sni": "drop", "pin_dir": "/sys/fs/bpf/edge/eth0", "routes_max": 2097152 }
/// ```
/// Read at start only: SIGHUP re-syncs the routes, while attaching elsewhere
/// or changing the policy goes through the control API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XdpConfig {
    /// The interface the edge's TLS traffic arrives on.
    pub interface: String,
    /// `native` or `generic` to insist on one; absent: native, falling back
    /// to generic when the driver has no XDP support.
    #[serde(default)]
    pub mode: Option<AttachMode>,
    /// What XDP does with a ClientHello whose SNI has no route (`pass` or `drop`).
    #[serde(default)]
    pub unknown_sni: UnknownSni,
    /// Pin the maps here while attached, for `edge xdp stats --pin-root`.
    #[serde(default)]
    pub pin_dir: Option<PathBuf>,
    /// Entries of the kernel's routes map, fixed at each attach. Absent:
    /// twice the routes of the state at attach time, rounded up to a power
    /// of two, at least 131,072 ([`super::routes_max`]).
    #[serde(default)]
    pub routes_max: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_short_and_the_full_form_and_refuses_typos() {
        let short: XdpConfig = serde_json::from_str(r#"{"interface": "eth0"}"#).unwrap();
        assert_eq!(
            short,
            XdpConfig {
                interface: "eth0".into(),
                mode: None,
                unknown_sni: UnknownSni::Pass,
                pin_dir: None,
                routes_max: None,
            }
        );
        let full: XdpConfig = serde_json::from_str(
            r#"{"interface": "eth1", "mode": "generic", "unknown_sni": "drop", "pin_dir": "/sys/fs/bpf/edge/eth1", "routes_max": 4096}"#,
        )
        .unwrap();
        assert_eq!(full.mode, Some(AttachMode::Generic));
        assert_eq!(full.unknown_sni, UnknownSni::Drop);
        assert_eq!(full.pin_dir, Some(PathBuf::from("/sys/fs/bpf/edge/eth1")));
        assert_eq!(full.routes_max, Some(4096));
        for bad in [
            r#"{"interface": "eth0", "mode": "driver"}"#,
            r#"{"interface": "eth0", "unknown_sni": "reject"}"#,
            r#"{"interface": "eth0", "iface": "eth0"}"#,
            r#"{"mode": "native"}"#,
            r#"{"interface": "eth0", "routes_max": -1}"#,
        ] {
            assert!(serde_json::from_str::<XdpConfig>(bad).is_err(), "{bad}");
        }
    }
}
