//! See `edge_userspace::fuzzing::rules`, which the test suite also replays
//! every kept input through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_userspace::fuzzing::rules(data));
