//! The real `edge` binary with a `verify` section: a bad one is refused at
//! load, a good one runs the verifier, `edge ctl hostnames refresh` asks it to
//! check a hostname now, and a resolver that never answers changes no status
//! (its timeout is the hostname's `verification_errors`).
//! (Validation against a real DNS server: tests/tests/control_verify.rs.)

mod support;

use std::net::UdpSocket;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::{Edge, Scratch, ctl, demo_config, edge};

#[test]
fn a_bad_verify_section_stops_the_edge_at_load() {
    let dir = Scratch::new("bad");
    let config = demo_config(&dir.0, "verify", json!({"resolver": "127.0.0.1:0"}));
    let out = edge()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("`resolver` needs a port other than 0"),
        "{stderr}"
    );
    assert!(
        !dir.0.join("state").exists(),
        "nothing was created: {stderr}"
    );
}

#[test]
fn ctl_refresh_runs_a_check_now_and_a_silent_resolver_changes_nothing() {
    let dir = Scratch::new("refresh");
    // Bound and never read: every query to it times out.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = demo_config(
        &dir.0,
        "verify",
        json!({"resolver": silent.local_addr().unwrap(), "timeout_ms": 200}),
    );
    let log_path = dir.0.join("edge.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _edge = Edge(
        edge()
            .args(["serve", "--config"])
            .arg(&config)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The verifier's word that it checked shop.othercustomer.net and got no answer.
    let checks = || {
        std::fs::read_to_string(&log_path)
            .unwrap()
            .lines()
            .filter(|l| {
                l.contains("hostname validation check failed")
                    && l.contains("shop.othercustomer.net")
            })
            .count()
    };
    let socket = dir.0.join("state/control.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "the control socket did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // shop.othercustomer.net has no customer zone here: only DNS can tell.
    let args = [
        "--json",
        "hostnames",
        "refresh",
        "saasprovider.com",
        "ch-othershop",
    ];
    let (success, stdout, stderr) = ctl(&socket, &args);
    assert!(success, "{stderr}");
    let refreshed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(refreshed["hostname"], "shop.othercustomer.net");
    assert_eq!(refreshed["status"], "active");

    // Each refresh is one more check (the next is not due for minutes), and
    // each times out: no verdict, no status change, the reason recorded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while checks() < 3 {
        assert!(
            Instant::now() < deadline,
            "refreshes ran {} checks: {}",
            checks(),
            std::fs::read_to_string(&log_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(300));
        let (success, _, stderr) = ctl(&socket, &args);
        assert!(success, "{stderr}");
    }
    let (success, stdout, stderr) = ctl(
        &socket,
        &[
            "--json",
            "hostnames",
            "get",
            "saasprovider.com",
            "ch-othershop",
        ],
    );
    assert!(success, "{stderr}");
    let after: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(after["status"], "active", "{after}");
    let errors = after["verification_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{after}");
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .contains("shop.othercustomer.net"),
        "{after}"
    );

    let (success, _, stderr) = ctl(
        &socket,
        &["hostnames", "refresh", "saasprovider.com", "ch-nothere"],
    );
    assert!(!success);
    assert!(stderr.contains("ch-nothere"), "{stderr}");
}
