//! The `client_hello` fuzz target's inputs through the loaded XDP program
//! under BPF_PROG_TEST_RUN: its seeds and every crash kept in
//! `edge-userspace/fuzz/regressions/client_hello/`. The target runs the
//! program's source (`edge-ebpf/src/tls.rs`) in userspace; this runs the
//! compiled program on the same bytes, with the same oracle: when the program
//! reads a name and rustls reads one from the same hello, they are one name.

use std::path::{Path, PathBuf};

use edge_common::sni;
use edge_tests::frames::Tcp;
use edge_tests::xdp::{XDP_PASS, classifier, run};
use edge_userspace::fuzzing::rustls_server_name;
use edge_userspace::xdp::Verdict;

/// A target input: two bytes of where the segment ends, then the payload.
fn inputs(folder: &str) -> Vec<(PathBuf, usize, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../edge-userspace/fuzz")
        .join(folder)
        .join("client_hello");
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a readable folder").path())
        .filter(|path| path.file_name().is_some_and(|name| name != ".gitkeep"))
        .filter_map(|path| {
            let input = std::fs::read(&path).expect("a readable input");
            let ([l0, l1], payload) = input.split_first_chunk::<2>()?;
            let limit = usize::from(u16::from_be_bytes([*l0, *l1]));
            Some((path.clone(), limit, payload.to_vec()))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn fuzz_inputs_get_the_name_rustls_reads() {
    let c = classifier();
    let mut port = 41000;
    let mut named_seeds = 0;
    for folder in ["corpus", "regressions"] {
        for (path, limit, payload) in inputs(folder) {
            port += 1;
            let tcp = Tcp::new(&format!("198.18.0.2:{port}"), "198.18.0.1:443");
            // The segment ends at `limit`, as the target's packet does.
            let cut = limit < payload.len();
            let frame = tcp.frame(&payload[..limit.min(payload.len())]);
            assert_eq!(run(&c, &frame), XDP_PASS, "{}", path.display());
            let flow = c.maps.flows.lookup(tcp.client, tcp.server).unwrap();
            // A cut hello leaves a partial hash in the flow, for the next segment.
            let Some(name) = rustls_server_name(&payload).filter(|_| !cut) else {
                continue;
            };
            let read = flow.filter(|info| info.sni_hash != 0);
            if let Some(info) = &read {
                assert_eq!(
                    info.sni_hash,
                    sni::hash(name.as_bytes()),
                    "{}: rustls reads {name}",
                    path.display()
                );
            }
            if folder == "corpus" {
                // A whole real hello: the program must have read its name.
                let info = read.unwrap_or_else(|| panic!("{}: no name read", path.display()));
                assert_eq!(info.verdict, Verdict::Unknown, "{}", path.display());
                named_seeds += 1;
            }
        }
    }
    assert!(named_seeds >= 2, "the seeds hold whole rustls hellos");
}
