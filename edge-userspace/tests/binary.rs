//! The `edge` binary as users run it: `edge demo` and the very curl commands it
//! prints, `edge serve` with SIGHUP reload and `edge ctl` writes under load,
//! and SIGTERM drain.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Edge, Scratch, free_port};

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed (cargo xtask setup)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn demo_prints_curl_commands_that_show_o2o() {
    let dir = Scratch::new("demo");
    let (https, http, echo) = (free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args([
            "demo",
            "--https",
            &format!("127.0.0.1:{https}"),
            "--http",
            &format!("127.0.0.1:{http}"),
        ])
        .args(["--echo", &format!("127.0.0.1:{echo}"), "--dir"])
        .arg(dir.0.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut edge = Edge(child);
    // The instructions are printed once every listener accepts; the last
    // command (1001 on the plain listener) is checked by hand below.
    let mut lines = BufReader::new(stdout).lines().map(Result::unwrap);
    let commands: Vec<String> = lines
        .by_ref()
        .take_while(|line| !line.contains("unknown.example.org"))
        .filter_map(|line| line.trim().strip_prefix("curl ").map(str::to_owned))
        .collect();
    let ctl = lines
        .by_ref()
        .find_map(|line| line.trim().strip_prefix("edge ctl ").map(str::to_owned))
        .expect("the demo prints an edge ctl command");
    // Keep reading so that the edge never writes into a closed pipe.
    let drain = std::thread::spawn(move || lines.count());
    assert_eq!(commands.len(), 3, "{commands:?}");
    let run = |command: &str, extra: &[&str]| {
        let mut args: Vec<&str> = command.split_whitespace().collect();
        args.extend_from_slice(extra);
        curl(&args)
    };
    let o2o: serde_json::Value = serde_json::from_str(&run(&commands[0], &[])).unwrap();
    assert_eq!(
        o2o["headers"]["cf-connecting-o2o"],
        serde_json::json!(["1"])
    );
    let single: serde_json::Value = serde_json::from_str(&run(&commands[1], &[])).unwrap();
    assert!(
        single["headers"].get("cf-connecting-o2o").is_none(),
        "{single}"
    );
    assert!(single["headers"]["host"] == serde_json::json!(["shop.othercustomer.net"]));
    assert_eq!(
        run(&commands[2], &["-o", "/dev/null", "-w", "%{http_code}"]),
        "403"
    );
    let error = curl(&[
        "-H",
        "accept: application/json",
        "-H",
        "host: unknown.example.org",
        &format!("http://127.0.0.1:{http}/"),
    ]);
    assert!(error.contains("1001"), "{error}");
    assert!(
        dir.0.join("state/ca.pem").exists(),
        "the demo CA is kept in --dir"
    );
    let listed = Command::new(env!("CARGO_BIN_EXE_edge"))
        .arg("ctl")
        .args(ctl.split_whitespace())
        .output()
        .unwrap();
    assert!(listed.status.success(), "edge ctl {ctl}");
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains("mystore.example.com") && listed.contains("active"),
        "{listed}"
    );

    edge.signal("TERM");
    assert!(edge.exited_cleanly(Duration::from_secs(20)));
    drain.join().unwrap();
}

#[test]
fn sighup_and_control_writes_apply_without_dropping_requests() {
    let dir = Scratch::new("reload");
    let (https, http, echo) = (free_port(), free_port(), free_port());
    let demo = include_str!("../src/serve/demo.json")
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{https}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{echo}"))
        .replace("\"port\": 8081", &format!("\"port\": {echo}"))
        .replace("./edge-demo", &dir.0.join("state").display().to_string());
    let config = dir.0.join("edge.json");
    std::fs::write(&config, &demo).unwrap();
    let mut edge = Edge(
        Command::new(env!("CARGO_BIN_EXE_edge"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{http}/");
    let served_by = || {
        let headers = curl(&[
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "host: mystore.example.com",
            &url,
        ]);
        headers
            .lines()
            .find_map(|l| l.strip_prefix("x-served-by: ").map(|v| v.trim().to_owned()))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(
            Instant::now() < deadline,
            "edge serve did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(served_by().as_deref(), Some("saasprovider"));

    // A broken config is refused whole: the edge keeps serving the old one.
    std::fs::write(&config, demo.replace("\"zones\"", "\"zonez\"")).unwrap();
    edge.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        served_by().as_deref(),
        Some("saasprovider"),
        "a bad config changed nothing"
    );
    // Once seeded, the store is the truth: a config whose state differs is
    // reloaded for its certificates, not its zones.
    let from_config = demo.replace("\"value\": \"saasprovider\"", "\"value\": \"from-config\"");
    assert_ne!(from_config, demo);
    std::fs::write(&config, from_config).unwrap();
    let rules = dir.0.join("rules.json");
    std::fs::write(
        &rules,
        r#"{"rules": [{"expression": "true", "action": "rewrite",
            "action_parameters": {"headers": {"x-served-by": {"operation": "set", "value": "reloaded"}}}}]}"#,
    )
    .unwrap();

    // Requests in a loop (bounded) while the edge reloads and a control
    // write goes live: none may fail.
    let load = std::thread::spawn({
        let url = url.clone();
        move || {
            (0..150)
                .map(|_| {
                    Command::new("curl")
                        .args([
                            "-sS",
                            "--max-time",
                            "10",
                            "-o",
                            "/dev/null",
                            "-w",
                            "%{http_code}",
                        ])
                        .args(["-H", "host: shop.othercustomer.net", &url])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default()
                })
                .filter(|code| code != "200")
                .count()
        }
    });
    edge.signal("HUP");
    let put = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(["ctl", "--socket"])
        .arg(dir.0.join("state/control.sock"))
        .args([
            "rulesets",
            "put",
            "saasprovider.com",
            "http_response_headers_transform",
        ])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let reloaded_by = Instant::now() + Duration::from_secs(10);
    while served_by().as_deref() != Some("reloaded") {
        assert!(
            Instant::now() < reloaded_by,
            "the control socket's ruleset did not go live"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(load.join().unwrap(), 0, "requests failed during the reload");
    edge.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        served_by().as_deref(),
        Some("reloaded"),
        "SIGHUP kept the stored state"
    );

    edge.signal("TERM");
    assert!(edge.exited_cleanly(Duration::from_secs(20)));
}
