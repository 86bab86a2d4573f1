//! The replication channel's frames: split, open, decode, re-encode, seal and open.
//! The checks: `lb_tests::fuzz::sync_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_tests::fuzz::sync_frame(data));
