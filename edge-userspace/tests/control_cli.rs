//! `edge ctl` against the real `edge serve`: readable tables, `--json`,
//! export/import round trip, a refused import changing nothing, and the
//! socket's group permissions from the config.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::{Edge, Scratch, ctl, demo_config, edge};

/// `edge serve` on [`demo_config`]; returns once the socket answers.
fn serve(dir: &Path, control: Value) -> (Edge, PathBuf) {
    serve_at(dir, control, &dir.join("state/control.sock"))
}

fn serve_at(dir: &Path, control: Value, socket: &Path) -> (Edge, PathBuf) {
    let edge = Edge(
        edge()
            .args(["serve", "--config"])
            .arg(demo_config(dir, "control", control))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = socket.to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "the control socket did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (edge, socket)
}

fn ok(socket: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = ctl(socket, args);
    assert!(success, "edge ctl {args:?}: {stderr}");
    stdout
}

#[test]
fn ctl_prints_tables_and_json_and_round_trips_export_and_import() {
    let dir = Scratch::new("tables");
    let (_edge, socket) = serve(&dir.0, json!({}));

    let zones = ok(&socket, &["zones", "list"]);
    let lines: Vec<&str> = zones.lines().collect();
    assert_eq!(lines.len(), 3, "{zones}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("NAME") && lines[0].contains("ACCOUNT")
    );
    assert!(
        lines[1].starts_with("zone-example") && lines[1].contains("example.com"),
        "{zones}"
    );

    ok(
        &socket,
        &["zones", "create", "shop.test", "--account", "acct-new"],
    );
    let record = ok(
        &socket,
        &[
            "--json",
            "dns",
            "create",
            "shop.test",
            "--type",
            "CNAME",
            "--name",
            "www",
            "--content",
            "customers.saasprovider.com",
            "--proxied",
        ],
    );
    let record: Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["name"], "www.shop.test");
    let patched = ok(
        &socket,
        &[
            "dns",
            "patch",
            "shop.test",
            record["id"].as_str().unwrap(),
            "--ttl",
            "120",
        ],
    );
    assert!(
        patched.lines().nth(1).unwrap().trim_end().ends_with("120"),
        "{patched}"
    );

    let hostname = ok(
        &socket,
        &[
            "hostnames",
            "create",
            "saasprovider.com",
            "www.shop.test",
            "--metadata",
            r#"{"plan":"pro"}"#,
        ],
    );
    assert!(
        hostname.contains("www.shop.test") && hostname.contains("active"),
        "{hostname}"
    );
    assert!(
        hostname.contains("pre-validation: TXT _cf-custom-hostname.www.shop.test"),
        "{hostname}"
    );
    let listed = ok(
        &socket,
        &[
            "--json",
            "hostnames",
            "list",
            "saasprovider.com",
            "--hostname",
            "www.shop.test",
        ],
    );
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["custom_metadata"], json!({"plan": "pro"}));
    let id = listed[0]["id"].as_str().unwrap();
    let blocked = ok(&socket, &["hostnames", "block", "saasprovider.com", id]);
    assert!(blocked.contains("blocked by the operator"), "{blocked}");
    let unblocked = ok(&socket, &["hostnames", "unblock", "saasprovider.com", id]);
    assert!(
        unblocked.lines().nth(1).unwrap().contains("active"),
        "{unblocked}"
    );

    let trace = ok(
        &socket,
        &[
            "trace",
            "acct-customer",
            "https://mystore.example.com/admin",
        ],
    );
    assert!(
        trace.contains("[example.com -> saasprovider.com] (O2O)"),
        "{trace}"
    );
    assert!(
        trace.contains("=> answered 403 by zone example.com"),
        "{trace}"
    );
    let rules = ok(
        &socket,
        &[
            "rulesets",
            "get",
            "example.com",
            "http_request_firewall_custom",
        ],
    );
    assert!(
        rules.contains("No admin pages from the internet"),
        "{rules}"
    );

    let (success, _, stderr) = ctl(
        &socket,
        &[
            "dns",
            "create",
            "shop.test",
            "--type",
            "A",
            "--name",
            "x",
            "--content",
            "nope",
        ],
    );
    assert!(!success);
    assert!(
        stderr.contains("`content`") && stderr.contains("code 1004"),
        "{stderr}"
    );

    // Export, change, import; a broken document is refused whole.
    let exported = dir.0.join("state.json");
    ok(&socket, &["export", "--output", exported.to_str().unwrap()]);
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    assert_eq!(state["zones"].as_array().unwrap().len(), 3);
    state["zones"].as_array_mut().unwrap().pop();
    let smaller = dir.0.join("smaller.json");
    std::fs::write(&smaller, state.to_string()).unwrap();
    let mut broken = state.clone();
    broken["zones"][0]["zone"]["account"]["id"] = json!("acct-missing");
    let broken_file = dir.0.join("broken.json");
    std::fs::write(&broken_file, broken.to_string()).unwrap();
    let (success, _, stderr) = ctl(&socket, &["import", broken_file.to_str().unwrap()]);
    assert!(!success);
    assert!(stderr.contains("`account.id`"), "{stderr}");
    assert_eq!(
        ok(&socket, &["--json", "zones", "list"])
            .matches("\"id\"")
            .count(),
        3 * 2
    );

    let imported = ok(&socket, &["import", smaller.to_str().unwrap()]);
    assert!(
        imported.starts_with("imported 3 accounts, 2 zones"),
        "{imported}"
    );
    assert_eq!(
        ok(&socket, &["export"]).trim(),
        serde_json::to_string_pretty(&state).unwrap()
    );
}

