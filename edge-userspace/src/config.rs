//! The config file: where to listen, where the state lives, certificates, and
//! the zones themselves (in the shapes of the control API, see [`State`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::state::State;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Listen,
    /// Holds the local CA (`ca.pem`) that signs certificates for hostnames
    /// without one of their own. Relative paths are relative to the working
    /// directory, so `edge demo` keeps everything under where it was started.
    pub state_dir: PathBuf,
    #[serde(default)]
    pub certificates: Vec<CertificateFiles>,
    /// Starts the built-in echo origin on this address (the demo's origin).
    #[serde(default)]
    pub echo_origin: Option<SocketAddr>,
    /// Attach the XDP SNI classifier at start (see [`crate::xdp::XdpConfig`]).
    #[serde(default)]
    pub xdp: Option<crate::xdp::XdpConfig>,
    /// Validates custom hostnames through DNS and HTTP (see [`crate::verify`]).
    #[serde(default)]
    pub verify: Option<crate::verify::VerifyConfig>,
    /// HTTP/3 on the UDP port of `listen.https` (on unless `"enabled": false`).
    #[serde(default)]
    pub http3: crate::downstream::h3::Settings,
    /// Client-side timeouts and caps, for every TCP listener (and HTTP/3's connection count,
    /// header size and drain); read at start.
    #[serde(default)]
    pub limits: crate::downstream::Limits,
    /// Origin-side timeouts and caps; read at start.
    #[serde(default)]
    pub origin: crate::upstream::ClientConfig,
    pub state: State,
    /// The control socket (`edge ctl`); the store in `state_dir` keeps what it changes.
    #[serde(default)]
    pub control: ControlConfig,
}

/// File name of the control socket in the state directory, unless the config names one.
pub const SOCKET_FILE: &str = "control.sock";

/// The config's `control` section: where `edge ctl` reaches the edge (see [`crate::control`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Socket path [default: `<state_dir>/control.sock`].
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// A group whose members may use the socket too (mode 0660 instead of 0600).
    #[serde(default)]
    pub group: Option<String>,
}

impl ControlConfig {
    pub fn socket_path(&self, state_dir: &Path) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| state_dir.join(SOCKET_FILE))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// TLS over TCP: HTTP/1.1 and HTTP/2.
    pub https: SocketAddr,
    /// Plain HTTP (port-80 traffic: redirects and plain zones).
    #[serde(default)]
    pub http: Option<SocketAddr>,
}

/// A certificate chain and key in PEM files, for the names it covers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    pub hostnames: Vec<String>,
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// `zone` (a zone's own certificate, which wins) or `custom_hostname`.
    #[serde(default)]
    pub tier: CertificateTier,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateTier {
    #[default]
    Zone,
    CustomHostname,
}

/// The embedded default that `edge demo` runs.
pub const DEMO: &str = include_str!("serve/demo.json");

impl Config {
    pub fn parse(json: &str) -> Result<Config> {
        crate::json_depth::check(json.as_bytes()).map_err(anyhow::Error::msg)?;
        let config: Config = serde_json::from_str(json)?;
        config.state.validate()?;
        if let Some(verify) = &config.verify {
            verify.validate()?;
        }
        config.http3.validate()?;
        config.limits.validate()?;
        config.origin.validate()?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config> {
        let json = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        Config::parse(&json).with_context(|| format!("config file {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_is_valid() {
        let config = Config::parse(DEMO).expect("the embedded demo config parses and validates");
        assert!(config.echo_origin.is_some());
        let routing = crate::routing::Routing::build(&config.state, None)
            .expect("the demo's rulesets compile");
        let o2o = routing.snapshot().resolve("mystore.example.com").unwrap();
        assert!(o2o.o2o && o2o.stages.len() == 2);
        let single = routing
            .snapshot()
            .resolve("shop.othercustomer.net")
            .unwrap();
        assert!(!single.o2o && single.stages.len() == 1);
    }

    #[test]
    fn limits_and_origin_sections_set_what_they_name_and_refuse_the_rest() {
        let mut json: serde_json::Value = serde_json::from_str(DEMO).unwrap();
        json["limits"] =
            serde_json::json!({"idle_timeout_ms": 1500, "max_connections_per_address": 3});
        json["origin"] = serde_json::json!({"max_in_flight_per_client": 5});
        let config = Config::parse(&json.to_string()).unwrap();
        assert_eq!(
            config.limits.idle_timeout,
            std::time::Duration::from_millis(1500)
        );
        assert_eq!(config.limits.max_connections_per_address, 3);
        assert_eq!(
            config.limits.write_timeout,
            crate::downstream::Limits::default().write_timeout
        );
        assert_eq!(config.origin.max_in_flight_per_client, 5);
        for (section, body, named) in [
            (
                "limits",
                serde_json::json!({"idle_timeout": 1}),
                "idle_timeout",
            ),
            (
                "limits",
                serde_json::json!({"write_timeout_ms": 0}),
                "write_timeout_ms",
            ),
            (
                "origin",
                serde_json::json!({"max_in_flight_per_client": 0}),
                "max_in_flight_per_client",
            ),
        ] {
            let mut json: serde_json::Value = serde_json::from_str(DEMO).unwrap();
            json[section] = body;
            let error = format!("{:#}", Config::parse(&json.to_string()).unwrap_err());
            assert!(error.contains(named), "{error}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let json = DEMO.replacen("\"state_dir\"", "\"state_directory\"", 1);
        let error = format!("{:#}", Config::parse(&json).unwrap_err());
        assert!(error.contains("state_directory"), "{error}");
    }
}
