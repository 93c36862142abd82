use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::state::{Change, CnameCheck, State};

/// One state holding every case of the reference; written in the config
/// file's JSON so the Cloudflare field names are exercised too.
fn fixture() -> State {
    let a = |id: &str, name: &str, content: &str, proxied: bool| {
        let kind = if content.parse::<std::net::Ipv4Addr>().is_ok() {
            "A"
        } else if content.contains(':') {
            "AAAA"
        } else {
            "CNAME"
        };
        json!({"id": id, "type": kind, "name": name, "content": content, "proxied": proxied, "ttl": 1})
    };
    let ch = |id: &str, hostname: &str, status: &str| json!({"id": id, "hostname": hostname, "status": status});
    let state = json!({
        "accounts": [
            {"id": "a-cust", "name": "Customer"},
            {"id": "a-saas", "name": "SaaS provider"},
            {"id": "a-saas2", "name": "Second provider"},
            {"id": "a-other", "name": "Someone else"}
        ],
        "zones": [
            {
                "zone": {"id": "zp", "name": "saasprovider.com", "account": {"id": "a-saas"},
                         "settings": {"ssl": "strict"}},
                "dns_records": [
                    a("r-p1", "customers.saasprovider.com", "192.0.2.10", true),
                    a("r-p2", "fallback.saasprovider.com", "192.0.2.20", true),
                    a("r-p3", "custom-origin.saasprovider.com", "origin.saas-backend.net", true),
                    a("r-p4", "dnsonly.saasprovider.com", "192.0.2.30", false)
                ],
                "custom_hostname_settings": {"cname_target": "customers.saasprovider.com"},
                "fallback_origin": {"origin": "fallback.saasprovider.com", "status": "active"},
                "custom_hostnames": [
                    {"id": "ch-o2o", "hostname": "o2o.example.com", "status": "active",
                     "custom_metadata": {"tier": "gold"},
                     "ssl": {"settings": {"min_tls_version": "1.2"}},
                     "ownership_verification": {"type": "txt",
                        "name": "_cf-custom-hostname.o2o.example.com", "value": "tok-o2o"}},
                    ch("ch-grey", "grey.example.com", "active"),
                    ch("ch-arec", "arec.example.com", "active"),
                    ch("ch-apex", "example.net", "active"),
                    ch("ch-same", "shop.samecorp.com", "active"),
                    ch("ch-nozone", "shop.nozone.io", "active"),
                    ch("ch-through", "through.example.com", "active"),
                    ch("ch-pending", "pending.example.com", "pending"),
                    {"id": "ch-moved", "hostname": "moved.example.com", "status": "moved",
                     "verification_errors": ["moved.example.com resolves to 203.0.113.9"]},
                    ch("ch-blocked", "blocked.example.com", "blocked"),
                    {"id": "ch-custom", "hostname": "custom.example.com", "status": "active",
                     "custom_origin_server": "custom-origin.saasprovider.com"},
                    {"id": "ch-sni-req", "hostname": "sni-req.example.com", "status": "active",
                     "custom_origin_server": "custom-origin.saasprovider.com",
                     "custom_origin_sni": ":request_host_header:"},
                    {"id": "ch-sni-name", "hostname": "sni-name.example.com", "status": "active",
                     "custom_origin_server": "custom-origin.saasprovider.com",
                     "custom_origin_sni": "backend.saas-backend.net"},
                    ch("ch-wild", "*.shops.com", "active"),
                    ch("ch-exact-shop", "exact.shops.com", "active"),
                    ch("ch-wildrec", "*.wildrec.com", "active"),
                    ch("ch-mixed", "*.mixed.com", "active"),
                    ch("ch-p1-fallback", "fallback.chainsaas.com", "active"),
                    ch("ch-inside", "inside.example.com", "active")
                ]
            },
            {
                "zone": {"id": "zc", "name": "example.com", "account": {"id": "a-cust"},
                         "settings": {"ssl": "flexible"}},
                "dns_records": [
                    a("r-c1", "o2o.example.com", "customers.saasprovider.com", true),
                    a("r-c2", "grey.example.com", "customers.saasprovider.com", false),
                    a("r-c3", "arec.example.com", "192.0.2.10", true),
                    a("r-c4", "through.example.com", "hop.example.com", true),
                    a("r-c5", "hop.example.com", "customers.saasprovider.com", true),
                    a("r-c6", "pending.example.com", "customers.saasprovider.com", true),
                    a("r-c7", "moved.example.com", "203.0.113.9", true),
                    a("r-c8", "blocked.example.com", "customers.saasprovider.com", true),
                    a("r-c9", "custom.example.com", "customers.saasprovider.com", true),
                    a("r-c10", "www.example.com", "203.0.113.5", true),
                    a("r-c11", "cross.example.com", "app.victim.com", true),
                    a("r-c12", "greycross.example.com", "app.victim.com", false),
                    a("r-c13", "own.example.com", "www.example.org", true),
                    a("r-c14", "nf.example.com", "customers.nofallback.com", true),
                    a("r-c15", "if.example.com", "customers.inactivefb.com", true),
                    a("r-c16", "deep.example.com", "customers.chainsaas.com", true),
                    a("r-c17", "v6.example.com", "2001:db8::5", true),
                    a("r-c18", "inside.example.com", "shop.saasprovider.com", true)
                ]
            },
            {
                "zone": {"id": "zorg", "name": "example.org", "account": {"id": "a-cust"}},
                "dns_records": [a("r-o1", "www.example.org", "203.0.113.6", true)]
            },
            {
                "zone": {"id": "znet", "name": "example.net", "account": {"id": "a-cust"}},
                "dns_records": [a("r-n1", "example.net", "192.0.2.10", true)]
            },
            {
                "zone": {"id": "zsame", "name": "samecorp.com", "account": {"id": "a-saas"}},
                "dns_records": [a("r-s1", "shop.samecorp.com", "customers.saasprovider.com", true)]
            },
            {
                "zone": {"id": "zshops", "name": "shops.com", "account": {"id": "a-cust"}},
                "dns_records": [
                    a("r-sh1", "www.shops.com", "198.51.100.1", true),
                    a("r-sh2", "exact.shops.com", "198.51.100.2", true),
                    a("r-sh3", "o2o.shops.com", "customers.saasprovider.com", true),
                    a("r-sh4", "dns.shops.com", "198.51.100.3", false)
                ]
            },
            {
                "zone": {"id": "zwildrec", "name": "wildrec.com", "account": {"id": "a-cust"}},
                "dns_records": [a("r-w1", "*.wildrec.com", "customers.saasprovider.com", true)]
            },
            {
                "zone": {"id": "zmixed", "name": "mixed.com", "account": {"id": "a-cust"}},
                "dns_records": [a("r-m1", "*.mixed.com", "198.51.100.7", true)]
            },
            {
                "zone": {"id": "zvictim", "name": "victim.com", "account": {"id": "a-other"}},
                "dns_records": [a("r-v1", "app.victim.com", "198.51.100.9", true)]
            },
            {
                "zone": {"id": "znf", "name": "nofallback.com", "account": {"id": "a-saas2"}},
                "dns_records": [a("r-nf1", "customers.nofallback.com", "192.0.2.40", true)],
                "custom_hostname_settings": {"cname_target": "customers.nofallback.com"},
                "custom_hostnames": [ch("ch-nf", "nf.example.com", "active")]
            },
            {
                "zone": {"id": "zif", "name": "inactivefb.com", "account": {"id": "a-saas2"}},
                "dns_records": [
                    a("r-if1", "customers.inactivefb.com", "192.0.2.50", true),
                    a("r-if2", "fallback.inactivefb.com", "192.0.2.51", true)
                ],
                "fallback_origin": {"origin": "fallback.inactivefb.com", "status": "pending_deployment"},
                "custom_hostnames": [ch("ch-if", "if.example.com", "active")]
            },
            {
                "zone": {"id": "zp1", "name": "chainsaas.com", "account": {"id": "a-saas2"}},
                "dns_records": [
                    a("r-cs1", "customers.chainsaas.com", "192.0.2.60", true),
                    a("r-cs2", "fallback.chainsaas.com", "customers.saasprovider.com", true)
                ],
                "custom_hostname_settings": {"cname_target": "customers.chainsaas.com"},
                "fallback_origin": {"origin": "fallback.chainsaas.com", "status": "active"},
                "custom_hostnames": [ch("ch-deep", "deep.example.com", "active")]
            }
        ]
    });
    let state: State = serde_json::from_value(state).expect("fixture parses");
    state.validate().expect("fixture is valid");
    state
}