#[test]
fn a_configured_group_may_use_the_socket() {
    let group = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut fields = l.split(':');
            let name = fields.next()?.to_owned();
            let gid: u32 = fields.nth(1)?.parse().ok()?;
            (gid != 0).then_some((name, gid))
        })
        .next()
        .expect("a group other than root");
    let dir = Scratch::new("group");
    let (_edge, socket) = serve(&dir.0, json!({"group": group.0}));
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), group.1);
    ok(&socket, &["zones", "list"]);
}

#[test]
fn an_unknown_group_stops_the_edge_before_it_serves() {
    let dir = Scratch::new("nogroup");
    let path = demo_config(&dir.0, "control", json!({"group": "no-such-group-edge"}));
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("no group `no-such-group-edge`"), "{text}");
    assert!(!dir.0.join("state/control.sock").exists());
}

#[test]
fn a_socket_another_edge_answers_on_is_left_alone() {
    let dir = Scratch::new("shared");
    let socket = dir.0.join("shared.sock");
    let first_dir = dir.0.join("first");
    std::fs::create_dir_all(&first_dir).unwrap();
    let (_first, _) = serve_at(&first_dir, json!({"socket": socket}), &socket);
    let second_dir = dir.0.join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(["serve", "--config"])
        .arg(demo_config(
            &second_dir,
            "control",
            json!({"socket": socket}),
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("another process answers on the control socket"),
        "{text}"
    );
    let zones = ok(&socket, &["zones", "list"]);
    assert!(
        zones.contains("example.com"),
        "the first edge still answers: {zones}"
    );
}

#[test]
fn ctl_metrics_prints_the_text_format_and_series_as_json() {
    let dir = Scratch::new("metrics");
    let (_edge, socket) = serve(&dir.0, json!({}));

    let text = ok(&socket, &["metrics"]);
    assert!(
        text.contains("# TYPE edge_client_connections gauge"),
        "{text}"
    );
    assert!(text.contains("\nedge_client_connections 0\n"), "{text}");

    let series: Value = serde_json::from_str(&ok(&socket, &["--json", "metrics"])).unwrap();
    let series = series.as_array().unwrap();
    let connections: Vec<&Value> = series
        .iter()
        .filter(|s| s["metric"] == "edge_client_connections")
        .collect();
    assert_eq!(
        connections,
        [&json!({"metric": "edge_client_connections", "labels": {}, "value": 0.0})],
        "{series:?}"
    );
}
