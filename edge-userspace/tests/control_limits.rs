//! Hostile input through the real control socket and config file of the real
//! `edge` binary: expressions nested ten times past the rules language's
//! limit (and the three that once overflowed the stack), JSON bodies and a
//! config nested ten times past the JSON limit, and `PUT /state` with `{}`.
//! Each is refused naming its limit, changes nothing, and the edge keeps
//! serving throughout.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_userspace::control::client::{Answer, Client};
use edge_userspace::json_depth;
use edge_userspace::rules::parser::MAX_DEPTH;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{Edge, Scratch, ctl, edge, free_port};

/// A running demo edge: its plain-HTTP port, config file, control client and
/// log file.
struct Demo {
    edge: Edge,
    http: u16,
    config: PathBuf,
    demo: String,
    client: Client,
    log: PathBuf,
}

fn demo_config(dir: &Path) -> (String, u16) {
    let (https, http, echo) = (free_port(), free_port(), free_port());
    let demo = include_str!("../src/serve/demo.json")
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{https}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{echo}"))
        .replace("\"port\": 8081", &format!("\"port\": {echo}"))
        .replace("./edge-demo", &dir.join("state").display().to_string());
    (demo, http)
}

async fn start(dir: &Path) -> Demo {
    let (demo, http) = demo_config(dir);
    let config = dir.join("edge.json");
    std::fs::write(&config, &demo).unwrap();
    let log = dir.join("edge.log");
    let file = std::fs::File::create(&log).unwrap();
    let edge = Edge(
        edge()
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
    );
    let demo = Demo {
        edge,
        http,
        config,
        demo,
        client: Client::new(dir.join("state/control.sock")),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while demo.served_by().await.is_none() {
        assert!(Instant::now() < deadline, "the edge did not start serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    demo
}

impl Demo {
    /// The `x-served-by` of a plain-HTTP request through the O2O chain, or
    /// `None` if the edge does not answer 200.
    async fn served_by(&self) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.http)).await.ok()?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: mystore.example.com\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .ok()?
            .ok()?;
        let answer = String::from_utf8_lossy(&answer);
        if !answer.starts_with("HTTP/1.1 200") {
            return None;
        }
        answer.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-served-by: ")
                .map(|v| v.trim().to_owned())
        })
    }

    async fn keeps_serving(&mut self) {
        assert!(self.edge.0.try_wait().unwrap().is_none(), "the edge exited");
        assert_eq!(self.served_by().await.as_deref(), Some("saasprovider"));
    }

    async fn export(&self) -> Value {
        self.client
            .result(Method::GET, "/state", None)
            .await
            .unwrap()
    }

    /// Asserts a 400 whose error message contains `needle`.
    fn refused(answer: &Answer, needle: &str) {
        let body = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        let message =
            serde_json::from_slice::<Value>(&answer.body).unwrap()["errors"][0]["message"]
                .as_str()
                .unwrap()
                .to_owned();
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
}

/// Expressions ten times past the nesting limit, and the three.
fn deep_expressions() -> Vec<String> {
    let ten = 10 * MAX_DEPTH;
    vec![
        format!("{}ssl{}", "(".repeat(ten), ")".repeat(ten)),
        format!("{}ssl", "not ".repeat(ten)),
        format!(
            "{}http.host{} eq \"x\"",
            "lower(".repeat(ten),
            ")".repeat(ten)
        ),
        format!("{}ssl{}", "(".repeat(700), ")".repeat(700)),
        format!("{}ssl", "not ".repeat(6000)),
        format!("{}http.host", "lower(".repeat(1000)),
    ]
}

