//! Chain resolution at scale: 1,000,000 custom hostnames across 10 provider
//! zones, 100,000 zones in all, a third of the hostnames O2O through a
//! customer zone of this edge. Measures exact hits (a hostname hot in cache,
//! and random hostnames over the whole index), a wildcard hit and a miss, and
//! counts the bytes the snapshot allocates with a counting global allocator.
//! The memory floor is measured in the same run: the latency of a random read
//! from a buffer as large as the snapshot, on ordinary pages and on
//! transparent huge pages (as the index's tables are), because a random hit
//! over a million hostnames costs what this machine's memory costs.
//!
//! Run: `cargo bench -p edge-userspace --bench resolve`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Instant;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge_userspace::chain::Snapshot;
use edge_userspace::state::{
    Account, AccountRef, CustomHostname, CustomHostnameSettings, DnsRecord, FallbackOrigin,
    FallbackOriginStatus, HostnameStatus, RecordType, State, Zone, ZoneSettings, ZoneState,
};

/// Counts live heap bytes and allocation calls, so the snapshot's size is
/// measured, not estimated.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const HOSTNAMES: usize = 1_000_000;
const ZONES: usize = 100_000;
const PROVIDERS: usize = 10;
const CUSTOMERS: usize = ZONES - PROVIDERS;
const WILDCARDS: usize = 1_000;

fn hostname(j: usize) -> String {
    format!("shop{j}.customer{}.com", j % CUSTOMERS)
}

/// Cloudflare's ids are 32 hex digits; use as many.
fn id(kind: u8, n: usize) -> String {
    format!("{kind:02x}{n:030x}")
}

fn record(id: String, name: String, record_type: RecordType, content: String) -> DnsRecord {
    DnsRecord {
        id,
        record_type,
        name,
        content,
        proxied: true,
        ttl: 1,
    }
}

fn zone(id: String, name: String, account: String) -> ZoneState {
    ZoneState::new(Zone {
        id,
        name,
        account: AccountRef { id: account },
        settings: ZoneSettings::default(),
        rulesets: Default::default(),
    })
}

fn custom_hostname(n: usize, hostname: String) -> CustomHostname {
    let mut ch: CustomHostname =
        serde_json::from_value(serde_json::json!({"id": id(3, n), "hostname": hostname}))
            .expect("custom hostname");
    ch.status = HostnameStatus::Active;
    ch
}

fn state() -> State {
    let (mut accounts, mut zones) = (Vec::new(), Vec::new());
    for p in 0..PROVIDERS {
        accounts.push(Account {
            id: format!("provider{p}"),
            name: format!("Provider {p}"),
        });
        let name = format!("saas{p}.com");
        let mut zs = zone(id(1, p), name.clone(), format!("provider{p}"));
        zs.dns_records.put(record(
            id(2, p * 2),
            format!("customers.{name}"),
            RecordType::A,
            "192.0.2.10".into(),
        ));
        zs.dns_records.put(record(
            id(2, p * 2 + 1),
            format!("fallback.{name}"),
            RecordType::A,
            "192.0.2.20".into(),
        ));
        zs.custom_hostname_settings = Some(CustomHostnameSettings {
            cname_target: format!("customers.{name}"),
        });
        zs.fallback_origin = Some(FallbackOrigin {
            origin: format!("fallback.{name}"),
            status: FallbackOriginStatus::Active,
        });
        zones.push(zs);
    }
    for c in 0..CUSTOMERS {
        if c % 10 == 0 {
            accounts.push(Account {
                id: format!("customer{}", c / 10),
                name: format!("Customer {}", c / 10),
            });
        }
        zones.push(zone(
            id(1, PROVIDERS + c),
            format!("customer{c}.com"),
            format!("customer{}", c / 10),
        ));
    }
    for j in 0..HOSTNAMES {
        let p = j % PROVIDERS;
        if j % 3 == 0 {
            // A proxied CNAME in the customer's own zone: an O2O chain.
            let c = j % CUSTOMERS;
            zones[PROVIDERS + c].dns_records.put(record(
                id(4, j),
                hostname(j),
                RecordType::Cname,
                format!("customers.saas{p}.com"),
            ));
        }
        zones[p]
            .custom_hostnames
            .put(custom_hostname(j, hostname(j)));
    }
    for w in 0..WILDCARDS {
        zones[w % PROVIDERS].custom_hostnames.put(custom_hostname(
            HOSTNAMES + w,
            format!("*.tenant{w}.saasapps.net"),
        ));
    }
    let state = State::new(accounts.into_iter().collect(), zones.into_iter().collect());
    state.validate().expect("bench state is valid");
    state
}

