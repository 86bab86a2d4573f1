//! The config file: parsing arbitrary text, dump and reload round trip.
//! The checks: `lb_tests::fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_tests::fuzz::config(data));
