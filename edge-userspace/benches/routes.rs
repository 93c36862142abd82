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
//!   is computing the plan in userspace (`RouteSync::plan`, no syscalls); then
//!   the same with derived snapshots (`Snapshot::update`), whose changed
//!   names are all `RouteSync::apply` looks at.
//!
//! - one custom-hostname write (a new active hostname) at that size, step by
//!   step as the control socket runs it: `State::apply_all` (clone, change,
//!   checks of what it touched), the whole-state path (`State::validate`,
//!   `Routing::build`, `RouteSync::apply_all`) and the derived one
//!   (`affected`, `Routing::update`, `RouteSync::apply`), and the durable
//!   `Store::commit`.
//!
//! Needs root (loads the program). Bounded: every case runs ROUNDS times.
//! Run: `cargo xtask bench-routes` (or `cargo bench -p edge-userspace --bench
//! routes`); `EDGE_BENCH_ROUTES=100000` picks a smaller state.

use std::time::{Duration, Instant};

use edge_userspace::chain::{Snapshot, affected};
use edge_userspace::control::store::Store;
use edge_userspace::routing::Routing;
use edge_userspace::state::{Change, CustomHostname, HostnameStatus, State};
use edge_userspace::xdp::{
    Classifier, LoadOptions, RouteAction, RouteSync, RouteTarget, Routes, routes_max, wanted,
};
use serde_json::json;

/// The allocator the `edge` binary runs with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let block = base
        .zone("zp")
        .expect("provider zone")
        .custom_hostnames
        .iter()
        .take(count)
        .map(|hostname| Change::PutCustomHostname {
            zone_id: "zp".into(),
            custom_hostname: CustomHostname {
                status: HostnameStatus::Blocked,
                ..hostname.clone()
            },
        });
    base.apply_all(block).expect("blocking is a valid write")
}

/// The change the control socket makes for `POST /zones/zp/custom_hostnames`
/// of an active hostname (the edge's own checks activate it in the same write).
fn new_hostname(round: usize) -> Change {
    serde_json::from_value(json!({
        "op": "put_custom_hostname",
        "zone_id": "zp",
        "custom_hostname": {
            "id": format!("new{round:029x}"),
            "hostname": format!("write{round}.newcustomer.com"),
            "status": "active",
        },
    }))
    .expect("a valid change")
}

/// Medians of each step of one custom-hostname write, run as the control
/// socket runs it, on state `base` whose routes `sync` has installed: the
/// derived path (`affected`, `Routing::update`, the changed names synced)
/// and, in the same rounds, the whole-state path it replaced.
fn write_steps(
    base: &State,
    sync: &mut RouteSync,
    routes: &mut Routes,
) -> Vec<(&'static str, Duration)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-routes");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir).unwrap();
    let seed = Instant::now();
    store.replace(base).unwrap();
    let seed = seed.elapsed();
    let routing = Routing::build(base, None).unwrap();
    sync.apply_all(routes, routing.snapshot()).unwrap();
    let mut steps: Vec<(&'static str, Vec<Duration>)> = [
        "`State::clone`",
        "old: `State::validate` (the whole state)",
        "`State::apply_all` (clone, change, checks of what it touched)",
        "old: `Routing::build` (validate, zones, `Snapshot::rebuild`)",
        "old: `RouteSync::apply_all` (every name compared)",
        "new: `affected` (names the change touches)",
        "new: `Routing::update` (`Snapshot::update` of 1 name)",
        "new: `RouteSync::apply` (the changed name only)",
        "`Store::commit` (redb, fsync)",
    ]
    .into_iter()
    .map(|name| (name, Vec::new()))
    .collect();
    for round in 0..ROUNDS {
        let mut time = |step: usize, start: Instant| steps[step].1.push(start.elapsed());
        let start = Instant::now();
        std::hint::black_box(base.clone());
        time(0, start);
        let changes = vec![new_hostname(round)];
        let start = Instant::now();
        let next = base.apply_all(changes.iter().cloned()).unwrap();
        time(2, start);
        let start = Instant::now();
        base.validate().unwrap();
        time(1, start);

        // The new path first, so that the old one's gigabytes of
        // allocation do not land in its measurements.
        let start = Instant::now();
        let narrow = affected(base, &next, &changes).expect("a narrow change");
        time(5, start);
        let start = Instant::now();
        let updated = routing.update(&next, &narrow).unwrap();
        time(6, start);
        let start = Instant::now();
        assert_eq!(sync.apply(routes, updated.snapshot()).unwrap(), 1);
        time(7, start);
        let start = Instant::now();
        store.commit(&changes, &next).unwrap();
        time(8, start);
        sync.apply_all(routes, routing.snapshot()).unwrap();

        let start = Instant::now();
        let rebuilt = Routing::build(&next, Some(&routing)).unwrap();
        time(3, start);
        let start = Instant::now();
        assert_eq!(sync.apply_all(routes, rebuilt.snapshot()).unwrap(), 1);
        time(4, start);
        // Back to the base state, outside the measurement.
        sync.apply_all(routes, routing.snapshot()).unwrap();
    }
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
    println!(
        "(store seeded with the whole state in {:.1} s)",
        seed.as_secs_f64()
    );
    steps
        .into_iter()
        .map(|(name, samples)| (name, median(samples)))
        .collect()
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

/// Median time of `RouteSync::apply_all` (every name compared) to `next` and back to `base`.
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
        assert_eq!(sync.apply_all(routes, next).unwrap(), changed);
        there.push(start.elapsed());
        let start = Instant::now();
        assert_eq!(sync.apply_all(routes, base).unwrap(), changed);
        back.push(start.elapsed());
    }
    (median(there), median(back))
}

