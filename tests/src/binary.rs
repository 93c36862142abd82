//! The real `edge` binary as a child process, for the hostile-traffic suite: started on a
//! config like an operator's (the O2O demo's zones, the test's own `limits` and `origin`
//! sections), watched from outside (its RSS, its log, its metrics) and killed on drop.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

/// `target/<profile>/edge`, built once per test binary by the cargo running the tests (so it
/// is never older than the sources the tests were built from).
pub fn edge_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let status = Command::new(env!("CARGO"))
            .current_dir(workspace)
            .args([
                "build",
                "--release",
                "-p",
                "edge-userspace",
                "--bin",
                "edge",
            ])
            .status()
            .expect("running cargo build for the edge binary");
        assert!(status.success(), "cargo build of the edge binary failed");
        // This test runs from target/<profile>/deps/.
        let exe = std::env::current_exe().unwrap();
        let binary = exe.parent().unwrap().parent().unwrap().join("edge");
        assert!(binary.exists(), "{} was not built", binary.display());
        binary
    })
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `edge serve`.
pub struct EdgeProcess {
    child: Child,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub ca_pem: Vec<u8>,
    pub control: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl EdgeProcess {
    /// Starts the binary with `state`, and `limits` and `origin` as the config's sections;
    /// HTTP/3 is off (the suite attacks TCP).
    pub fn start(state: Value, limits: Value, origin: Value) -> Result<EdgeProcess> {
        let dir = tempfile::tempdir()?;
        let (https, http) = (free_port(), free_port());
        let config = json!({
            "listen": {"https": format!("127.0.0.1:{https}"), "http": format!("127.0.0.1:{http}")},
            "state_dir": dir.path().join("state"),
            "http3": {"enabled": false},
            "limits": limits,
            "origin": origin,
            "state": state,
        });
        let path = dir.path().join("edge.json");
        std::fs::write(&path, config.to_string())?;
        let log = dir.path().join("edge.log");
        let child = Command::new(edge_binary())
            .args(["serve", "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting the edge binary")?;
        let mut edge = EdgeProcess {
            child,
            https: SocketAddr::from(([127, 0, 0, 1], https)),
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            ca_pem: Vec::new(),
            control: dir.path().join("state").join("control.sock"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(std::net::TcpStream::connect(edge.https).is_ok()
            && std::net::TcpStream::connect(edge.http).is_ok()
            && edge.control.exists())
        {
            if let Some(status) = edge.child.try_wait()? {
                anyhow::bail!("the edge exited with {status}: {}", edge.log_text());
            }
            ensure!(
                Instant::now() < deadline,
                "the edge did not start: {}",
                edge.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        edge.ca_pem = std::fs::read(edge.control.with_file_name("ca.pem"))?;
        Ok(edge)
    }

    /// The edge's resident memory in KiB (`VmRSS` of /proc/<pid>/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Everything the edge logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics if the process has exited (crashed).
    pub fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the edge died: {}",
            self.log_text()
        );
    }

    /// The Prometheus text of the control socket's `/metrics`.
    pub async fn metrics(&self) -> String {
        let client = edge_userspace::control::client::Client::new(&self.control);
        let answer = client
            .call(http::Method::GET, "/metrics", None)
            .await
            .unwrap();
        String::from_utf8(answer.body.to_vec()).unwrap()
    }

    /// The sum of every series of `name` in [`EdgeProcess::metrics`] whose labels contain
    /// `label` (e.g. `reason="idle"`, or `""` for all).
    pub async fn metric(&self, name: &str, label: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|line| line.starts_with(name) && line.contains(label))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// A reqwest client from `local` (a loopback address of its own: caps are per address),
    /// trusting the edge's CA and resolving `hosts` to its TLS listener.
    pub fn client(&self, local: IpAddr, hosts: &[&str], http2: bool) -> reqwest::Client {
        crate::chain::client_builder(&self.ca_pem, self.https, hosts, http2)
            .local_address(local)
            .build()
            .unwrap()
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
