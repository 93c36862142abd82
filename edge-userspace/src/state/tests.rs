use serde_json::json;

use super::*;

fn base() -> State {
    let state: State = serde_json::from_value(json!({
        "accounts": [{"id": "a1", "name": "Customer"}, {"id": "a2", "name": "Provider"}],
        "zones": [
            {
                "zone": {"id": "zp", "name": "saas.com", "account": {"id": "a2"}},
                "dns_records": [
                    {"id": "r1", "type": "A", "name": "customers.saas.com", "content": "192.0.2.1", "proxied": true},
                    {"id": "r2", "type": "A", "name": "fb.saas.com", "content": "192.0.2.2", "proxied": true},
                    {"id": "r3", "type": "A", "name": "grey.saas.com", "content": "192.0.2.3", "proxied": false},
                    {"id": "r4", "type": "CNAME", "name": "*.wild.saas.com", "content": "customers.saas.com", "proxied": true}
                ],
                "custom_hostname_settings": {"cname_target": "customers.saas.com"},
                "fallback_origin": {"origin": "fb.saas.com", "status": "active"},
                "custom_hostnames": [{"id": "ch1", "hostname": "shop.example.com"}]
            },
            {
                "zone": {"id": "zc", "name": "example.com", "account": {"id": "a1"}},
                "dns_records": [
                    {"id": "r5", "type": "A", "name": "www.example.com", "content": "192.0.2.9", "proxied": true}
                ]
            }
        ]
    }))
    .expect("base parses");
    state.validate().expect("base is valid");
    state
}

fn ch(id: &str, hostname: &str) -> CustomHostname {
    serde_json::from_value(json!({"id": id, "hostname": hostname})).unwrap()
}

fn put_ch(f: impl FnOnce(&mut CustomHostname)) -> Change {
    let mut h = ch("ch9", "new.example.com");
    f(&mut h);
    Change::PutCustomHostname {
        zone_id: "zp".into(),
        custom_hostname: h,
    }
}

fn put_record(kind: RecordType, name: &str, content: &str) -> Change {
    Change::PutDnsRecord {
        zone_id: "zc".into(),
        record: DnsRecord {
            id: "r9".into(),
            record_type: kind,
            name: name.into(),
            content: content.into(),
            proxied: true,
            ttl: 1,
        },
    }
}

fn big_metadata() -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("blob".into(), json!("x".repeat(4100)));
    m
}