/// Medians of deriving the snapshot where `changed` hostnames are blocked
/// (`Snapshot::update`), of `RouteSync::apply` to it (the changed names
/// only) and of the same back to `base_state`; `sync` holds `base` before and after.
fn derived(
    sync: &mut RouteSync,
    routes: &mut Routes,
    base: &Snapshot,
    base_state: &State,
    next_state: &State,
    changed: usize,
) -> (Duration, Duration, Duration) {
    let names: Vec<String> = next_state
        .zones()
        .iter()
        .next()
        .expect("provider zone")
        .custom_hostnames
        .iter()
        .take(changed)
        .map(|h| h.hostname.to_ascii_lowercase())
        .collect();
    let (mut updates, mut there, mut back) = (Vec::new(), Vec::new(), Vec::new());
    sync.apply_all(routes, base).unwrap();
    let mut current = base.update(base_state, &[], &[]);
    assert_eq!(sync.apply(routes, &current).unwrap(), 0);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let next = current.update(next_state, &names, &[]);
        updates.push(start.elapsed());
        let start = Instant::now();
        assert_eq!(sync.apply(routes, &next).unwrap(), changed);
        there.push(start.elapsed());
        current = next.update(base_state, &names, &[]);
        let start = Instant::now();
        assert_eq!(sync.apply(routes, &current).unwrap(), changed);
        back.push(start.elapsed());
    }
    sync.apply_all(routes, base).unwrap();
    (median(updates), median(there), median(back))
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
    assert_eq!(sync.apply_all(routes, &base).unwrap(), needed);
    let fill = start.elapsed();
    let (full_insert, full_remove) = batch(routes, &names);

    let (one_state, many_state) = (blocked(&base_state, 1), blocked(&base_state, BATCH));
    let one = base.rebuild(&one_state);
    let many = base.rebuild(&many_state);
    let (one_there, one_back) = incremental(&mut sync, routes, &base, &one, 1);
    let (many_there, many_back) = incremental(&mut sync, routes, &base, &many, BATCH);
    // `sync` holds `base` again after the rounds above.
    let plan_only = |next: &Snapshot| {
        median(
            (0..ROUNDS)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box(sync.plan(next));
                    start.elapsed()
                })
                .collect(),
        )
    };
    let (one_plan, many_plan) = (plan_only(&one), plan_only(&many));
    let (one_derived, many_derived) = (
        derived(&mut sync, routes, &base, &base_state, &one_state, 1),
        derived(&mut sync, routes, &base, &base_state, &many_state, BATCH),
    );
    let steps = write_steps(&base_state, &mut sync, routes);
    let total = |prefix: &str| -> Duration {
        steps
            .iter()
            .filter(|(step, _)| {
                !step.starts_with("old") && !step.starts_with("new") || step.starts_with(prefix)
            })
            .filter(|(step, _)| *step != "`State::clone`")
            .map(|(_, time)| *time)
            .sum()
    };
    let (old_total, new_total) = (total("old"), total("new"));

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
        "| fill: `RouteSync::apply_all`, empty → {needed} | {:.0} ms | {:.0} /s | |",
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
            "| `RouteSync::apply_all`, {what} (and back) | {:.0} ms ({:.0} ms) | {changed} routes | \
             of which plan (`RouteSync::plan`, no syscall): {:.0} ms |",
            ms(there),
            ms(back),
            ms(plan)
        );
    }
    for (what, changed, (update, there, back)) in [
        ("1 hostname blocked", 1, one_derived),
        ("10,000 hostnames blocked", BATCH, many_derived),
    ] {
        println!(
            "| derived snapshot (`Snapshot::update`: {:.0} ms), `RouteSync::apply`, {what} \
             (and back) | {:.1} ms ({:.1} ms) | {changed} routes | changed names only |",
            ms(update),
            ms(there),
            ms(back)
        );
    }
    println!("\n| one custom-hostname write, {hostnames} hostnames loaded: step | time |");
    println!("|---|---|");
    for (step, time) in steps {
        println!("| {step} | {:.1} ms |", ms(time));
    }
    println!(
        "| whole write, old path (apply_all + whole validation + build + apply_all + commit) | {:.0} ms |",
        ms(old_total)
    );
    println!(
        "| whole write, new path (apply_all + affected + update + apply + commit) | {:.0} ms \
         ({:.0}x faster) |",
        ms(new_total),
        old_total.as_secs_f64() / new_total.as_secs_f64()
    );
    println!(
        "\n(medians of {ROUNDS} rounds; total {:.0} s)",
        started.elapsed().as_secs_f64()
    );
}
