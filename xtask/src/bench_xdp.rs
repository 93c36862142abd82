//! `cargo xtask bench-xdp`: nanoseconds per packet of the XDP classifier,
//! measured with `BPF_PROG_TEST_RUN` and a large repeat count, against a
//! trivial XDP_PASS program (the floor) in the same run.
//!
//! The hellos are real rustls 0.23 ClientHellos captured as bytes (xtask must
//! stay light: it runs before anything is installed), for
//! `shop.example.com`; the miss and drop cases swap in names of the same
//! length, so all three walk exactly the same bytes.
//!
//! Inside the repeat loop every run sees the same frame, so recording its
//! flow replaces an existing LRU entry. Real ClientHellos come from new
//! flows: the last two rows run one frame per call from ever new clients (the
//! flow map fills, then evicts), against the trivial program run the same way.
//!
//! With `BENCH_XDP_AGAINST=<object>` a second build is measured in the same
//! run, in turn with this one, and the table gains its columns and the change.

use std::time::Duration;

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, PerCpuHashMap, PerCpuValues};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use edge_common::maps::{
    ACTION_DROP, ACTION_PASS, CHAIN_COUNTERS, ChainCounters, FLOWS_MAX, LISTEN_PORTS, LISTEN_TLS,
    ROUTES, Route,
};
use edge_common::sni;

use crate::ebpf;
use crate::run::root;

/// Runs per measurement; the kernel reports the mean time of one run.
const REPEAT: u32 = 2_000_000;
/// Measurements per case; the median is reported.
const ROUNDS: usize = 7;
const ROUTED: &[u8] = b"shop.example.com";
const UNKNOWN: &[u8] = b"miss.example.com";
const BLOCKED: &[u8] = b"drop.example.com";

/// rustls TLS 1.3 ClientHello, classic key shares (X25519, P-256), 251 bytes,
/// ten extensions with `server_name` moved last: the longest walk.
const CLASSIC_HELLO: &str = concat!(
    "16030100f6010000f203031e8a8ada6731c00e7a329afd966e5c8d17fe3fbf23b5fadb640a85fa750bfc1120",
    "6d8ca17d2bc9e3b84a16ec0a8467eee3c77815c24c1b2399b0c7347e18eed92d0014130213011303c02cc02b",
    "cca9c030c02fcca800ff0100009500230000002d00020101000500050100000000000a00080006001d001700",
    "18002b00050403040303000d001c001a05030403060308070806080508040601050104010904090509060033",
    "00260024001d00205eac5b21374267d2aa067c97eb393dd8da236cbe0ece77aa2bd5fa7393772b3a000b0002",
    "01000017000000000015001300001073686f702e6578616d706c652e636f6d",
);