#[derive(Debug)]
enum Want {
    /// Zone ids of the stages, o2o, origin host, custom hostname id.
    Chain(
        &'static [&'static str],
        bool,
        &'static str,
        Option<&'static str>,
    ),
    /// Code, and words the detail must contain.
    Error(u16, &'static str),
}
use Want::{Chain as C, Error as E};

#[rustfmt::skip]
const CASES: &[(&str, &str, Want)] = &[
    ("o2o: proxied CNAME to the provider's target, other account", "o2o.example.com", C(&["zc", "zp"], true, "192.0.2.20", Some("ch-o2o"))),
    ("o2o: CNAME to a name inside the provider zone", "inside.example.com", C(&["zc", "zp"], true, "192.0.2.20", Some("ch-inside"))),
    ("grey record: provider only", "grey.example.com", C(&["zp"], false, "192.0.2.20", Some("ch-grey"))),
    ("A record (apex proxying): provider only", "arec.example.com", C(&["zp"], false, "192.0.2.20", Some("ch-arec"))),
    ("apex A record of the customer zone", "example.net", C(&["zp"], false, "192.0.2.20", Some("ch-apex"))),
    ("same account: provider only", "shop.samecorp.com", C(&["zp"], false, "192.0.2.20", Some("ch-same"))),
    ("no customer zone: provider only", "shop.nozone.io", C(&["zp"], false, "192.0.2.20", Some("ch-nozone"))),
    ("CNAME through another proxied record: not O2O", "through.example.com", C(&["zp"], false, "192.0.2.20", Some("ch-through"))),
    ("cross-account proxied CNAME to the provider's target without custom hostname", "hop.example.com", E(1014, "has no custom hostname for hop.example.com")),
    ("pending hostname", "pending.example.com", E(1016, "is pending")),
    ("moved hostname (our rule: like pending)", "moved.example.com", E(1016, "is moved, and only active custom hostnames carry traffic (moved.example.com resolves to 203.0.113.9)")),
    ("blocked hostname", "blocked.example.com", E(1016, "is blocked")),
    ("no fallback origin", "nf.example.com", E(1016, "the zone has no fallback origin")),
    ("inactive fallback origin", "if.example.com", E(1016, "fallback origin fallback.inactivefb.com is pending_deployment, not active")),
    ("custom origin server", "custom.example.com", C(&["zc", "zp"], true, "origin.saas-backend.net", Some("ch-custom"))),
    ("custom origin with :request_host_header: SNI", "sni-req.example.com", C(&["zp"], false, "origin.saas-backend.net", Some("ch-sni-req"))),
    ("custom origin with named SNI", "sni-name.example.com", C(&["zp"], false, "origin.saas-backend.net", Some("ch-sni-name"))),
    ("cross-account proxied CNAME without custom hostname", "cross.example.com", E(1014, "zone example.com (zc, account a-cust) has a proxied CNAME cross.example.com -> app.victim.com, which crosses into zone victim.com (zvictim, account a-other)")),
    ("grey cross-account CNAME is not served", "greycross.example.com", E(1001, "DNS-only")),
    ("same-account CNAME into another zone", "own.example.com", C(&["zc"], false, "www.example.org", None)),
    ("plain proxied record", "www.example.com", C(&["zc"], false, "203.0.113.5", None)),
    ("plain proxied AAAA record", "v6.example.com", C(&["zc"], false, "2001:db8::5", None)),
    ("record beats wildcard custom hostname", "www.shops.com", C(&["zshops"], false, "198.51.100.1", None)),
    ("exact custom hostname beats record", "exact.shops.com", C(&["zp"], false, "192.0.2.20", Some("ch-exact-shop"))),
    ("wildcard custom hostname without record", "any.shops.com", C(&["zp"], false, "192.0.2.20", Some("ch-wild"))),
    ("record CNAMEd to the provider under a wildcard hostname: O2O", "o2o.shops.com", C(&["zshops", "zp"], true, "192.0.2.20", Some("ch-wild"))),
    ("grey record under a wildcard hostname", "dns.shops.com", C(&["zp"], false, "192.0.2.20", Some("ch-wild"))),
    ("wildcard covers one label only", "a.b.shops.com", E(1001, "no proxied DNS record")),
    ("wildcard record CNAMEd to provider, wildcard hostname: O2O", "x.wildrec.com", C(&["zwildrec", "zp"], true, "192.0.2.20", Some("ch-wildrec"))),
    ("wildcard record beats wildcard hostname", "x.mixed.com", C(&["zmixed"], false, "198.51.100.7", None)),
    ("chains of custom-hostname zones refused", "deep.example.com", E(1014, "is never chained into another zone")),
    ("provider zone O2O into another provider still two stages", "fallback.chainsaas.com", C(&["zp1", "zp"], true, "192.0.2.20", Some("ch-p1-fallback"))),
    ("case-insensitive", "O2O.Example.COM", C(&["zc", "zp"], true, "192.0.2.20", Some("ch-o2o"))),
    ("trailing dot", "o2o.example.com.", C(&["zc", "zp"], true, "192.0.2.20", Some("ch-o2o"))),
    ("case and trailing dot on a wildcard", "ANY.Shops.Com.", C(&["zp"], false, "192.0.2.20", Some("ch-wild"))),
    ("a wildcard pattern is not a name", "*.shops.com", E(1001, "no proxied DNS record")),
    ("unknown name in a known zone", "unknown.example.com", E(1001, "no proxied DNS record")),
    ("nothing matches", "nothing.nowhere.test", E(1001, "no proxied DNS record")),
    ("bare IPv4", "192.0.2.1", E(1003, "IP address")),
    ("bare IPv6", "[2001:db8::1]", E(1003, "IP address")),
    ("empty host", "", E(1003, "IP address")),
    ("too long", "a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.a.example.com.", E(1001, "no proxied DNS record")),
];

