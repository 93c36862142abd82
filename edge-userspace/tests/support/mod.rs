//! What the tests of the `edge` binary share: the process and scratch
//! directory guards that leave nothing behind when a test fails, the demo's
//! config on ephemeral ports, and `edge ctl`.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A child process killed on drop, so a failing test leaves nothing running.
pub struct Edge(pub Child);

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Edge {
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits (bounded) for the process to exit and returns whether it exited 0.
    pub fn exited_cleanly(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("edge did not exit within {within:?}");
    }
}

/// A scratch directory, empty at first and removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `name` must be unique among the tests of this crate.
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("edge-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn edge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge"))
}

/// Writes `dir/edge.json`: the demo's zones on an ephemeral HTTPS port, no
/// echo origin, state in `dir/state`, and `section` of the config set to
/// `value`.
pub fn demo_config(dir: &Path, section: &str, value: Value) -> PathBuf {
    let mut config: Value =
        serde_json::from_str(include_str!("../../src/serve/demo.json")).unwrap();
    config["listen"] = json!({"https": "127.0.0.1:0"});
    config["echo_origin"] = Value::Null;
    config["state_dir"] = json!(dir.join("state"));
    config[section] = value;
    let path = dir.join("edge.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// `edge ctl --socket SOCKET args...`: (success, stdout, stderr).
pub fn ctl(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = edge()
        .args(["ctl", "--socket"])
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}