const WAF: &str = "/zones/example.com/rulesets/phases/http_request_firewall_custom/entrypoint";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_and_deep_json_are_refused_naming_the_limit_and_the_edge_keeps_serving() {
    let dir = Scratch::new("limits-deep");
    let mut demo = start(&dir.0).await;
    let before = demo.export().await;
    let limit = format!("nests deeper than {MAX_DEPTH} levels");

    for expression in deep_expressions() {
        // The rule at index 1 is the deep one: the error names it.
        let body = json!({"rules": [
            {"expression": "ssl", "action": "block"},
            {"expression": expression, "action": "block"},
        ]});
        let answer = demo
            .client
            .call(Method::PUT, WAF, Some(&body))
            .await
            .unwrap();
        Demo::refused(&answer, &limit);
        Demo::refused(&answer, "rule 1");
        demo.keeps_serving().await;
        // The same expression inside a whole-state import.
        let mut state = before.clone();
        state["zones"][0]["zone"]["rulesets"]["http_request_firewall_custom"]["rules"][0]["expression"] =
            json!(expression);
        let answer = demo
            .client
            .call(Method::PUT, "/state", Some(&state))
            .await
            .unwrap();
        Demo::refused(&answer, &limit);
        demo.keeps_serving().await;
    }

    // JSON ten times past its limit, in each kind of body.
    let ten = 10 * json_depth::MAX_DEPTH;
    let deep = |inner: &str| {
        format!(
            "{{\"rules\": [{{\"expression\": \"ssl\", \"action\": \"block\", \"x\": {}{}{}}}]}}",
            "[".repeat(ten),
            inner,
            "]".repeat(ten)
        )
    };
    let json_limit = format!("JSON nests deeper than {} levels", json_depth::MAX_DEPTH);
    for (method, path) in [
        (Method::PUT, WAF),
        (Method::PUT, "/state"),
        (Method::POST, "/zones/example.com/dns_records"),
        (Method::POST, "/zones"),
    ] {
        for body in [deep(""), "{\"a\":".repeat(ten), "[".repeat(100_000)] {
            let answer = demo
                .client
                .send(method.clone(), path, Bytes::from(body))
                .await
                .unwrap();
            Demo::refused(&answer, &json_limit);
        }
    }
    demo.keeps_serving().await;
    assert_eq!(demo.export().await, before, "nothing changed");

    // A config file ten times past either limit: on SIGHUP nothing changes
    // and the edge keeps serving (the deep JSON is refused; the deep rule is
    // in the config's `state`, which only seeds an empty store), and at start
    // both are refused naming their limit.
    let deep_configs = |demo: &str| {
        let mut deep_rules: Value = serde_json::from_str(demo).unwrap();
        deep_rules["state"]["zones"][0]["zone"]["rulesets"]["http_request_firewall_custom"]["rules"]
            [0]["expression"] = json!(deep_expressions()[0]);
        let deep_json = demo.replacen(
            "\"state\": {",
            &format!(
                "\"state\": {{\"x\": {}{},",
                "[".repeat(ten),
                "]".repeat(ten)
            ),
            1,
        );
        assert_ne!(deep_json, demo);
        [deep_rules.to_string(), deep_json]
    };
    let needles = [limit.as_str(), json_limit.as_str()];
    for (i, (config, needle)) in deep_configs(&demo.demo)
        .into_iter()
        .zip(needles)
        .enumerate()
    {
        std::fs::write(&demo.config, &config).unwrap();
        let reloads = |log: &str| log.matches("config reload").count();
        let before_hup = reloads(&std::fs::read_to_string(&demo.log).unwrap());
        demo.edge.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(&demo.log).unwrap();
            if reloads(&log) > before_hup {
                if needle == json_limit {
                    assert!(log.contains("config reload refused"), "{log}");
                    assert!(log.contains(needle), "{needle:?} not in the log:\n{log}");
                }
                break;
            }
            assert!(Instant::now() < deadline, "no reload logged:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        demo.keeps_serving().await;
        assert_eq!(demo.export().await, before, "nothing changed");

        let fresh = Scratch::new(&format!("limits-start-{i}"));
        let path = fresh.0.join("edge.json");
        std::fs::write(&path, &deep_configs(&demo_config(&fresh.0).0)[i]).unwrap();
        let out = edge()
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert_eq!(demo.export().await, before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_whole_state_with_nothing_must_be_confirmed() {
    let dir = Scratch::new("limits-replace-all");
    let mut demo = start(&dir.0).await;
    let before = demo.export().await;
    let confirm = "?replace_all=true";

    // `{}` and a state that keeps none of the accounts and zones are refused.
    let mut other = before.clone();
    for account in other["accounts"].as_array_mut().unwrap() {
        account["id"] = json!(format!("other-{}", account["id"].as_str().unwrap()));
    }
    for zone in other["zones"].as_array_mut().unwrap() {
        let zone = &mut zone["zone"];
        zone["id"] = json!(format!("other-{}", zone["id"].as_str().unwrap()));
        let account = format!("other-{}", zone["account"]["id"].as_str().unwrap());
        zone["account"]["id"] = json!(account);
    }
    for body in [
        json!({}),
        json!({"accounts": [], "zones": []}),
        other.clone(),
    ] {
        let answer = demo
            .client
            .call(Method::PUT, "/state", Some(&body))
            .await
            .unwrap();
        Demo::refused(&answer, confirm);
        assert_eq!(demo.export().await, before, "nothing changed");
        demo.keeps_serving().await;
    }
    let answer = demo
        .client
        .call(Method::PUT, "/state?replace_all=yes", Some(&json!({})))
        .await
        .unwrap();
    Demo::refused(&answer, "replace_all");

    // `edge ctl import` says how to confirm, and confirms with --replace-all.
    let socket = dir.0.join("state/control.sock");
    let empty = dir.0.join("empty.json");
    std::fs::write(&empty, "{}").unwrap();
    let (success, _, stderr) = ctl(&socket, &["import", empty.to_str().unwrap()]);
    assert!(!success);
    assert!(stderr.contains("replace_all"), "{stderr}");
    assert_eq!(demo.export().await, before, "nothing changed");

    // An import that keeps one zone is an ordinary import.
    let mut one = before.clone();
    one["zones"].as_array_mut().unwrap().truncate(1);
    one["accounts"].as_array_mut().unwrap().truncate(1);
    let summary = demo
        .client
        .result(Method::PUT, "/state", Some(&one))
        .await
        .unwrap();
    assert_eq!(summary["zones"], 1);
    demo.client
        .result(Method::PUT, "/state", Some(&before))
        .await
        .unwrap();

    // Confirmed: the state is replaced, here with nothing.
    let (success, stdout, stderr) = ctl(
        &socket,
        &["import", "--replace-all", empty.to_str().unwrap()],
    );
    assert!(success, "{stderr}");
    assert!(stdout.contains("imported 0 accounts, 0 zones"), "{stdout}");
    assert_eq!(demo.export().await["zones"], json!([]));
    assert_eq!(demo.served_by().await, None, "no zone is served");
    // From nothing, no confirmation is needed.
    let summary = demo
        .client
        .result(Method::PUT, "/state", Some(&before))
        .await
        .unwrap();
    assert_eq!(summary["zones"], 2);
    demo.keeps_serving().await;
}