#[test]
fn resolution_table() {
    let snapshot = Snapshot::build(&fixture());
    for (case, host, want) in CASES {
        let got = snapshot.resolve(host);
        match (want, &got) {
            (C(stages, o2o, origin, ch), Ok(chain)) => {
                let ids: Vec<&str> = chain.stages.iter().map(|s| &*s.zone_id).collect();
                assert_eq!(&ids, stages, "{case}: stages");
                assert_eq!(chain.o2o, *o2o, "{case}: o2o");
                assert_eq!(&*chain.origin.host, *origin, "{case}: origin");
                let got_ch = chain.custom_hostname.as_ref().map(|h| h.id());
                assert_eq!(got_ch, *ch, "{case}: custom hostname");
                assert_eq!(snapshot.chain(chain.id), Some(*chain), "{case}: chain id");
            }
            (E(code, detail), Err(e)) => {
                assert_eq!(e.code(), *code, "{case}: {e}");
                assert!(e.detail().contains(detail), "{case}: {e}");
            }
            _ => panic!("{case}: {host}: wanted {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn origin_details() {
    let snapshot = Snapshot::build(&fixture());
    let o2o = snapshot.resolve("o2o.example.com").unwrap();
    assert_eq!(
        o2o.origin.tls,
        OriginTls::Verified,
        "provider zone is strict"
    );
    assert_eq!(o2o.origin.sni, OriginSni::RequestHost);
    assert_eq!(o2o.origin.host_header, HostHeader::CustomHostname);
    assert_eq!(o2o.origin.port_or_default(), 443);
    let hostname = o2o.custom_hostname.as_ref().unwrap();
    assert_eq!(
        hostname.metadata.as_deref(),
        Some(&serde_json::json!({"tier": "gold"}))
    );
    assert_eq!(
        hostname.min_tls_version,
        Some(crate::state::MinTlsVersion::Tls12)
    );
    assert_eq!(o2o.customer().unwrap().account_id.as_ref(), "a-cust");
    assert_eq!(o2o.provider().zone_name.as_ref(), "saasprovider.com");

    let custom = snapshot.resolve("custom.example.com").unwrap();
    assert_eq!(
        custom.origin.sni,
        OriginSni::Name("custom-origin.saasprovider.com".into())
    );
    let named = snapshot.resolve("sni-name.example.com").unwrap();
    assert_eq!(
        named.origin.sni,
        OriginSni::Name("backend.saas-backend.net".into())
    );
    let req = snapshot.resolve("sni-req.example.com").unwrap();
    assert_eq!(req.origin.sni, OriginSni::RequestHost);

    let plain = snapshot.resolve("www.example.com").unwrap();
    assert_eq!(
        plain.origin.tls,
        OriginTls::Plain,
        "customer zone is flexible"
    );
    assert_eq!(plain.origin.port_or_default(), 80);
    assert_eq!(plain.origin.host_header, HostHeader::Request);
    assert!(plain.custom_hostname.is_none());
}

#[test]
fn error_codes_and_statuses() {
    let snapshot = Snapshot::build(&fixture());
    let expect = [
        ("nothing.nowhere.test", 1001, 530, "DNS resolution error"),
        ("192.0.2.1", 1003, 403, "Direct IP access not allowed"),
        ("cross.example.com", 1014, 403, "CNAME Cross-User Banned"),
        ("pending.example.com", 1016, 530, "Origin DNS error"),
    ];
    for (host, code, status, title) in expect {
        let e = snapshot.resolve(host).unwrap_err();
        assert_eq!(
            (e.code(), e.status().as_u16(), e.title()),
            (code, status, title),
            "{host}"
        );
    }
    let made = [
        (EdgeError::origin_is_edge("198.18.0.1"), 1000, 403),
        (EdgeError::loop_detected(3), 1019, 508),
        (
            EdgeError::fronting("a.example.com", "b.example.com"),
            421,
            421,
        ),
    ];
    for (e, code, status) in made {
        assert_eq!((e.code(), e.status().as_u16()), (code, status), "{e}");
        assert!(!e.detail().is_empty());
    }
}

#[test]
fn identical_record_chains_are_shared() {
    let state = fixture();
    let zone = state.zone("zorg").unwrap();
    let mut twin = zone.dns_records.iter().next().unwrap().clone();
    twin.id = "r-o2".into();
    twin.name = "twin.example.org".into();
    let state = state
        .apply(Change::PutDnsRecord {
            zone_id: "zorg".into(),
            record: twin,
        })
        .unwrap();
    state.validate().unwrap();
    let snapshot = Snapshot::build(&state);
    let a = snapshot.resolve("www.example.org").unwrap();
    let b = snapshot.resolve("twin.example.org").unwrap();
    assert!(Arc::ptr_eq(a, b));
    let c = snapshot.resolve("o2o.example.com").unwrap();
    let d = snapshot.resolve("custom.example.com").unwrap();
    assert!(
        Arc::ptr_eq(&c.stages, &d.stages),
        "stage lists are interned"
    );
}

#[test]
fn routes_for_the_xdp_map() {
    let snapshot = Snapshot::build(&fixture());
    let routes: Vec<Route> = snapshot.routes().collect();
    let find = |h: &str| routes.iter().find(|r| r.hostname == h).copied();
    let blocked = find("blocked.example.com").expect("blocked hostnames are routes");
    assert!(blocked.blocked);
    assert_eq!(blocked.chain_id, 0);
    let o2o = find("o2o.example.com").unwrap();
    assert!(!o2o.blocked);
    assert_eq!(
        o2o.chain_id,
        snapshot.resolve("o2o.example.com").unwrap().id
    );
    assert!(find("*.shops.com").is_some());
    for refused in [
        "pending.example.com",
        "cross.example.com",
        "greycross.example.com",
    ] {
        assert!(find(refused).is_none(), "{refused}");
    }
    assert!(
        routes
            .iter()
            .all(|r| r.hostname == r.hostname.to_ascii_lowercase())
    );
    assert!(
        snapshot
            .zone("zp")
            .is_some_and(|z| z.name == "saasprovider.com")
    );
    assert!(snapshot.zone("nope").is_none());
}

#[test]
fn activation_from_own_zones_then_routing() {
    let state = fixture();
    let check = |host: &str, zone: &str| state.cname_check(host, zone);
    assert_eq!(
        check("pending.example.com", "zp"),
        Some(CnameCheck::Provider)
    );
    assert_eq!(
        check("through.example.com", "zp"),
        Some(CnameCheck::Provider)
    );
    assert_eq!(check("x.wildrec.com", "zp"), Some(CnameCheck::Provider));
    assert_eq!(
        check("moved.example.com", "zp"),
        Some(CnameCheck::Elsewhere {
            at: "203.0.113.9".into()
        })
    );
    assert_eq!(
        check("unknown.example.com", "zp"),
        Some(CnameCheck::NoRecord)
    );
    assert_eq!(
        check("cross.example.com", "zp"),
        Some(CnameCheck::Elsewhere {
            at: "198.51.100.9".into()
        })
    );
    assert_eq!(check("shop.nozone.io", "zp"), None, "DNS outside this edge");

    let result = check("pending.example.com", "zp").unwrap();
    let next = state
        .apply(crate::state::Change::Observe {
            zone_id: "zp".into(),
            custom_hostname_id: "ch-pending".into(),
            observation: crate::state::Observation::Cname { result },
        })
        .unwrap();
    let before = Snapshot::build(&state);
    assert_eq!(
        before.resolve("pending.example.com").unwrap_err().code(),
        1016
    );
    let next = Snapshot::build(&next);
    let chain = next.resolve("pending.example.com").unwrap();
    assert_eq!(chain.stages.len(), 2);
    assert!(chain.o2o);
}

#[test]
fn long_names_and_many_entries() {
    let state = fixture();
    let long_label = "l".repeat(60);
    let long = format!("{long_label}.{long_label}.{long_label}.{long_label}.example.com");
    assert!(long.len() > 240 && long.len() <= 255);
    let bulk = (0..2000).map(|i| Change::PutDnsRecord {
        zone_id: "zc".into(),
        record: crate::state::DnsRecord {
            id: format!("bulk{i}"),
            record_type: crate::state::RecordType::A,
            name: if i == 0 {
                long.clone()
            } else {
                format!("host{i}.example.com")
            },
            content: format!("198.18.{}.{}", i / 256, i % 256),
            proxied: true,
            ttl: 1,
        },
    });
    let state = state.apply_all(bulk).unwrap();
    state.validate().unwrap();
    let snapshot = Snapshot::build(&state);
    let chain = snapshot.resolve(&long.to_ascii_uppercase()).unwrap();
    assert_eq!(&*chain.origin.host, "198.18.0.0");
    for i in 1..2000 {
        let chain = snapshot.resolve(&format!("host{i}.example.com")).unwrap();
        assert_eq!(
            *chain.origin.host,
            *format!("198.18.{}.{}", i / 256, i % 256)
        );
    }
    assert!(snapshot.routes().any(|r| r.hostname == long));
    assert_eq!(snapshot.resolve(&long[1..]).unwrap_err().code(), 1001);
}

#[test]
fn unchanged_chains_keep_their_ids() {
    let state = fixture();
    let first = Snapshot::build(&state);
    let ids = |s: &Snapshot| -> std::collections::BTreeMap<String, u32> {
        s.routes()
            .map(|r| (r.hostname.to_string(), r.chain_id))
            .collect()
    };
    let same = first.rebuild(&state);
    assert_eq!(ids(&first), ids(&same));
    assert_eq!(first.max_chain_id(), same.max_chain_id());

    let moved = state
        .apply(crate::state::Change::PutCustomHostname {
            zone_id: "zp".into(),
            custom_hostname: {
                let mut ch = state
                    .zone("zp")
                    .unwrap()
                    .custom_hostnames
                    .iter()
                    .nth(1)
                    .unwrap()
                    .clone();
                assert_eq!(ch.hostname, "grey.example.com");
                ch.custom_origin_server = Some("custom-origin.saasprovider.com".into());
                ch
            },
        })
        .unwrap();
    let second = same.rebuild(&moved);
    let (before, after) = (ids(&same), ids(&second));
    for (host, id) in &before {
        if host == "grey.example.com" {
            assert_ne!(after[host], *id, "a changed chain gets a new id");
            assert!(
                same.chain(after[host]).is_none(),
                "new ids do not reuse live ones"
            );
        } else {
            assert_eq!(after[host], *id, "{host} kept its id");
        }
    }

    let deleted = moved
        .apply(crate::state::Change::DeleteCustomHostname {
            zone_id: "zp".into(),
            id: "ch-o2o".into(),
        })
        .unwrap();
    let third = second.rebuild(&deleted);
    let freed = ids(&second)["o2o.example.com"];
    assert!(third.chain(freed).is_none());
    let added = deleted
        .apply(crate::state::Change::PutDnsRecord {
            zone_id: "zc".into(),
            record: crate::state::DnsRecord {
                id: "r-new".into(),
                record_type: crate::state::RecordType::A,
                name: "new.example.com".into(),
                content: "203.0.113.77".into(),
                proxied: true,
                ttl: 1,
            },
        })
        .unwrap();
    let fourth = third.rebuild(&added);
    assert_eq!(
        fourth.resolve("new.example.com").unwrap().id,
        freed,
        "freed ids are reused"
    );
    assert_eq!(fourth.max_chain_id(), third.max_chain_id());
}

#[test]
fn odd_input_never_panics_and_never_matches() {
    let snapshot = Snapshot::build(&fixture());
    let long = "a".repeat(255);
    let longer = "a".repeat(256);
    let odd = [
        ".",
        "..",
        "*",
        "*.",
        "**.shops.com",
        ".shops.com",
        ".o2o.example.com",
        "o2o.example.com..",
        "o2o..example.com",
        "ß.shops.com",
        "o2o.example.com\0",
        "o2o.example.com ",
        " o2o.example.com",
        "::1",
        "[::1]",
        "0",
        long.as_str(),
        longer.as_str(),
        "\u{1F600}.example.com",
    ];
    for host in odd {
        let result = snapshot.resolve(host);
        assert!(
            result
                .as_ref()
                .is_err_and(|e| matches!(e.code(), 1001 | 1003)),
            "{host:?}: {result:?}"
        );
    }
    for route in snapshot.routes().filter(|r| !r.hostname.starts_with('*')) {
        let shouted = format!("{}.", route.hostname.to_ascii_uppercase());
        match snapshot.resolve(&shouted) {
            Ok(chain) => assert_eq!(chain.id, route.chain_id, "{shouted}"),
            Err(e) => assert!(
                route.blocked && e.kind() == ErrorKind::HostnameBlocked,
                "{shouted}"
            ),
        }
    }
}

#[test]
fn snapshot_is_shared_across_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Snapshot>();
    shared::<EdgeError>();
}

/// What a name resolves to, ids aside: the chain's route or the error.
fn same_outcome(a: &Option<snapshot::Outcome>, b: &Option<snapshot::Outcome>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Ok(a)), Some(Ok(b))) => a.same_route(b),
        (Some(Err(a)), Some(Err(b))) => a == b,
        _ => false,
    }
}

