//! Route-map updates with 1,000,000 hostnames loaded, through the code the
//! edge runs: the real XDP program's routes map (sized as `edge serve` sizes
//! it for that state), `Routes::insert` / `Routes::remove` and
//! `RouteSync::apply` on snapshots built from a `State`.
//!
//! - a batch of new routes inserted, then removed, against an empty map and
//!   against the full map (the same batch, the same process);
//! - filling the map from the 1,000,000-hostname snapshot;
//! - an incremental `RouteSync::apply` for a snapshot that differs in one
//!   hostname and in 10,000 (hostnames blocked), and back; and how much of it
//!   is computing the plan in userspace (`wanted` + `plan`, no syscalls).
//!
//! Needs root (loads the program). Bounded: every case runs ROUNDS times.
//! Run: `cargo xtask bench-routes` (or `cargo bench -p edge-userspace --bench
//! routes`); `EDGE_BENCH_ROUTES=100000` picks a smaller state.

use std::time::{Duration, Instant};

use edge_userspace::chain::Snapshot;
use edge_userspace::state::{HostnameStatus, State};
use edge_userspace::xdp::{
    Classifier, LoadOptions, RouteAction, RouteSync, RouteTarget, Routes, plan, routes_max, wanted,
};
use serde_json::json;

const BATCH: usize = 10_000;
const ROUNDS: usize = 5;

fn state(hostnames: usize) -> State {
    let custom: Vec<_> = (0..hostnames)
        .map(|i| {
            json!({
                "id": format!("{i:032x}"),
                "hostname": format!("shop{i}.customer{}.com", i / 10),
                "status": "active",
            })
        })
        .collect();
    serde_json::from_value(json!({
        "accounts": [{"id": "acct-provider", "name": "Provider"}],
        "zones": [{
            "zone": {"id": "zp", "name": "saasprovider.com", "account": {"id": "acct-provider"}},
            "dns_records": [
                {"id": "r1", "type": "CNAME", "name": "customers.saasprovider.com", "content": "origin.saasprovider.com", "proxied": true},
                {"id": "r2", "type": "A", "name": "origin.saasprovider.com", "content": "192.0.2.1", "proxied": true}
            ],
            "custom_hostname_settings": {"cname_target": "customers.saasprovider.com"},
            "fallback_origin": {"origin": "origin.saasprovider.com", "status": "active"},
            "custom_hostnames": custom,
        }]
    }))
    .expect("the bench state is valid")
}

/// `count` hostnames of the state blocked: a snapshot differing in `count` routes.
fn blocked(base: &State, count: usize) -> State {
    let mut state = base.clone();
    for hostname in state.zones[0].custom_hostnames.iter_mut().take(count) {
        hostname.status = HostnameStatus::Blocked;
    }
    state
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn rate(count: usize, time: Duration) -> f64 {
    count as f64 / time.as_secs_f64()
}

/// Median time to insert the batch, then to remove it again.
fn batch(routes: &mut Routes, names: &[String]) -> (Duration, Duration) {
    let target = RouteTarget {
        chain_id: 1,
        queue: 0,
        action: RouteAction::Pass,
    };
    let (mut inserts, mut removals) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for name in names {
            routes.insert(name, target).unwrap();
        }
        inserts.push(start.elapsed());
        let start = Instant::now();
        for name in names {
            assert!(routes.remove(name).unwrap());
        }
        removals.push(start.elapsed());
    }
    (median(inserts), median(removals))
}

/// Median time of `RouteSync::apply` to `next` and back to `base`.
fn incremental(
    sync: &mut RouteSync,
    routes: &mut Routes,
    base: &Snapshot,
    next: &Snapshot,
    changed: usize,
) -> (Duration, Duration) {
    let (mut there, mut back) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        assert_eq!(sync.apply(routes, next).unwrap(), changed);
        there.push(start.elapsed());
        let start = Instant::now();
        assert_eq!(sync.apply(routes, base).unwrap(), changed);
        back.push(start.elapsed());
    }
    (median(there), median(back))
}

