//! Writes through the control socket of an in-process edge: they go live for
//! the very next request (TLS included), concurrent writers are serialised,
//! and the socket is the owner's only.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use edge_tests::chain::{RunningEdge, o2o_state};
use edge_tests::control::Control;
use edge_tests::proxy::{echoed_header, spawn_echo};
use http::{Method, StatusCode};
use serde_json::{Value, json};

async fn start() -> (RunningEdge, Control) {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(o2o_state(echo)).await.unwrap();
    let control = Control::new(&edge.control);
    (edge, control)
}

#[tokio::test]
async fn a_custom_hostname_added_through_the_api_is_served_over_tls_on_the_next_request() {
    let (edge, control) = start().await;
    const HOST: &str = "www.newcustomer.test";
    // A second customer onboards: their zone and CNAME, then the provider's
    // custom hostname, which this edge validates from the customer's zone.
    control
        .ok(
            Method::POST,
            "/zones",
            Some(json!({"name": "newcustomer.test", "account": {"id": "acct-new"}})),
        )
        .await;
    control
        .ok(
            Method::POST,
            "/zones/newcustomer.test/dns_records",
            Some(json!({"type": "CNAME", "name": "www", "content": "customers.saasprovider.com", "proxied": true})),
        )
        .await;
    let client = edge.client(&[HOST], false);
    let url = format!("https://{HOST}:{}/hello", edge.https.port());
    let before = client.get(&url).send().await.unwrap();
    assert_eq!(before.status(), 403, "no custom hostname yet: 1014");
    assert!(before.text().await.unwrap().contains("1014"));

    let created = control
        .ok(
            Method::POST,
            "/zones/saasprovider.com/custom_hostnames",
            Some(json!({"hostname": HOST})),
        )
        .await;
    assert_eq!(created["status"], "active", "{created}");
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the first request after the write is served"
    );
    let seen: Value = response.json().await.unwrap();
    assert_eq!(echoed_header(&seen, "cf-connecting-o2o"), vec!["1"]);
    assert_eq!(echoed_header(&seen, "host"), vec![HOST]);

    // Its own certificate (not the zone's wildcard) once the zone is gone.
    control
        .ok(Method::DELETE, "/zones/newcustomer.test", None)
        .await;
    let fresh = edge.client(&[HOST], true);
    let response = fresh.get(&url).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "served on the custom hostname's own certificate"
    );
    assert!(
        echoed_header(&response.json().await.unwrap(), "cf-connecting-o2o").is_empty(),
        "no customer zone: not O2O any more"
    );

    let id = created["id"].as_str().unwrap();
    control
        .ok(
            Method::DELETE,
            &format!("/zones/saasprovider.com/custom_hostnames/{id}"),
            None,
        )
        .await;
    let gone = edge.client(&[HOST], false).get(&url).send().await;
    assert!(
        gone.is_err(),
        "no certificate for the name any more: {gone:?}"
    );
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_writers_are_serialised_and_none_is_lost() {
    let (edge, control) = start().await;
    let control = std::sync::Arc::new(control);
    const WRITERS: usize = 8;
    const EACH: usize = 10;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let control = control.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let record = control
                    .ok(
                        Method::POST,
                        "/zones/example.com/dns_records",
                        Some(json!({"type": "A", "name": format!("w{writer}-{i}"), "content": "192.0.2.1", "proxied": true})),
                    )
                    .await;
                ids.push(record["id"].as_str().unwrap().to_owned());
            }
            // All writers race for one name: exactly one may have it.
            let (status, _) = control
                .call(
                    Method::POST,
                    "/zones/example.com/dns_records",
                    Some(json!({"type": "A", "name": "contended", "content": "192.0.2.2"})),
                )
                .await;
            (ids, status)
        }));
    }
    let mut acknowledged = std::collections::HashSet::new();
    let mut contended_won = 0;
    for task in tasks {
        let (ids, status) = task.await.unwrap();
        acknowledged.extend(ids);
        match status {
            StatusCode::OK => contended_won += 1,
            StatusCode::BAD_REQUEST => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        contended_won, 1,
        "exactly one writer got the contended name"
    );
    assert_eq!(acknowledged.len(), WRITERS * EACH);
    let records = control
        .ok(Method::GET, "/zones/example.com/dns_records", None)
        .await;
    let stored: std::collections::HashSet<String> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(acknowledged.is_subset(&stored));
    assert_eq!(
        stored.len(),
        WRITERS * EACH + 2,
        "plus mystore and the contended one"
    );
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn the_socket_is_the_owners_only_and_goes_away_with_the_edge() {
    let (edge, control) = start().await;
    let meta = std::fs::metadata(&edge.control).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    let dir = edge.control.parent().unwrap().to_owned();
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".control.sock"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no staging socket left: {leftovers:?}"
    );
    control.ok(Method::GET, "/zones", None).await;
    let path = edge.control.clone();
    edge.stop().await.unwrap();
    assert!(!path.exists(), "the socket is removed when the edge stops");
}