/// `derived` answers every name of `state` (and `extra`) as a snapshot built
/// whole from `state` does, and its chain table is consistent with its names.
fn assert_equivalent(derived: &Snapshot, state: &State, extra: &[String]) {
    let full = Snapshot::build(state);
    let mut names: Vec<String> = state
        .zones()
        .iter()
        .flat_map(|z| {
            z.dns_records
                .iter()
                .map(|r| r.name.to_ascii_lowercase())
                .chain(
                    z.custom_hostnames
                        .iter()
                        .map(|h| h.hostname.to_ascii_lowercase()),
                )
        })
        .filter(|n| !n.starts_with("*."))
        .chain(extra.iter().cloned())
        .collect();
    names.sort();
    names.dedup();
    for name in &names {
        let (d, f) = (derived.outcome_of(name), full.outcome_of(name));
        assert!(same_outcome(&d, &f), "{name}: derived {d:?}, full {f:?}");
        assert_eq!(
            derived.resolve(name).is_ok(),
            full.resolve(name).is_ok(),
            "{name}"
        );
        assert_eq!(derived.is_shadowed(name), full.is_shadowed(name), "{name}");
    }
    assert_eq!(derived.len(), full.len());
    let mut by_id: std::collections::HashMap<u32, Arc<Chain>> = Default::default();
    for route in derived.routes() {
        if route.blocked {
            continue;
        }
        let chain = derived
            .chain(route.chain_id)
            .expect("a routed chain is live");
        assert_eq!(chain.id, route.chain_id);
        if let Some(other) = by_id.insert(chain.id, chain.clone()) {
            assert!(Arc::ptr_eq(&other, chain), "one chain per id");
        }
    }
    for id in 1..=derived.max_chain_id() {
        if let Some(chain) = derived.chain(id) {
            assert!(
                by_id.contains_key(&id),
                "chain {id} is live but no name uses it"
            );
            assert_eq!(chain.id, id);
        }
    }
}