#[test]
fn validation_errors_name_the_field() {
    let zone = |id: &str, name: &str, account: &str| Change::PutZone {
        zone: Zone {
            id: id.into(),
            name: name.into(),
            account: AccountRef { id: account.into() },
            settings: ZoneSettings::default(),
            rulesets: Default::default(),
        },
    };
    let long = format!("{}.example.com", "a.".repeat(125));
    #[rustfmt::skip]
    let cases: Vec<(&str, Change, &str, &str)> = vec![
        ("IP as custom hostname", put_ch(|h| h.hostname = "192.0.2.1".into()), "hostname", "is an IP address"),
        ("zone apex as custom hostname", put_ch(|h| h.hostname = "SAAS.com".into()), "hostname", "the zone's own apex"),
        ("custom hostname too long", put_ch(|h| h.hostname = long.clone()), "hostname", "at most 255"),
        ("custom hostname syntax", put_ch(|h| h.hostname = "bad!.example.com".into()), "hostname", "contains `!`"),
        ("custom hostname trailing dot", put_ch(|h| h.hostname = "new.example.com.".into()), "hostname", "must not end with a dot"),
        ("duplicate custom hostname", put_ch(|h| h.hostname = "Shop.Example.com".into()), "hostname", "already custom hostname `ch1`"),
        ("custom origin is grey", put_ch(|h| h.custom_origin_server = Some("grey.saas.com".into())), "custom_origin_server", "DNS-only record of zone `saas.com`"),
        ("custom origin missing", put_ch(|h| h.custom_origin_server = Some("nope.saas.com".into())), "custom_origin_server", "not a DNS record of zone `saas.com`"),
        ("custom origin in another zone", put_ch(|h| h.custom_origin_server = Some("www.example.com".into())), "custom_origin_server", "not a DNS record of zone `saas.com`"),
        ("custom origin wildcard", put_ch(|h| h.custom_origin_server = Some("*.wild.saas.com".into())), "custom_origin_server", "wildcard is not allowed"),
        ("custom origin IP", put_ch(|h| h.custom_origin_server = Some("192.0.2.1".into())), "custom_origin_server", "is an IP address"),
        ("SNI without custom origin", put_ch(|h| h.custom_origin_sni = Some("x.example.com".into())), "custom_origin_sni", "needs a `custom_origin_server`"),
        ("SNI syntax", put_ch(|h| { h.custom_origin_server = Some("fb.saas.com".into()); h.custom_origin_sni = Some("bad sni".into()) }), "custom_origin_sni", ":request_host_header:"),
        ("metadata over 4 KB", put_ch(|h| h.custom_metadata = Some(big_metadata())), "custom_metadata", "at most 4096"),
        ("metadata on wildcard", put_ch(|h| { h.hostname = "*.example.org".into(); h.custom_metadata = Some(Default::default()) }), "custom_metadata", "not allowed on wildcard"),
        ("ownership token name", put_ch(|h| h.ownership_verification = Some(OwnershipVerification { verification_type: VerificationType::Txt, name: "_cf-custom-hostname.other.com".into(), value: "t".into() })), "ownership_verification.name", "_cf-custom-hostname.new.example.com"),
        ("custom hostname id reused", Change::PutCustomHostname { zone_id: "zc".into(), custom_hostname: ch("ch1", "other.example.org") }, "id", "used by another custom hostname"),
        ("record outside its zone", put_record(RecordType::A, "www.other.org", "192.0.2.1"), "name", "not inside the zone `example.com`"),
        ("A content", put_record(RecordType::A, "a.example.com", "not-an-ip"), "content", "not an IPv4 address"),
        ("AAAA content", put_record(RecordType::Aaaa, "a.example.com", "192.0.2.1"), "content", "not an IPv6 address"),
        ("CNAME content", put_record(RecordType::Cname, "a.example.com", "192.0.2.1"), "content", "is an IP address"),
        ("CNAME to itself", put_record(RecordType::Cname, "a.example.com", "A.example.com"), "content", "points at itself"),
        ("duplicate record name", put_record(RecordType::A, "WWW.example.com", "192.0.2.1"), "name", "another record of the zone"),
        ("record wildcard in the middle", put_record(RecordType::A, "a.*.example.com", "192.0.2.1"), "name", "only allowed as the first label"),
        ("ttl", Change::PutDnsRecord { zone_id: "zc".into(), record: DnsRecord { id: "r9".into(), record_type: RecordType::A, name: "t.example.com".into(), content: "192.0.2.1".into(), proxied: false, ttl: 5 } }, "ttl", "between 30 and 86400"),
        ("record in unknown zone", Change::PutDnsRecord { zone_id: "zz".into(), record: DnsRecord { id: "r9".into(), record_type: RecordType::A, name: "t.example.com".into(), content: "192.0.2.1".into(), proxied: false, ttl: 1 } }, "zone_id", "no zone `zz`"),
        ("zone name taken", zone("z3", "Example.com", "a1"), "name", "already zone `zc`"),
        ("zone of unknown account", zone("z3", "example.org", "a9"), "account.id", "no account `a9`"),
        ("zone name is an IP", zone("z3", "192.0.2.1", "a1"), "name", "is an IP address"),
        ("zone name is a wildcard", zone("z3", "*.example.org", "a1"), "name", "wildcard is not allowed"),
        ("deleting the fallback origin's record", Change::DeleteDnsRecord { zone_id: "zp".into(), id: "r2".into() }, "fallback_origin.origin", "`fb.saas.com` is not a DNS record"),
        ("grey fallback origin", Change::PutFallbackOrigin { zone_id: "zp".into(), fallback_origin: Some(FallbackOrigin { origin: "grey.saas.com".into(), status: FallbackOriginStatus::Active }) }, "fallback_origin.origin", "DNS-only"),
        ("CNAME target outside the zone", Change::PutCustomHostnameSettings { zone_id: "zp".into(), settings: Some(CustomHostnameSettings { cname_target: "www.example.com".into() }) }, "custom_hostname_settings.cname_target", "not a DNS record of zone `saas.com`"),
        ("deleting an account in use", Change::DeleteAccount { id: "a1".into() }, "account.id", "no account `a1`"),
        ("account without name", Change::PutAccount { account: Account { id: "a3".into(), name: " ".into() } }, "name", "must not be empty"),
        ("deleting a missing record", Change::DeleteDnsRecord { zone_id: "zc".into(), id: "r404".into() }, "id", "no DNS record `r404`"),
        ("observing a missing hostname", Change::Observe { zone_id: "zp".into(), custom_hostname_id: "ch404".into(), observation: Observation::Unblock }, "custom_hostname_id", "no custom hostname `ch404`"),
    ];
    let state = base();
    for (case, change, field, message) in cases {
        let err = state.apply(change).expect_err(case);
        assert_eq!(err.field, field, "{case}: {err}");
        assert!(err.message.contains(message), "{case}: {err}");
        assert!(err.to_string().contains(field), "{case}: {err}");
    }
    assert_eq!(state, base(), "a refused change leaves the state as it was");
}