/// rustls TLS 1.3 ClientHello with the X25519MLKEM768 key share, 1473 bytes,
/// `server_name` seventh of ten, as rustls ordered it.
const PQ_HELLO: &str = concat!(
    "16030105bc010005b8030382c016b76c57af3027b6bc78789ab278cee3c2055be8f7ccceefe83afbe8ac4520",
    "6e7874281375fa488436d1b90cca8d7e7aec8beb91e064e0719cb0b9d03d6a6c0014130213011303c02cc02b",
    "cca9c030c02fcca800ff0100055b00230000000b00020100002d00020101000d001c001a0503040306030807",
    "080608050804060105010401090409050906000a000a000811ec001d00170018003304ea04e811ec04c0ebd3",
    "b4a3222d9c15633df170bb52c9dcb66ddc04063b795bbfe87fcdc957da22904e0931d2f6c506c7684ec688c9",
    "da1a44e83759626751d0b9ebc97476fc634a15c55e8c73a3f7cde2d9aa597a4b649513a0175905b78e7fc995",
    "56d0033600a777382a425b9ae5744e6a69c6aff6cbdc82a7e9167291d145b7b180e85498bd274027a9144856",
    "07b455363459b23801b8dab2ae1f8a68d90747aa08a08bc15dbf367d913361c9a84b543655bd05b78b540434",
    "c7bc5e3c2400e0ad4f1505ddf155fa520ef06aa230b97cdee224f292a01f8b9549978ba344b0208957c56977",
    "43c8c024c94cb99c6929b9b67e36c3f50761a064772bd2aad1a663d545bada89507fb1ab110857f033b5c6bc",
    "cc6ff98e469527754a4340e1be38fc1bcc9acf9219bf4814740ec68b5a868afd82212057af8abc955de159bb",
    "22c862282764a1458b2a9c6818beccda51533b721aba578bf4a8fbdc90c87b6edfdb05de7875e36881fd120a",
    "0053b52493005cbb08f4d25f52899ad4869106cb664fb9b3f6f001cf841772b74290887cb72384c4c702ecd6",
    "3894b15f0d595856e3298cabcba6e53b8d690703046556b58451a25c414787bd785c50118c99f7ad2c6998a2",
    "243206a855e7e47e8bd5a62ac35c6e46c8bfcb22c42c88a3f458326336aa600078711391da4358714cac0004",
    "e0cc8afd262851d84a2613b053e5cb6ba9489c2657f2a2b26696062dccbca4ccc3a4528ade99c24f4a9d5019",
    "20856c544c68cff79bcf2ff047bde64238a68e17934d35b834667b35c8c51e75c3131deab0e6a916b660acc3",
    "d514ee50a5285c7138572eed94b266648d2eb669d2ba8eec595aad52161c002d8be51a1c7241bd1c19f7869b",
    "03608b2c72c00f1445361919e4f64f81bc1af53165a7db1632380f11e8ca5dd59ffdc704a0e78ffe01ce27a6",
    "77d319a71a208938307cfaa0604027b70d503388d35ed46cc0281c2dfcb480bd5885bdbbb50141b443a380a5",
    "5a0270f425d0f3a321f12bf7a700fc6719d66c07ace553211727fff147ac22bd715ba6e92340cd62ba2dd16f",
    "a3a80d7db93dc684a025bb5ca607aadf361ed8d786609c3dfa25013d530e4b233beb1031b4b525bce7947cb6",
    "a3e35c5804888162c7516b05c33caa6be3c4a6384c139a23484c84cabe0c45a77b886bccbc03e8749ba5c5c6",
    "db7f6e9412eb1a4e54d37939c8cd166162dc2b94b813a1c0cc2db87353f982b9ba572cc76a127327a31cba4b",
    "ff1a80ffe7715ac73b34bb04a367944f6a39fb378b6775a996d5c89f6b4f9468c4741c16a1cb51a25b5347c2",
    "7f491c46688821f3eb5573e75dc382a4dc9a873f391f5964a6778a7ecfc961d8fa30650129fad36881446d65",
    "646d247014d978c1377755e2bc46c463a59c894811b21c7ed60241861eb104aa4186393253a8fe1899993267",
    "13283812c8c85c275dd134a3f919c6a36458909b222f0780714393e94869e99c8ea76888ff3bad9d3a5cdcc4",
    "c4873c1fe2cbbc3d099297f87994685947f65d166561d5f2b84b0673ae13c483ec14b1fcb8d7f604ea146369",
    "6073e04578b5e985bba912a8f9b2c5a05358d52433a94f048634e685b0aeda0f67f5970f406f0ec8976d2371",
    "63b9cf27662f3b8a02abc407206ca7097287b03248db6a3d54d77cbd6a8f96716ab2ed642778260545a4c95e",
    "20cf92efc36221ff76037eb9d15b725f1bf051c81d08d8d6a239001d0020260545a4c95e20cf92efc36221ff",
    "76037eb9d15b725f1bf051c81d08d8d6a23900000015001300001073686f702e6578616d706c652e636f6d00",
    "170000000500050100000000002b00050403040303",
);

/// Names another build of the object to measure in the same run,
/// round by round in turn with this one, so that the load of a shared
/// machine weighs on both alike (e.g. the object of the commit before a change,
/// copied aside).
const AGAINST: &str = "BENCH_XDP_AGAINST";

