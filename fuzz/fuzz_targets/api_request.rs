//! Admin API requests: HTTP head and JSON body decoding, routing, schema bodies.
//! The checks: `lb_tests::fuzz::api_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_tests::fuzz::api_request(data));
