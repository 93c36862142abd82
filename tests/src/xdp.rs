//! Running the real classifier under `BPF_PROG_TEST_RUN`.

use aya::programs::{TestRun, TestRunOptions};
use edge_userspace::xdp::{Classifier, LoadOptions};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// A freshly loaded classifier of its own (own maps: tests stay independent).
/// Fails loudly if the kernel refuses: these tests must never be skipped.
pub fn classifier() -> Classifier {
    Classifier::load(LoadOptions::default())
        .unwrap_or_else(|e| panic!("the XDP program must load (root, kernel >= 5.18): {e:?}"))
}

/// The program's verdict on one frame.
pub fn run(classifier: &Classifier, frame: &[u8]) -> u32 {
    let mut out = vec![0; frame.len() + 256];
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    };
    classifier
        .program()
        .test_run(options)
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN refused: {e:?}"))
        .return_value
}
