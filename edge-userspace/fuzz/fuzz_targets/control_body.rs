//! See `edge_userspace::fuzzing::control_body`, which the test suite also replays
//! every kept input through.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_userspace::fuzzing::control_body(data));