#[test]
fn valid_changes_apply() {
    let state = base();
    let next = state
        .apply(put_ch(|h| {
            h.custom_origin_server = Some("fb.saas.com".into());
            h.custom_origin_sni = Some(REQUEST_HOST_HEADER.into());
            h.custom_metadata = Some(serde_json::from_value(json!({"plan": "pro"})).unwrap());
        }))
        .unwrap();
    assert_eq!(next.zone("zp").unwrap().custom_hostnames.len(), 2);
    let next = next
        .apply(Change::PutZone {
            zone: Zone {
                settings: ZoneSettings {
                    ssl: SslMode::Strict,
                    ..ZoneSettings::default()
                },
                ..next.zone("zp").unwrap().zone.clone()
            },
        })
        .unwrap();
    assert_eq!(
        next.zone("zp").unwrap().dns_records.len(),
        4,
        "PutZone keeps children"
    );
    let next = next.apply(Change::DeleteZone { id: "zc".into() }).unwrap();
    assert!(next.zone("zc").is_none());

    // A batch is validated as a whole: the record the fallback origin needs may
    // be replaced within it, but a batch with one bad change applies nothing.
    let swap = [
        Change::DeleteDnsRecord {
            zone_id: "zp".into(),
            id: "r2".into(),
        },
        Change::PutDnsRecord {
            zone_id: "zp".into(),
            record: DnsRecord {
                id: "r2b".into(),
                record_type: RecordType::Cname,
                name: "fb.saas.com".into(),
                content: "origin.backend.net".into(),
                proxied: true,
                ttl: 1,
            },
        },
    ];
    let swapped = state.apply_all(swap.clone()).unwrap();
    assert_eq!(swapped.zone("zp").unwrap().dns_records.len(), 4);
    let mut bad = swap.to_vec();
    bad.push(Change::DeleteZone { id: "nope".into() });
    assert_eq!(state.apply_all(bad).unwrap_err().field, "id");
}

/// A table cannot hold two objects with one id, so a document that has
/// them is refused as it is read, naming the id.
#[test]
fn duplicate_ids_in_a_document_are_refused() {
    let mut document = serde_json::to_value(base()).unwrap();
    let records = document["zones"][0]["dns_records"].as_array_mut().unwrap();
    let mut twin = records[0].clone();
    twin["name"] = json!("twin.saas.com");
    records.push(twin);
    let error = serde_json::from_value::<State>(document).unwrap_err();
    assert!(
        error.to_string().contains("id `r1` appears twice"),
        "{error}"
    );
}