fn bench(c: &mut Criterion) {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let state = state();
    println!(
        "state (the source objects, not part of the index): {} MiB",
        (LIVE_BYTES.load(Ordering::Relaxed) - before) / (1 << 20)
    );
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let started = Instant::now();
    let snapshot = Snapshot::build(&state);
    let built = started.elapsed();
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
    let started = Instant::now();
    let rebuilt = snapshot.rebuild(&state);
    println!(
        "build: {:.2} s, rebuild keeping ids: {:.2} s",
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(rebuilt);
    let entries = snapshot.len();
    println!(
        "snapshot: {entries} hostnames ({HOSTNAMES} custom hostnames, {WILDCARDS} wildcards), \
         {ZONES} zones, {} MiB, {:.1} bytes per hostname",
        bytes / (1 << 20),
        bytes as f64 / entries as f64
    );

    // Random order over all hostnames: the index is far larger than the caches.
    let mut order: Vec<usize> = (0..HOSTNAMES).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..order.len()).rev() {
        seed = xorshift(seed);
        order.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    // The names to look up sit in one buffer read front to back, as a request's
    // host would be in cache already: the misses measured are the index's.
    let mut arena = String::new();
    let mut queries: Vec<(usize, usize)> = Vec::new();
    for &j in order.iter().take(1 << 19) {
        let name = hostname(j);
        queries.push((arena.len(), arena.len() + name.len()));
        arena.push_str(&name);
    }
    let query = |i: usize| {
        let (start, end) = queries[i & ((1 << 19) - 1)];
        &arena[start..end]
    };

    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    for q in (0..queries.len()).map(query) {
        let chain = snapshot
            .resolve(q)
            .expect("every query is a custom hostname");
        black_box(chain);
    }
    black_box(
        snapshot
            .resolve("x.tenant7.saasapps.net")
            .expect("wildcard"),
    );
    black_box(snapshot.resolve("nohost.nowhere.org").expect_err("miss"));
    println!(
        "allocations during {} lookups: {}",
        queries.len() + 2,
        ALLOCATIONS.load(Ordering::Relaxed) - allocations
    );

    let floor = Floor::new(bytes.max(0) as usize, false);
    let floor_huge = Floor::new(bytes.max(0) as usize, true);
    println!(
        "transparent huge pages in this process (index tables and one floor buffer): {} MiB",
        anon_huge_pages_kib() / 1024
    );
    let lookups = Lookups {
        snapshot: &snapshot,
        query: &query,
        floor: &floor,
        floor_huge: &floor_huge,
    };
    lookups.run(c, "resolve");
    // The machine is shared: thread CPU time leaves out the time other
    // processes hold the core, which wall-clock time counts.
    let mut cpu = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .configure_from_args();
    lookups.run(&mut cpu, "resolve_cpu_time");
}

struct Lookups<'a, Q: Fn(usize) -> &'a str> {
    snapshot: &'a Snapshot,
    query: &'a Q,
    floor: &'a Floor,
    floor_huge: &'a Floor,
}

/// `AnonHugePages` of `/proc/self/smaps_rollup`: whether the kernel gave
/// the huge pages asked for, since `MADV_HUGEPAGE` is only advice.
fn anon_huge_pages_kib() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("AnonHugePages:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A buffer the size of the snapshot whose cache lines form one random cycle:
/// the baseline for the random-hit cases, since a hit is at least one read
/// from memory (the hostname's record). One cycle through every line
/// (Sattolo's shuffle), because a random mapping would soon fall into a short
/// loop that stays in cache.
struct Floor {
    words: Vec<u64>,
}

impl Floor {
    const LINE: usize = 64 / std::mem::size_of::<u64>();

    /// `huge`: on transparent huge pages, as the index's tables are.
    fn new(bytes: usize, huge: bool) -> Floor {
        let lines = (bytes / 64).max(2);
        let mut order: Vec<usize> = (0..lines).collect();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for i in (1..lines).rev() {
            seed = xorshift(seed);
            order.swap(i, (seed % i as u64) as usize);
        }
        let mut words: Vec<u64> = Vec::with_capacity(lines * Self::LINE);
        if huge {
            const HUGE: usize = 2 << 20;
            let start = (words.as_ptr() as usize).next_multiple_of(HUGE);
            let end = (words.as_ptr() as usize + lines * 64) / HUGE * HUGE;
            // SAFETY: the range lies inside `words`' untouched allocation;
            // the advice changes how it is backed, not what it holds.
            let rc = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
            };
            assert_eq!(rc, 0, "madvise(MADV_HUGEPAGE) failed");
        }
        words.resize(lines * Self::LINE, 0);
        for (i, &line) in order.iter().enumerate() {
            words[i * Self::LINE] = (line * Self::LINE) as u64;
        }
        Floor { words }
    }

    /// The next word of the chase.
    fn at(&self, word: u64) -> u64 {
        self.words[word as usize]
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^ (x << 17)
}

impl<'a, Q: Fn(usize) -> &'a str> Lookups<'a, Q> {
    fn run<M: Measurement>(&self, c: &mut Criterion<M>, group: &str) {
        let (snapshot, query) = (self.snapshot, self.query);
        let mut g = c.benchmark_group(group);
        // Each read's address comes from the previous one, as a pointer chase:
        // the latency of one random read, which the CPU cannot overlap.
        for (name, floor) in [
            ("floor_random_read_latency", self.floor),
            ("floor_random_read_latency_huge_pages", self.floor_huge),
        ] {
            let mut x = 0;
            g.bench_function(name, |b| {
                b.iter(|| {
                    x = floor.at(black_box(x));
                    x
                })
            });
        }
        let hot = hostname(123_456);
        g.bench_function("exact_hit_hot", |b| {
            b.iter(|| snapshot.resolve(black_box(&hot)))
        });
        let mut i = 0;
        g.bench_function("exact_hit_random_1m", |b| {
            b.iter(|| {
                i += 1;
                snapshot.resolve(black_box(query(i)))
            })
        });
        // Each lookup's name chosen by the previous one's result, as the
        // floor's reads are: the latency of a hit, with no overlap between
        // consecutive lookups.
        let mut d = 0;
        g.bench_function("exact_hit_random_1m_dependent", |b| {
            b.iter(|| {
                let chain = snapshot.resolve(query(d)).expect("a hit");
                // The chain's address as the record stores it: known only
                // once the record has been read.
                d += 1 + (black_box(Arc::as_ptr(chain) as usize) & 1);
            })
        });
        // What the router reads of the chain next (id, O2O, stages, origin):
        // the chain lives behind the record, one more line.
        let mut r = 0;
        g.bench_function("exact_hit_random_1m_then_read_chain", |b| {
            b.iter(|| {
                r += 1;
                let chain = snapshot.resolve(black_box(query(r))).expect("a hit");
                (chain.id, chain.o2o, chain.stages.len(), chain.origin.port)
            })
        });
        // A working set of popular hostnames that fits the last-level cache.
        let mut k = 0;
        g.bench_function("exact_hit_random_64k", |b| {
            b.iter(|| {
                k += 1;
                snapshot.resolve(black_box(query(k & 0xffff)))
            })
        });
        let upper = hot.to_ascii_uppercase() + ".";
        g.bench_function("exact_hit_upper_case_trailing_dot", |b| {
            b.iter(|| snapshot.resolve(black_box(&upper)))
        });
        let wildcard: Vec<String> = (0..WILDCARDS)
            .map(|w| format!("store.tenant{w}.saasapps.net"))
            .collect();
        let mut w = 0;
        g.bench_function("wildcard_hit", |b| {
            b.iter(|| {
                w = (w + 1) % WILDCARDS;
                snapshot.resolve(black_box(&wildcard[w]))
            })
        });
        let misses: Vec<String> = (0..1024)
            .map(|m| format!("nohost{m}.nowhere{m}.org"))
            .collect();
        let mut m = 0;
        g.bench_function("miss", |b| {
            b.iter(|| {
                m = (m + 1) & 1023;
                snapshot.resolve(black_box(&misses[m]))
            })
        });
        g.finish();
    }
}

/// CPU time of the benchmark thread (`CLOCK_THREAD_CPUTIME_ID`).
struct ThreadCpuTime;

fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_nanos()
    }

    fn end(&self, started: u64) -> u64 {
        thread_cpu_nanos() - started
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanoseconds
    }
}

struct Nanoseconds;

impl ValueFormatter for Nanoseconds {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        "ns (cpu)"
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        _throughput: &Throughput,
        _values: &mut [f64],
    ) -> &'static str {
        "ns (cpu)"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