/// Applies `change` to `state` as the apply step does: derived from
/// `snapshot` when the change is narrow, rebuilt otherwise.
fn step(snapshot: &Snapshot, state: &State, change: Change) -> Option<(Snapshot, State)> {
    let next = state.apply(change.clone()).ok()?;
    let derived = match affected(state, &next, std::slice::from_ref(&change)) {
        Some(affected) => {
            let zones: Vec<&str> = affected.rulesets.iter().map(String::as_str).collect();
            let derived = snapshot.update(&next, &affected.names, &zones);
            assert_eq!(
                derived.changed_since(snapshot.generation()).map(<[_]>::len),
                Some(affected.names.len())
            );
            derived
        }
        None => snapshot.rebuild(&next),
    };
    Some((derived, next))
}

mod derived {
    use proptest::prelude::*;

    use super::*;
    use crate::state::{CustomHostname, DnsRecord, HostnameStatus, RecordType};

    const NAMES: &[&str] = &[
        "www.example.com",
        "o2o.example.com",
        "grey.example.com",
        "new.example.com",
        "shop.shops.com",
        "deep.wildrec.com",
        "fallback.saasprovider.com",
        "customers.saasprovider.com",
        "fresh.saasprovider.com",
        "elsewhere.test",
        "other.elsewhere.test",
        "x.victim.com",
    ];
    const CONTENTS: &[&str] = &[
        "192.0.2.9",
        "customers.saasprovider.com",
        "fallback.saasprovider.com",
        "o2o.example.com",
        "customers.nofallback.com",
        "2001:db8::9",
    ];

