//! The compiled XDP program on arbitrary frames (BPF_PROG_TEST_RUN, needs root),
//! judged by an independent reference parser.
//! The checks: `lb_tests::fuzz::packet`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_tests::fuzz::packet(data));
