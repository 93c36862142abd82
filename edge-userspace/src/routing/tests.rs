//! [`ChainRouter::route`] without sockets: it takes a connection's description and a request
//! head, so every decision it makes is tested here on plain values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::request;
use serde_json::{Value, json};

use super::*;
use crate::apply::Applier;
use crate::config::Config;
use crate::downstream::LocalCa;

/// The custom hostname of the O2O chain: customer `example.com` CNAMEs it to the provider.
const O2O: &str = "mystore.example.com";
/// A custom hostname whose own DNS is not on this edge: the provider's stage alone.
const SINGLE: &str = "shop.othercustomer.net";
/// The provider's own proxied A record: its own chain, whose origin gets the request's `Host`.
const OWN: &str = "origin.saasprovider.com";
/// Where the provider's records point.
const ORIGIN_IP: &str = "192.0.2.10";

/// The demo's shape (see `tests/src/chain.rs`): customer zone `example.com`, provider zone
/// `saasprovider.com` with the custom hostnames and its fallback origin.
fn o2o_state() -> Value {
    json!({
        "accounts": [
            {"id": "acct-customer", "name": "Customer"},
            {"id": "acct-provider", "name": "Provider"}
        ],
        "zones": [
            {
                "zone": {"id": "zone-customer", "name": "example.com", "account": {"id": "acct-customer"}},
                "dns_records": [
                    {"id": "r1", "type": "CNAME", "name": O2O, "content": "customers.saasprovider.com", "proxied": true}
                ]
            },
            {
                "zone": {"id": "zone-provider", "name": "saasprovider.com", "account": {"id": "acct-provider"},
                         "settings": {"ssl": "off"}},
                "dns_records": [
                    {"id": "r2", "type": "CNAME", "name": "customers.saasprovider.com", "content": "origin.saasprovider.com", "proxied": true},
                    {"id": "r3", "type": "A", "name": OWN, "content": ORIGIN_IP, "proxied": true}
                ],
                "custom_hostname_settings": {"cname_target": "customers.saasprovider.com"},
                "fallback_origin": {"origin": "origin.saasprovider.com", "status": "active"},
                "custom_hostnames": [
                    {"id": "ch1", "hostname": O2O, "status": "active"},
                    {"id": "ch2", "hostname": SINGLE, "status": "active"}
                ]
            }
        ]
    })
}

/// Appends `rules` to zone `zone`'s (0: customer, 1: provider) entrypoint ruleset of `phase`.
fn add_rules(state: &mut Value, zone: usize, phase: &str, rules: Value) {
    state["zones"][zone]["zone"]["rulesets"][phase] = json!({ "rules": rules });
}

/// The live routing of `state`, as the applier builds it.
fn routing(state: Value) -> Arc<ArcSwap<Routing>> {
    let state: State = serde_json::from_value(state).unwrap();
    Arc::new(ArcSwap::from_pointee(Routing::build(&state, None).unwrap()))
}

/// A state directory of its own per test (the local CA lives there).
fn state_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-routing-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A visitor on the plain listener.
fn plain() -> ConnInfo {
    ConnInfo::new(
        "192.0.2.99:40000".parse().unwrap(),
        "127.0.0.1:80".parse().unwrap(),
        None,
    )
}

/// A visitor over TLS with `sni`, on `alpn` (`h2`, `h3`).
fn tls(sni: &str, alpn: &[u8]) -> ConnInfo {
    let tls = crate::downstream::TlsInfo {
        sni: Some(sni.to_owned()),
        version: None,
        alpn: Some(alpn.to_vec()),
        chain: None,
    };
    ConnInfo::new(
        "192.0.2.99:40000".parse().unwrap(),
        "127.0.0.1:443".parse().unwrap(),
        Some(tls),
    )
}

/// A GET of `path` with `Host: host`.
fn head(host: &str, path: &str) -> request::Parts {
    let (parts, ()) = http::Request::get(path)
        .header(HOST, host)
        .body(())
        .unwrap()
        .into_parts();
    parts
}

/// The edge error page of a refused request (a rule's own answer is not one).
fn page(reply: Reply) -> ErrorPage {
    match reply {
        Reply::Error(page) => page,
        Reply::Response(response) => panic!("a rule answered {}", response.status()),
    }
}