    fn change() -> impl Strategy<Value = Change> {
        let ch_id = 0..6usize;
        let put_ch = (
            ch_id.clone(),
            0..NAMES.len(),
            0..4usize,
            proptest::option::of(0..3usize),
        )
            .prop_map(|(id, name, status, origin)| Change::PutCustomHostname {
                zone_id: "zp".into(),
                custom_hostname: CustomHostname {
                    id: format!("gen-ch-{id}"),
                    hostname: NAMES[name].to_uppercase(),
                    custom_origin_server: origin.map(|o| {
                        [
                            "fallback.saasprovider.com",
                            "customers.saasprovider.com",
                            "nope.saasprovider.com",
                        ][o]
                            .into()
                    }),
                    custom_origin_sni: None,
                    custom_metadata: None,
                    ssl: Default::default(),
                    status: [
                        HostnameStatus::Active,
                        HostnameStatus::Pending,
                        HostnameStatus::Blocked,
                        HostnameStatus::Moved,
                    ][status],
                    verification_errors: Vec::new(),
                    cname_observed: false,
                    admission: Default::default(),
                    ownership_verification: None,
                },
            });
        let delete_ch = ch_id.prop_map(|id| Change::DeleteCustomHostname {
            zone_id: "zp".into(),
            id: format!("gen-ch-{id}"),
        });
        let zones = ["zp", "zc", "zshops", "zwildrec", "zvictim"];
        let record_id = 0..6usize;
        let put_record = (
            record_id.clone(),
            0..zones.len(),
            0..NAMES.len(),
            0..CONTENTS.len(),
            any::<bool>(),
        )
            .prop_map(move |(id, zone, name, content, proxied)| {
                let content = CONTENTS[content];
                let record_type = if content.parse::<std::net::Ipv4Addr>().is_ok() {
                    RecordType::A
                } else if content.contains(':') {
                    RecordType::Aaaa
                } else {
                    RecordType::Cname
                };
                Change::PutDnsRecord {
                    zone_id: zones[zone].into(),
                    record: DnsRecord {
                        id: format!("gen-r-{id}"),
                        record_type,
                        name: NAMES[name].into(),
                        content: content.into(),
                        proxied,
                        ttl: 1,
                    },
                }
            });
        let delete_record =
            (record_id, 0..zones.len()).prop_map(move |(id, zone)| Change::DeleteDnsRecord {
                zone_id: zones[zone].into(),
                id: format!("gen-r-{id}"),
            });
        prop_oneof![put_ch, delete_ch, put_record, delete_record]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Deriving snapshot after snapshot from writes answers every name
        /// as building each state whole does.
        #[test]
        fn derived_snapshots_equal_full_builds(changes in proptest::collection::vec(change(), 1..24)) {
            let extra: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
            let mut state = fixture();
            let mut snapshot = Snapshot::build(&state);
            for change in changes {
                if let Some((next_snapshot, next_state)) = step(&snapshot, &state, change) {
                    assert_equivalent(&next_snapshot, &next_state, &extra);
                    snapshot = next_snapshot;
                    state = next_state;
                }
            }
        }
    }

