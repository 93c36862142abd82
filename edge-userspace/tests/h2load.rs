//! A short h2load smoke run (Debian's nghttp2-client) against `edge serve`
//! running the demo's O2O chain: many multiplexed HTTP/2 streams over TLS on a
//! one-worker runtime (`--workers 1`), every one of them answered by the chain.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{Edge, Scratch, edge, free_port};

const REQUESTS: u64 = 2000;

/// Runs h2load to completion, bounded by coreutils' `timeout`.
fn h2load(args: &[String]) -> Output {
    Command::new("timeout")
        .args(["60", "h2load"])
        .args(args)
        .output()
        .expect("h2load is installed (cargo xtask setup: nghttp2-client)")
}

/// The counts of h2load's summary: (succeeded, failed, 2xx, 4xx).
fn summary(stdout: &str) -> (u64, u64, u64, u64) {
    let field = |line: &str, suffix: &str| -> u64 {
        line.split(',')
            .find_map(|part| part.trim().strip_suffix(suffix))
            .and_then(|n| n.trim().rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no `{suffix}` in {line:?}"))
    };
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in h2load's output:\n{stdout}"))
    };
    let requests = line("requests:");
    let codes = line("status codes:");
    (
        field(requests, " succeeded"),
        field(requests, " failed"),
        field(codes, " 2xx"),
        field(codes, " 4xx"),
    )
}

#[test]
fn h2load_smoke_run_through_the_o2o_chain() {
    let dir = Scratch::new("h2load");
    let (https, echo) = (free_port(), free_port());
    let config = include_str!("../src/serve/demo.json")
        .replace("\"127.0.0.1:8443\"", &format!("\"127.0.0.1:{https}\""))
        .replace(", \"http\": \"127.0.0.1:8080\"", "")
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{echo}"))
        .replace("\"port\": 8081", &format!("\"port\": {echo}"))
        .replace("./edge-demo", &dir.0.join("state").display().to_string());
    let config_path = dir.0.join("edge.json");
    std::fs::write(&config_path, config).unwrap();
    let _edge = Edge(
        edge()
            .args(["serve", "--workers", "1", "--config"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", https)).is_err() {
        assert!(Instant::now() < deadline, "edge serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    // SNI and :authority come from the URL; --connect-to sends the
    // connections to the loopback listener instead of resolving the name.
    let run = |path: &str| {
        let args: Vec<String> = [
            "-n",
            &REQUESTS.to_string(),
            "-c",
            "10",
            "-m",
            "10",
            &format!("--connect-to=127.0.0.1:{https}"),
            &format!("https://mystore.example.com:{https}{path}"),
        ]
        .map(str::to_owned)
        .to_vec();
        let out = h2load(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "h2load failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("Application protocol: h2"),
            "not HTTP/2 over TLS:\n{stdout}"
        );
        (summary(&stdout), stdout)
    };

    let ((succeeded, failed, ok, client_errors), stdout) = run("/");
    assert_eq!(
        (succeeded, failed, ok, client_errors),
        (REQUESTS, 0, REQUESTS, 0),
        "{stdout}"
    );
    // The customer stage's block rule answers every /admin request: the
    // requests above really went through the chain, not around it (h2load
    // counts a 4xx as failed).
    let ((succeeded, failed, ok, client_errors), stdout) = run("/admin");
    assert_eq!(
        (succeeded, failed, ok, client_errors),
        (0, REQUESTS, 0, REQUESTS),
        "{stdout}"
    );
}