fn error_code(reply: Reply) -> u16 {
    page(reply).kind.code()
}

/// What production runs: [`Applier::apply`] swaps the live routing while requests route
/// against it. A request sees the old routing or the new one, whole: here the name is
/// served before the swap and gone (1001) after it.
#[test]
fn requests_route_while_the_applier_swaps_the_routing() {
    let dir = state_dir("swap");
    let config = json!({
        "listen": {"https": "127.0.0.1:0"},
        "state_dir": dir,
        "state": o2o_state(),
    });
    let config = Config::parse(&config.to_string()).unwrap();
    let ca = LocalCa::load_or_create(&dir).unwrap();
    let mut applier = Applier::new(&config, ca, &config.state).unwrap();
    let router = Arc::new(ChainRouter::new(
        applier.routing(),
        Vec::<SocketAddr>::new(),
    ));
    let route = |router: &ChainRouter| match router.route(&plain(), &mut head(O2O, "/")).outcome {
        Ok((route, _)) => {
            assert_eq!(route.origin.host, ORIGIN_IP);
            None
        }
        Err(reply) => Some(error_code(reply)),
    };
    assert_eq!(route(&router), None, "served before the swap");
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let router = router.clone();
            std::thread::spawn(move || (0..1000).map(|_| route(&router)).collect::<Vec<_>>())
        })
        .collect();
    applier
        .apply(&State::default(), None, || Ok(()))
        .map_err(|e| e.to_string())
        .unwrap();
    for reader in readers {
        let outcomes = reader.join().expect("readers never fail during a swap");
        assert!(
            outcomes.iter().all(|o| matches!(o, None | Some(1001))),
            "{outcomes:?}"
        );
    }
    assert_eq!(route(&router), Some(1001), "gone after the swap");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_routing_is_shared_across_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Routing>();
    shared::<ChainRouter>();
}

/// SNI and `Host` must resolve to the same chain, or one tenant's TLS session fronts for
/// another's zone: 421. The same name in another case, or a `Host` the SNI's chain also
/// serves, is no fronting.
#[test]
fn sni_and_host_of_different_chains_are_refused_with_421() {
    let router = ChainRouter::new(routing(o2o_state()), Vec::new());
    let route = |sni: &str, host: &str| {
        router
            .route(&tls(sni, b"h2"), &mut head(host, "/"))
            .outcome
            .map(|(route, _)| route.host_header)
    };
    let fronting = route(SINGLE, O2O).map(drop).map_err(page).unwrap_err();
    assert_eq!(
        (fronting.kind.code(), fronting.kind.status().as_u16()),
        (421, 421)
    );
    assert_eq!(route(O2O, O2O).map_err(error_code).unwrap(), O2O);
    let upper = O2O.to_ascii_uppercase();
    assert_eq!(route(&upper, O2O).map_err(error_code).unwrap(), O2O);
    assert_eq!(route(O2O, SINGLE).map(drop).map_err(error_code), Err(421));
    // An SNI nothing serves fails as its own name does, whatever the `Host`.
    assert_eq!(
        route("nowhere.invalid", O2O).map(drop).map_err(error_code),
        Err(1001)
    );
}

/// An origin that is one of the edge's own listeners would send the request back to the
/// edge: 1000, before anything is sent. The same address on another port is an origin.
#[test]
fn an_origin_on_the_edges_own_listener_is_error_1000() {
    let mut state = o2o_state();
    add_rules(
        &mut state,
        1,
        "http_request_origin",
        json!([
            {"expression": "http.request.uri.path eq \"/loop\"", "action": "route",
             "action_parameters": {"origin": {"host": "127.0.0.1", "port": 8443}}},
            {"expression": "http.request.uri.path eq \"/other\"", "action": "route",
             "action_parameters": {"origin": {"host": "127.0.0.1", "port": 8444}}}
        ]),
    );
    let listener: SocketAddr = "127.0.0.1:8443".parse().unwrap();
    let router = ChainRouter::new(routing(state), vec![listener]);
    let outcome = router.route(&plain(), &mut head(O2O, "/loop")).outcome;
    let refused = outcome.map(drop).map_err(page).unwrap_err();
    assert_eq!(
        (refused.kind.code(), refused.kind.status().as_u16()),
        (1000, 403)
    );
    let (route, _) = router
        .route(&plain(), &mut head(O2O, "/other"))
        .outcome
        .map_err(error_code)
        .unwrap();
    assert_eq!(
        (&*route.origin.host, route.origin.port),
        ("127.0.0.1", 8444)
    );
}