pub fn run() -> Result<()> {
    ebpf::build()?;
    let object = root().join("edge-ebpf/target/bpfel-unknown-none/release/edge-ebpf");
    let mut objects = vec![load(&object)?];
    if let Some(other) = std::env::var_os(AGAINST) {
        objects.push(load(other.as_ref())?);
    }

    let classic = hex(CLASSIC_HELLO);
    let routed = tcp_frame(443, &classic);
    let cases: [(&str, &str, Vec<u8>); 8] = [
        (
            "trivial XDP_PASS program (floor)",
            "edge_pass",
            routed.clone(),
        ),
        ("non-IP frame (ARP)", "edge_sni", arp_frame()),
        ("TCP to another port", "edge_sni", tcp_frame(22, &classic)),
        ("ClientHello, routed SNI (hit)", "edge_sni", routed.clone()),
        (
            "ClientHello, unknown SNI (miss)",
            "edge_sni",
            tcp_frame(443, &rename(&classic, UNKNOWN)),
        ),
        (
            "ClientHello, blocked SNI (drop)",
            "edge_sni",
            tcp_frame(443, &rename(&classic, BLOCKED)),
        ),
        (
            "ClientHello X25519MLKEM768, routed (hit)",
            "edge_sni",
            tcp_frame(443, &hex(PQ_HELLO)),
        ),
        (
            "TCP data segment of a routed flow",
            "edge_sni",
            tcp_frame(443, &[23, 3, 3, 0, 64]),
        ),
    ];
    if objects.len() > 1 {
        println!("| case | ns/packet | × floor | {AGAINST} ns | × its floor | change |");
        println!("|---|---:|---:|---:|---:|---:|");
    } else {
        println!("| case | ns/packet | × floor |");
        println!("|---|---:|---:|");
    }
    let mut floors: Option<Vec<f64>> = None;
    for (name, prog, frame) in &cases {
        let ns = measure(&mut objects, prog, frame)?;
        let floors = floors.get_or_insert_with(|| ns.clone());
        row(name, &ns, floors);
    }
    let hellos = fresh_flows(&classic);
    let mut floors = Vec::new();
    let mut fresh = Vec::new();
    for ebpf in &mut objects {
        floors.push(measure_each(program(ebpf, "edge_pass")?, &hellos)?);
        fresh.push(measure_each(program(ebpf, "edge_sni")?, &hellos)?);
    }
    row(
        "trivial XDP_PASS program, repeat 1 (floor of the next row)",
        &floors,
        &floors,
    );
    row(
        "ClientHello, routed, a new flow each run (repeat 1, flow map full)",
        &fresh,
        &floors,
    );
    Ok(())
}

/// Loads an object's programs and configures its maps for the cases.
fn load(object: &std::path::Path) -> Result<Ebpf> {
    let bytes =
        std::fs::read(object).with_context(|| format!("cannot read {}", object.display()))?;
    // aya-log level 0: the program's debug logging is compiled out by the verifier.
    let mut ebpf = EbpfLoader::new()
        .override_global("AYA_LOG_LEVEL", &0u8, false)
        .load(&bytes)
        .with_context(|| format!("cannot load {} (run as root)", object.display()))?;
    for name in ["edge_sni", "edge_pass"] {
        program(&mut ebpf, name)?.load()?;
    }
    configure(&mut ebpf)?;
    Ok(ebpf)
}

/// One table row: this object's time and ratio, then the other object's and
/// the change from it.
fn row(name: &str, ns: &[f64], floors: &[f64]) {
    let mut line = format!("| {name} | {:.1} | {:.2} |", ns[0], ns[0] / floors[0]);
    if let (Some(other), Some(floor)) = (ns.get(1), floors.get(1)) {
        line += &format!(
            " {other:.1} | {:.2} | {:+.1}% |",
            other / floor,
            (ns[0] / other - 1.0) * 100.0
        );
    }
    println!("{line}");
}

/// The routed hello from `2 * FLOWS_MAX` distinct clients, so that every run
/// records a flow the map has never seen, and the second half of them finds
/// the LRU map full and evicts.
fn fresh_flows(hello: &[u8]) -> Vec<Vec<u8>> {
    (0..2 * FLOWS_MAX)
        .map(|i| {
            let [_, a, b, c] = i.to_be_bytes();
            tcp_frame_from([10, a, b, c], 40000, 443, hello)
        })
        .collect()
}

/// Mean of the kernel's time for one run (`repeat = 1`) over the second half
/// of `frames`, in ns. With one run per call the kernel's timer reads are
/// part of each sample; the floor row measured the same way shows how much.
fn measure_each(program: &Xdp, frames: &[Vec<u8>]) -> Result<f64> {
    let filling = frames.len() / 2;
    let mut total = Duration::ZERO;
    for (i, frame) in frames.iter().enumerate() {
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat: 1,
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN refused")?;
        if i >= filling {
            total += result.duration;
        }
    }
    Ok(as_ns(total) / (frames.len() - filling) as f64)
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("no program {name}"))?
        .try_into()?)
}