#[test]
fn json_uses_cloudflare_field_names() {
    let text = json!({
        "id": "ch1",
        "hostname": "shop.example.com",
        "custom_origin_server": "origin.saas.com",
        "custom_origin_sni": ":request_host_header:",
        "custom_metadata": {"tier": "gold"},
        "ssl": {"settings": {"min_tls_version": "1.3"}},
        "status": "moved",
        "verification_errors": ["gone"],
        "ownership_verification": {"type": "txt", "name": "_cf-custom-hostname.shop.example.com", "value": "tok"}
    });
    let hostname: CustomHostname = serde_json::from_value(text.clone()).unwrap();
    assert_eq!(
        hostname.ssl.settings.min_tls_version,
        Some(MinTlsVersion::Tls13)
    );
    assert_eq!(hostname.status, HostnameStatus::Moved);
    assert_eq!(serde_json::to_value(&hostname).unwrap(), text);

    let record = json!({"id": "r1", "type": "AAAA", "name": "a.example.com", "content": "2001:db8::1", "proxied": true, "ttl": 300});
    let parsed: DnsRecord = serde_json::from_value(record.clone()).unwrap();
    assert_eq!(parsed.record_type, RecordType::Aaaa);
    assert_eq!(serde_json::to_value(&parsed).unwrap(), record);

    let zone = json!({"id": "z", "name": "example.com", "account": {"id": "a"}, "settings": {"ssl": "strict"},
        "rulesets": {"http_request_firewall_custom": {"rules": [{"expression": "true", "action": "block", "enabled": true}]}}});
    let parsed: Zone = serde_json::from_value(zone.clone()).unwrap();
    assert_eq!(parsed.settings.ssl, SslMode::Strict);
    assert_eq!(serde_json::to_value(&parsed).unwrap(), zone);

    let unknown = serde_json::from_value::<CustomHostname>(
        json!({"id": "x", "hostname": "a.b.com", "custom_origin": "x"}),
    );
    assert!(unknown.unwrap_err().to_string().contains("custom_origin"));
    let phase = serde_json::from_value::<Zone>(
        json!({"id": "z", "name": "example.com", "account": {"id": "a"}, "rulesets": {"http_request_nope": {}}}),
    );
    assert!(phase.unwrap_err().to_string().contains("http_request_nope"));

    let change: Change = serde_json::from_value(
        json!({"op": "observe", "zone_id": "zp", "custom_hostname_id": "ch1",
        "observation": {"check": "cname", "result": {"ends": "elsewhere", "at": "192.0.2.1"}}}),
    )
    .unwrap();
    assert!(matches!(
        change,
        Change::Observe {
            observation: Observation::Cname {
                result: CnameCheck::Elsewhere { .. }
            },
            ..
        }
    ));
}

/// A write is checked against the index of the rest of the state, not by
/// validating everything: it must accept and refuse exactly what the whole
/// validation does, and leave the index as a fresh build would.
mod incremental {
    use proptest::prelude::*;

    use super::*;
    use crate::state::index::Index;

    /// What validating the whole state after `changes` decides.
    fn whole(state: &State, changes: &[Change]) -> Result<State, ValidationError> {
        let mut next = state.clone();
        let mut touched = Touched::default();
        for change in changes {
            next.mutate(change.clone(), &mut touched)?;
        }
        next.validate()?;
        Ok(next)
    }

    const ZONE_NAMES: &[&str] = &["saas.com", "example.com", "Example.COM", "shop.example.com"];
    const NAMES: &[&str] = &[
        "customers.saas.com",
        "fb.saas.com",
        "grey.saas.com",
        "origin.saas.com",
        "www.example.com",
        "WWW.example.com",
        "shop.example.com",
        "*.wild.saas.com",
        "saas.com",
        "example.com",
        "out.side.org",
        "bad..name",
    ];