/// A rule that sets `Host` changes the host the origin gets and the SNI it is asked for:
/// the header is parsed again (lower case, port and trailing dot dropped). A custom
/// hostname's origin keeps getting the custom hostname as `Host`.
#[test]
fn a_host_a_rule_sets_is_parsed_again_for_the_origin() {
    let mut state = o2o_state();
    state["zones"][1]["zone"]["settings"]["ssl"] = json!("full");
    add_rules(
        &mut state,
        1,
        "http_request_late_transform",
        json!([
            {"expression": "http.request.uri.path eq \"/rename\"", "action": "rewrite",
             "action_parameters": {"headers": {
                 "host": {"operation": "set", "value": "Renamed.Example.:8443"}}}}
        ]),
    );
    let router = ChainRouter::new(routing(state), Vec::new());
    let route = |host: &str, path: &str| {
        let (route, _) = router
            .route(&plain(), &mut head(host, path))
            .outcome
            .map_err(error_code)
            .unwrap();
        let sni = route.origin.tls.expect("ssl full: TLS to the origin").sni;
        (route.host_header, sni)
    };
    assert_eq!(
        route(OWN, "/rename"),
        (
            "renamed.example".try_into().unwrap(),
            "renamed.example".into()
        )
    );
    assert_eq!(route(OWN, "/keep"), (OWN.try_into().unwrap(), OWN.into()));
    assert_eq!(
        route(O2O, "/rename"),
        (O2O.try_into().unwrap(), "renamed.example".into())
    );
}

/// `Alt-Svc` goes on TCP responses of chains whose zones all allow HTTP/3, never on a
/// response that came over HTTP/3; an O2O chain loses it when either zone turns it off.
#[test]
fn alt_svc_is_advertised_over_tcp_when_every_zone_allows_http3() {
    let mut state = o2o_state();
    state["zones"][0]["zone"]["settings"] = json!({"http3": "off"});
    let router = ChainRouter::new(routing(state), Vec::new()).with_alt_svc(8443);
    let alt_svc = |conn: &ConnInfo, host: &str| {
        let (_, pending) = router
            .route(conn, &mut head(host, "/"))
            .outcome
            .map_err(error_code)
            .unwrap();
        let (mut response, ()) = http::Response::new(()).into_parts();
        router.on_response(pending, conn, &mut response);
        response.headers.get(ALT_SVC).cloned()
    };
    assert_eq!(
        alt_svc(&tls(SINGLE, b"h2"), SINGLE).unwrap(),
        "h3=\":8443\"; ma=86400"
    );
    assert_eq!(alt_svc(&plain(), SINGLE).unwrap(), "h3=\":8443\"; ma=86400");
    assert_eq!(alt_svc(&tls(SINGLE, b"h3"), SINGLE), None, "over HTTP/3");
    assert_eq!(
        alt_svc(&tls(O2O, b"h2"), O2O),
        None,
        "the customer turned it off"
    );
    let without = ChainRouter::new(routing(o2o_state()), Vec::new());
    let (_, pending) = without
        .route(&plain(), &mut head(SINGLE, "/"))
        .outcome
        .map_err(error_code)
        .unwrap();
    let (mut response, ()) = http::Response::new(()).into_parts();
    without.on_response(pending, &plain(), &mut response);
    assert!(!response.headers.contains_key(ALT_SVC), "no HTTP/3 served");
}

