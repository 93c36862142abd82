//! `kill -9` at random moments during a stream of control-socket writes to
//! the real `edge` binary, then a restart, at least 20 times: every write the
//! API acknowledged is there, at most the writes in flight are there
//! unacknowledged, nothing else in the state changed, and the stored state
//! is whole (the edge validates it before it starts).

mod support;

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edge_userspace::control::client::Client;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use support::{Edge, Scratch, edge};

const ROUNDS: usize = 24;
/// The fewest rounds that count as a pass when the time limit cuts it short.
const MIN_ROUNDS: usize = 20;
const WRITERS: usize = 2;
/// Bounds the whole test even on a loaded machine.
const TIME_LIMIT: Duration = Duration::from_secs(300);

/// The demo's zones on ephemeral ports, stored in `dir/state`.
fn config(dir: &Path) -> PathBuf {
    let demo = include_str!("../src/serve/demo.json")
        .replace("127.0.0.1:8443", "127.0.0.1:0")
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:8081", "127.0.0.1:0")
        .replace("./edge-demo", &dir.join("state").display().to_string());
    let path = dir.join("edge.json");
    std::fs::write(&path, demo).unwrap();
    path
}

fn start(config: &Path) -> Edge {
    Edge(
        edge()
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Waits (bounded) until the socket answers.
async fn ready(client: &Client, edge: &mut Edge) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(answer) = client.call(Method::GET, "/zones", None).await
            && answer.status == StatusCode::OK
        {
            return;
        }
        if let Some(status) = edge.0.try_wait().unwrap() {
            panic!("the edge exited on restart: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the control socket did not come up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A random duration in `range` (milliseconds).
fn random_ms(range: std::ops::Range<u64>) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    Duration::from_millis(range.start + random % (range.end - range.start))
}

/// Writes until the edge stops answering; returns the names acknowledged.
async fn write_until_killed(client: &Client, round: usize, writer: usize) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for i in 0.. {
        let name = format!("r{round}-w{writer}-{i}");
        let (path, body) = if i % 4 == 3 {
            (
                "/zones/saasprovider.com/custom_hostnames",
                json!({"hostname": format!("{name}.elsewhere.test")}),
            )
        } else {
            (
                "/zones/example.com/dns_records",
                json!({"type": "A", "name": name, "content": "192.0.2.1", "proxied": true}),
            )
        };
        match client.call(Method::POST, path, Some(&body)).await {
            Ok(answer) => {
                assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
                acknowledged.push(name);
            }
            // Killed: the connection was refused or cut mid-answer.
            Err(_) => return acknowledged,
        }
    }
    unreachable!("the loop ends when the edge is killed")
}

/// Every record and hostname name (first label) in the stored state.
async fn stored_names(client: &Client) -> HashSet<String> {
    let state = client.result(Method::GET, "/state", None).await.unwrap();
    let mut names = HashSet::new();
    for zone in state["zones"].as_array().unwrap() {
        let objects = zone["dns_records"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| &r["name"])
            .chain(
                zone["custom_hostnames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| &h["hostname"]),
            );
        names.extend(
            objects
                .filter_map(Value::as_str)
                .map(|n| n.split('.').next().unwrap().to_owned()),
        );
    }
    names
}

/// The exported state without the records and hostnames whose first label
/// starts with `prefix` (one round's writes), empty lists left out as the
/// export leaves them out.
fn without(mut state: Value, prefix: &str) -> Value {
    for zone in state["zones"].as_array_mut().unwrap() {
        let zone = zone.as_object_mut().unwrap();
        for (list, field) in [("dns_records", "name"), ("custom_hostnames", "hostname")] {
            let Some(Value::Array(items)) = zone.get_mut(list) else {
                continue;
            };
            items.retain(|item| !item[field].as_str().unwrap().starts_with(prefix));
            if items.is_empty() {
                zone.remove(list);
            }
        }
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_acknowledged_write() {
    let dir = Scratch::new("crash");
    let config = config(&dir.0);
    let client = std::sync::Arc::new(Client::new(dir.0.join("state/control.sock")));
    let started = Instant::now();
    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut rounds = 0;
    while rounds < ROUNDS && started.elapsed() < TIME_LIMIT {
        let mut edge = start(&config);
        ready(&client, &mut edge).await;
        let stored = stored_names(&client).await;
        let lost: Vec<_> = acknowledged.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "round {rounds}: acknowledged writes lost: {lost:?}"
        );
        let before = client.result(Method::GET, "/state", None).await.unwrap();

        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let client = client.clone();
                tokio::spawn(async move { write_until_killed(&client, rounds, w).await })
            })
            .collect();
        tokio::time::sleep(random_ms(30..400)).await;
        let pid = edge.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-9", &pid])
                .status()
                .unwrap()
                .success()
        );
        edge.0.wait().unwrap();
        let mut this_round = HashSet::new();
        for writer in writers {
            this_round.extend(writer.await.unwrap());
        }

        // Restarted: this round's acknowledged writes are there, and at most
        // one unacknowledged write per writer (the one in flight).
        let mut edge = start(&config);
        ready(&client, &mut edge).await;
        let stored = stored_names(&client).await;
        let prefix = format!("r{rounds}-");
        let present: HashSet<_> = stored
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .cloned()
            .collect();
        let lost: Vec<_> = this_round.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "round {rounds}: acknowledged writes lost: {lost:?}"
        );
        let extra = present.difference(&this_round).count();
        assert!(
            extra <= WRITERS,
            "round {rounds}: {extra} unacknowledged writes, more than were in flight"
        );
        let after = client.result(Method::GET, "/state", None).await.unwrap();
        assert_eq!(
            without(after, &prefix),
            before,
            "round {rounds}: something besides this round's writes changed"
        );
        eprintln!("round {rounds}: {} acknowledged", this_round.len());
        acknowledged.extend(this_round);
        drop(edge);
        rounds += 1;
    }
    assert!(
        rounds >= MIN_ROUNDS,
        "only {rounds} rounds within {TIME_LIMIT:?}"
    );
    assert!(
        acknowledged.len() >= rounds,
        "too few writes were acknowledged ({}) to test anything",
        acknowledged.len()
    );
}