    /// Enough derived snapshots in a row to fold the overlay into new indexes
    /// several times: outcomes and ids stay.
    #[test]
    fn overlay_folds_into_new_indexes() {
        let mut state = fixture();
        let mut snapshot = Snapshot::build(&state);
        let mut ids = Vec::new();
        for i in 0..2600 {
            let change = Change::PutCustomHostname {
                zone_id: "zp".into(),
                custom_hostname: CustomHostname {
                    id: format!("fold-{i}"),
                    hostname: format!("fold{i}.example.net"),
                    custom_origin_server: None,
                    custom_origin_sni: None,
                    custom_metadata: None,
                    ssl: Default::default(),
                    status: HostnameStatus::Active,
                    verification_errors: Vec::new(),
                    cname_observed: false,
                    admission: Default::default(),
                    ownership_verification: None,
                },
            };
            let next = state.apply_all([change.clone()]).unwrap();
            let affected = affected(&state, &next, &[change]).expect("a narrow change");
            snapshot = snapshot.update(&next, &affected.names, &[]);
            state = next;
            ids.push(
                snapshot
                    .resolve(&format!("fold{i}.example.net"))
                    .unwrap()
                    .id,
            );
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                snapshot
                    .resolve(&format!("fold{i}.example.net"))
                    .unwrap()
                    .id,
                *id
            );
        }
        assert_equivalent(&snapshot, &state, &[]);
    }
}