fn main() {
    let hostnames: usize = std::env::var("EDGE_BENCH_ROUTES")
        .map(|n| n.parse().expect("EDGE_BENCH_ROUTES is a number"))
        .unwrap_or(1_000_000);
    let started = Instant::now();
    let base_state = state(hostnames);
    let base = Snapshot::build(&base_state);
    let needed = wanted(&base).len();
    let max = routes_max(None, needed);
    println!(
        "state: {hostnames} active custom hostnames, {needed} routes; routes map {max} entries \
         (built in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let mut classifier = Classifier::load(LoadOptions {
        routes_max: Some(max),
        ..LoadOptions::default()
    })
    .unwrap_or_else(|e| panic!("the XDP program must load (root, kernel >= 5.18): {e:?}"));
    let routes = &mut classifier.maps.routes;
    let names: Vec<String> = (0..BATCH).map(|i| format!("new{i}.bench.test")).collect();

    let (empty_insert, empty_remove) = batch(routes, &names);
    let mut sync = RouteSync::default();
    let start = Instant::now();
    assert_eq!(sync.apply(routes, &base).unwrap(), needed);
    let fill = start.elapsed();
    let (full_insert, full_remove) = batch(routes, &names);

    let one = base.rebuild(&blocked(&base_state, 1));
    let many = base.rebuild(&blocked(&base_state, BATCH));
    let (one_there, one_back) = incremental(&mut sync, routes, &base, &one, 1);
    let (many_there, many_back) = incremental(&mut sync, routes, &base, &many, BATCH);
    let plan_only = |next: &Snapshot| {
        let current = wanted(&base);
        median(
            (0..ROUNDS)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box(plan(&current, &wanted(next)));
                    start.elapsed()
                })
                .collect(),
        )
    };
    let (one_plan, many_plan) = (plan_only(&one), plan_only(&many));

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("\n| case | time | rate | vs empty map |");
    println!("|---|---|---|---|");
    println!(
        "| insert {BATCH} new routes, empty map | {:.1} ms | {:.0} /s | 1.00 |",
        ms(empty_insert),
        rate(BATCH, empty_insert)
    );
    println!(
        "| insert {BATCH} new routes, {needed} loaded | {:.1} ms | {:.0} /s | {:.2} |",
        ms(full_insert),
        rate(BATCH, full_insert),
        full_insert.as_secs_f64() / empty_insert.as_secs_f64()
    );
    println!(
        "| remove {BATCH} routes, empty map | {:.1} ms | {:.0} /s | 1.00 |",
        ms(empty_remove),
        rate(BATCH, empty_remove)
    );
    println!(
        "| remove {BATCH} routes, {needed} loaded | {:.1} ms | {:.0} /s | {:.2} |",
        ms(full_remove),
        rate(BATCH, full_remove),
        full_remove.as_secs_f64() / empty_remove.as_secs_f64()
    );
    println!(
        "| fill: `RouteSync::apply`, empty → {needed} | {:.0} ms | {:.0} /s | |",
        ms(fill),
        rate(needed, fill)
    );
    for (what, changed, there, back, plan) in [
        ("1 hostname blocked", 1, one_there, one_back, one_plan),
        (
            "10,000 hostnames blocked",
            BATCH,
            many_there,
            many_back,
            many_plan,
        ),
    ] {
        println!(
            "| `RouteSync::apply`, {what} (and back) | {:.0} ms ({:.0} ms) | {changed} routes | \
             of which plan (`wanted` + `plan`, no syscall): {:.0} ms |",
            ms(there),
            ms(back),
            ms(plan)
        );
    }
    println!(
        "\n(medians of {ROUNDS} rounds; total {:.0} s)",
        started.elapsed().as_secs_f64()
    );
}