#[tokio::test]
async fn a_cname_write_that_stops_pointing_here_moves_the_hostname_at_once() {
    let (edge, control) = start().await;
    const HOST: &str = "mystore.example.com";
    let client = edge.client(&[HOST], false);
    let url = format!("https://{HOST}:{}/x", edge.https.port());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // The customer points the name at an address of their own: the same
    // write moves the hostname (a CNAME leaving this edge's zones would be
    // for the external DNS check to follow).
    control
        .ok(
            Method::PATCH,
            "/zones/example.com/dns_records/r1",
            Some(json!({"type": "A", "content": "192.0.2.50"})),
        )
        .await;
    let moved = control
        .ok(
            Method::GET,
            "/zones/saasprovider.com/custom_hostnames/ch1",
            None,
        )
        .await;
    assert_eq!(moved["status"], "moved", "{moved}");
    assert!(
        moved["verification_errors"][0]
            .as_str()
            .unwrap()
            .contains("resolves to 192.0.2.50"),
        "{moved}"
    );
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 530);
    assert!(response.text().await.unwrap().contains("1016"));

    // And back: active again, served again.
    control
        .ok(
            Method::PATCH,
            "/zones/example.com/dns_records/r1",
            Some(json!({"type": "CNAME", "content": "customers.saasprovider.com"})),
        )
        .await;
    let active = control
        .ok(
            Method::GET,
            "/zones/saasprovider.com/custom_hostnames/ch1",
            None,
        )
        .await;
    assert_eq!(active["status"], "active", "{active}");
    assert_eq!(active["verification_errors"], json!([]));
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn an_operator_blocks_a_hostname_and_lifts_the_block() {
    let (edge, control) = start().await;
    const HOST: &str = "mystore.example.com";
    let path = "/zones/saasprovider.com/custom_hostnames/ch1";
    let client = edge.client(&[HOST], false);
    let url = format!("https://{HOST}:{}/x", edge.https.port());

    control
        .refused(
            Method::PATCH,
            path,
            Some(json!({"status": "pending"})),
            StatusCode::BAD_REQUEST,
            1004,
            "is active, not blocked",
        )
        .await;
    let blocked = control
        .ok(Method::PATCH, path, Some(json!({"status": "blocked"})))
        .await;
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(
        blocked["verification_errors"],
        json!(["blocked by the operator"])
    );
    // No traffic for it any more: the TLS handshake is refused (as XDP would
    // drop it), and plain HTTP answers 1016. The CNAME still pointing here
    // does not unblock it.
    assert!(
        client.get(&url).send().await.is_err(),
        "a blocked hostname's handshake is refused"
    );
    let plain = reqwest::Client::builder()
        .no_proxy()
        .resolve(HOST, edge.http)
        .build()
        .unwrap()
        .get(format!("http://{HOST}:{}/x", edge.http.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 530, "a blocked hostname is not served");
    assert!(plain.text().await.unwrap().contains("1016"));
    control
        .ok(
            Method::PATCH,
            "/zones/example.com/dns_records/r1",
            Some(json!({"ttl": 120})),
        )
        .await;
    let still = control.ok(Method::GET, path, None).await;
    assert_eq!(still["status"], "blocked");

    // Lifting the block validates again, here at once from the customer's zone.
    let lifted = control
        .ok(Method::PATCH, path, Some(json!({"status": "pending"})))
        .await;
    assert_eq!(lifted["status"], "active", "{lifted}");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    edge.stop().await.unwrap();
}