/// The fixture with active custom hostnames `names` in the provider zone,
/// ids `<prefix>-<i>`, added through a write.
fn with_active_hostnames(prefix: &str, names: &[String]) -> State {
    let add = names
        .iter()
        .enumerate()
        .map(|(i, name)| Change::PutCustomHostname {
            zone_id: "zp".into(),
            custom_hostname: serde_json::from_value(
                json!({"id": format!("{prefix}-{i}"), "hostname": name, "status": "active"}),
            )
            .unwrap(),
        });
    fixture().apply_all(add).unwrap()
}

/// Many names changed at once are looked up through maps of the state, not
/// the state's index per name: the same outcomes either way.
#[test]
fn many_changed_names_derive_like_a_full_build() {
    let names: Vec<String> = (0..20).map(|i| format!("many{i}.example.net")).collect();
    let state = with_active_hostnames("many", &names);
    let before = Snapshot::build(&state);
    let block = state
        .zone("zp")
        .unwrap()
        .custom_hostnames
        .iter()
        .filter(|hostname| hostname.id.starts_with("many-"))
        .map(|hostname| Change::PutCustomHostname {
            zone_id: "zp".into(),
            custom_hostname: crate::state::CustomHostname {
                status: crate::state::HostnameStatus::Blocked,
                ..hostname.clone()
            },
        });
    let blocked = state.apply_all(block).unwrap();
    let derived = before.update(&blocked, &names, &[]);
    assert_equivalent(&derived, &blocked, &names);
    let back = derived.update(&state, &names, &[]);
    assert_equivalent(&back, &state, &names);
}

/// Custom hostnames longer than a record's inline name and short ones,
/// deleted through the overlay of derived snapshots (the base index still
/// holds them) and put back: deleted names miss, the others keep resolving,
/// before and after the overlay is folded into new indexes.
#[test]
fn overlay_deletes_shadow_the_base_index() {
    let long = format!("{}.{}.example.net", "l".repeat(60), "m".repeat(60));
    let names = [long.clone(), "short.example.net".to_owned()];
    let state = with_active_hostnames("del", &names);
    state.validate().unwrap();
    let mut snapshot = Snapshot::build(&state);
    for name in &names {
        assert!(
            snapshot.resolve(&name.to_ascii_uppercase()).is_ok(),
            "{name}"
        );
    }
    let kept = snapshot.resolve("o2o.example.com").unwrap().id;
    let mut deleted = state.clone();
    for i in 0..names.len() {
        let change = Change::DeleteCustomHostname {
            zone_id: "zp".into(),
            id: format!("del-{i}"),
        };
        let next = deleted.apply_all([change.clone()]).unwrap();
        let affected = affected(&deleted, &next, &[change]).expect("a narrow change");
        snapshot = snapshot.update(&next, &affected.names, &[]);
        deleted = next;
    }
    for name in &names {
        assert_eq!(snapshot.resolve(name).unwrap_err().code(), 1001, "{name}");
        assert!(snapshot.route(name).is_none(), "{name}");
        assert!(!snapshot.routes().any(|r| r.hostname == name), "{name}");
    }
    assert_eq!(snapshot.resolve("o2o.example.com").unwrap().id, kept);
    assert_equivalent(&snapshot, &deleted, &names);
    let back = snapshot.update(&state, &names, &[]);
    for name in &names {
        assert!(back.resolve(name).is_ok(), "{name}");
    }
    assert_equivalent(&back, &state, &names);
    // Rebuilt whole: the deletions are in the new indexes, not in an overlay.
    let rebuilt = back.rebuild(&deleted);
    for name in &names {
        assert_eq!(rebuilt.resolve(name).unwrap_err().code(), 1001, "{name}");
    }
    assert_eq!(rebuilt.resolve("o2o.example.com").unwrap().id, kept);
}