/// The routes and listener port the cases need. The chain counters are an
/// array, every chain id has its slot from the load on; an object from
/// before that (a per-CPU hash) gets the entries its routes made.
fn configure(ebpf: &mut Ebpf) -> Result<()> {
    let mut routes: HashMap<_, u64, Route> =
        HashMap::try_from(ebpf.map_mut(ROUTES).context("no ROUTES")?)?;
    for (name, chain_id, action) in [(ROUTED, 1, ACTION_PASS), (BLOCKED, 2, ACTION_DROP)] {
        let route = Route {
            chain_id,
            queue: 0,
            action,
            _pad: 0,
        };
        routes.insert(&sni::hash(name), &route, 0)?;
    }
    let mut ports: Array<_, u8> =
        Array::try_from(ebpf.map_mut(LISTEN_PORTS).context("no LISTEN_PORTS")?)?;
    ports.set(443, &LISTEN_TLS, 0)?;
    let chains = ebpf.map_mut(CHAIN_COUNTERS).context("no CHAIN_COUNTERS")?;
    if let Ok(mut chains) = PerCpuHashMap::<_, u32, ChainCounters>::try_from(chains) {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?.get() as usize;
        for chain in [1, 2] {
            let zeros = PerCpuValues::try_from(vec![ChainCounters::default(); cpus])?;
            chains.insert(&chain, zeros, 0)?;
        }
    }
    Ok(())
}

/// Median over `ROUNDS` of the kernel's mean time per run, in ns, for each
/// object; the objects take turns within every round.
fn measure(objects: &mut [Ebpf], name: &str, frame: &[u8]) -> Result<Vec<f64>> {
    let mut samples = vec![Vec::with_capacity(ROUNDS); objects.len()];
    for _ in 0..ROUNDS {
        for (ebpf, samples) in objects.iter_mut().zip(&mut samples) {
            let result = program(ebpf, name)?
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    repeat: REPEAT,
                    ..TestRunOptions::default()
                })
                .context("BPF_PROG_TEST_RUN refused")?;
            samples.push(result.duration);
        }
    }
    Ok(samples
        .into_iter()
        .map(|mut samples| {
            samples.sort();
            as_ns(samples[ROUNDS / 2])
        })
        .collect())
}

fn as_ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex fixture"))
        .collect()
}

/// The hello with `shop.example.com` replaced by a name of the same length.
fn rename(hello: &[u8], name: &[u8]) -> Vec<u8> {
    let at = hello
        .windows(ROUTED.len())
        .position(|w| w == ROUTED)
        .expect("fixture holds the routed name");
    let mut renamed = hello.to_vec();
    renamed[at..at + name.len()].copy_from_slice(name);
    renamed
}

fn ethernet(ether_type: u16) -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    frame.extend(ether_type.to_be_bytes());
    frame
}

fn arp_frame() -> Vec<u8> {
    let mut frame = ethernet(0x0806);
    frame.extend([0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2, 198, 18, 0, 2]);
    frame.extend([0, 0, 0, 0, 0, 0, 198, 18, 0, 1]);
    frame
}

/// IPv4/TCP from 198.18.0.2:40000 to 198.18.0.1:`port` with timestamps.
fn tcp_frame(port: u16, payload: &[u8]) -> Vec<u8> {
    tcp_frame_from([198, 18, 0, 2], 40000, port, payload)
}

fn tcp_frame_from(src: [u8; 4], src_port: u16, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = ethernet(0x0800);
    frame.extend([0x45, 0]);
    frame.extend(((20 + 32 + payload.len()) as u16).to_be_bytes());
    frame.extend([0, 0, 0x40, 0, 64, 6, 0, 0]);
    frame.extend(src);
    frame.extend([198, 18, 0, 1]);
    frame.extend(src_port.to_be_bytes());
    frame.extend(port.to_be_bytes());
    frame.extend([0, 0, 1, 0, 0, 0, 0, 1, 0x80, 0x18, 0xfa, 0xf0, 0, 0, 0, 0]);
    frame.extend([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    frame.extend(payload);
    frame
}