    fn id(prefix: &'static str) -> impl Strategy<Value = String> {
        (0..6u8).prop_map(move |i| format!("{prefix}{i}"))
    }

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(NAMES).prop_map(str::to_owned)
    }

    fn zone_id() -> impl Strategy<Value = String> {
        prop::sample::select(&["zp", "zc", "z2"][..]).prop_map(str::to_owned)
    }

    fn record() -> impl Strategy<Value = DnsRecord> {
        let kind = prop::sample::select(&[RecordType::A, RecordType::Aaaa, RecordType::Cname][..]);
        let content = prop::sample::select(
            &[
                "192.0.2.7",
                "2001:db8::1",
                "www.example.com",
                "shop.example.com",
            ][..],
        );
        (id("r"), kind, name(), content, any::<bool>()).prop_map(
            |(id, record_type, name, content, proxied)| DnsRecord {
                id,
                record_type,
                name,
                content: content.into(),
                proxied,
                ttl: 1,
            },
        )
    }

    fn hostname() -> impl Strategy<Value = CustomHostname> {
        let hostnames = prop::sample::select(
            &[
                "shop.example.com",
                "SHOP.example.com",
                "a.example.org",
                "*.example.net",
                "saas.com",
            ][..],
        );
        let origin = prop::option::of(name());
        (id("ch"), hostnames, origin).prop_map(|(id, hostname, origin)| {
            let mut h = ch(&id, hostname);
            h.custom_origin_server = origin;
            h
        })
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (id("a"), prop::sample::select(&["x", " "][..])).prop_map(|(id, name)| {
                Change::PutAccount {
                    account: Account {
                        id,
                        name: name.into(),
                    },
                }
            }),
            id("a").prop_map(|id| Change::DeleteAccount { id }),
            (zone_id(), prop::sample::select(ZONE_NAMES), id("a")).prop_map(
                |(id, name, account)| Change::PutZone {
                    zone: Zone {
                        id,
                        name: name.into(),
                        account: AccountRef { id: account },
                        settings: Default::default(),
                        rulesets: Default::default(),
                    },
                }
            ),
            zone_id().prop_map(|id| Change::DeleteZone { id }),
            (zone_id(), record())
                .prop_map(|(zone_id, record)| Change::PutDnsRecord { zone_id, record }),
            (zone_id(), id("r")).prop_map(|(zone_id, id)| Change::DeleteDnsRecord { zone_id, id }),
            (zone_id(), hostname()).prop_map(|(zone_id, custom_hostname)| {
                Change::PutCustomHostname {
                    zone_id,
                    custom_hostname,
                }
            }),
            (zone_id(), id("ch"))
                .prop_map(|(zone_id, id)| Change::DeleteCustomHostname { zone_id, id }),
            (zone_id(), prop::option::of(name())).prop_map(|(zone_id, origin)| {
                Change::PutFallbackOrigin {
                    zone_id,
                    fallback_origin: origin.map(|origin| FallbackOrigin {
                        origin,
                        status: Default::default(),
                    }),
                }
            }),
            (zone_id(), prop::option::of(name())).prop_map(|(zone_id, target)| {
                Change::PutCustomHostnameSettings {
                    zone_id,
                    settings: target.map(|cname_target| CustomHostnameSettings { cname_target }),
                }
            }),
        ]
    }

    /// `base` with ids renamed into the generators' pools, so that changes
    /// hit existing objects as often as new ones.
    fn start() -> State {
        let text = serde_json::to_string(&base())
            .unwrap()
            .replace("\"r5\"", "\"r0\"")
            .replace("\"ch1\"", "\"ch0\"")
            .replace("\"a1\"", "\"a0\"")
            .replace("\"a2\"", "\"a3\"");
        let state: State = serde_json::from_str(&text).unwrap();
        // A proxied record that only custom hostnames can point at.
        let origin = DnsRecord {
            id: "r5".into(),
            record_type: RecordType::A,
            name: "origin.saas.com".into(),
            content: "192.0.2.5".into(),
            proxied: true,
            ttl: 1,
        };
        let mut user = ch("ch5", "a.example.org");
        user.custom_origin_server = Some("origin.saas.com".into());
        whole(
            &state,
            &[
                Change::PutDnsRecord {
                    zone_id: "zp".into(),
                    record: origin,
                },
                Change::PutCustomHostname {
                    zone_id: "zp".into(),
                    custom_hostname: user,
                },
            ],
        )
        .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn writes_are_judged_as_whole_validation_judges_them(
            batches in prop::collection::vec(prop::collection::vec(change(), 1..4), 1..16)
        ) {
            let mut state = start();
            for changes in batches {
                let incremental = state.apply_all(changes.iter().cloned());
                let whole = whole(&state, &changes);
                prop_assert_eq!(
                    incremental.is_ok(),
                    whole.is_ok(),
                    "{:?}: incremental {:?}, whole {:?}",
                    changes,
                    incremental.as_ref().err(),
                    whole.as_ref().err()
                );
                if let Ok(next) = incremental {
                    prop_assert_eq!(&next.index, &Index::build(&next));
                    state = next;
                }
            }
        }
    }
}