/// The chain's origin and the `Host` it gets, and what origin rules change of them: the
/// custom hostname's fallback origin (plain, port 80 with ssl off) gets the custom
/// hostname; a provider's origin rule sets the port and the `Host`.
#[test]
fn the_origin_is_the_chains_unless_an_origin_rule_says_otherwise() {
    let mut state = o2o_state();
    add_rules(
        &mut state,
        1,
        "http_request_origin",
        json!([
            {"expression": "http.request.uri.path eq \"/moved\"", "action": "route",
             "action_parameters": {"host_header": "backend.example", "origin": {"port": 8080}}}
        ]),
    );
    let router = ChainRouter::new(routing(state), Vec::new());
    let route = |host: &str, path: &str| {
        let (route, _) = router
            .route(&plain(), &mut head(host, path))
            .outcome
            .map_err(error_code)
            .unwrap();
        route
    };
    let default = route(O2O, "/");
    assert_eq!(
        (
            &*default.origin.host,
            default.origin.port,
            default.origin.tls.is_none()
        ),
        (ORIGIN_IP, 80, true)
    );
    assert_eq!(default.host_header, O2O);
    assert_eq!(default.max_request_body, None);
    let moved = route(O2O, "/moved");
    assert_eq!((&*moved.origin.host, moved.origin.port), (ORIGIN_IP, 8080));
    assert_eq!(moved.host_header, "backend.example");
    assert_eq!(route(SINGLE, "/").host_header, SINGLE);
}

/// An O2O chain runs the customer's stage, then the provider's with `cf-connecting-o2o: 1`;
/// a custom hostname whose DNS is elsewhere runs the provider's alone, without it. The
/// header the client sent is never what the provider sees.
#[test]
fn only_an_o2o_chain_reaches_the_provider_with_cf_connecting_o2o() {
    let mut state = o2o_state();
    add_rules(
        &mut state,
        0,
        "http_request_late_transform",
        json!([{"expression": "true", "action": "rewrite",
                "action_parameters": {"headers": {"x-customer": {"operation": "set", "value": "1"}}}}]),
    );
    let router = ChainRouter::new(routing(state), Vec::new());
    let routed = |host: &str| {
        let mut req = head(host, "/");
        req.headers.insert(
            &stages::CF_CONNECTING_O2O,
            HeaderValue::from_static("forged"),
        );
        let (_, pending) = router
            .route(&plain(), &mut req)
            .outcome
            .map_err(error_code)
            .unwrap();
        (pending.chain, req.headers)
    };
    let (chain, headers) = routed(O2O);
    assert!(chain.o2o && chain.stages.len() == 2);
    assert_eq!(headers[&stages::CF_CONNECTING_O2O], "1");
    assert_eq!(headers["x-customer"], "1", "the customer's stage ran");
    let (chain, headers) = routed(SINGLE);
    assert!(!chain.o2o && chain.stages.len() == 1);
    assert!(!headers.contains_key(&stages::CF_CONNECTING_O2O));
    assert!(!headers.contains_key("x-customer"));
}

/// Per-chain metrics are part of what routing returns: a request a chain took carries
/// its chain's (also when a rule answers it), one no chain took none.
#[test]
fn routing_returns_the_chains_metrics() {
    let mut state = o2o_state();
    add_rules(
        &mut state,
        0,
        "http_request_firewall_custom",
        json!([{"expression": "http.request.uri.path eq \"/admin\"", "action": "block"}]),
    );
    let metrics = Metrics::new();
    let router = ChainRouter::new(routing(state), Vec::new()).with_metrics(metrics);
    let routed = router.route(&plain(), &mut head(O2O, "/"));
    let served = routed.metrics.expect("a chain took it");
    assert!(routed.outcome.is_ok());
    let blocked = router.route(&plain(), &mut head(O2O, "/admin"));
    assert!(matches!(blocked.outcome, Err(Reply::Response(_))));
    assert!(Arc::ptr_eq(&served, &blocked.metrics.expect("the chain's")));
    let single = router.route(&plain(), &mut head(SINGLE, "/"));
    assert!(!Arc::ptr_eq(
        &served,
        &single.metrics.expect("its own chain's")
    ));
    let unknown = router.route(&plain(), &mut head("nowhere.invalid", "/"));
    assert!(unknown.metrics.is_none());
    assert_eq!(unknown.outcome.map(drop).map_err(error_code), Err(1001));
}
