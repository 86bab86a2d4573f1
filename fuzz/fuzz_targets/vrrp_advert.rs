//! VRRP advertisements: decode, receive checks, re-encoding, the state machine.
//! The checks: `lb_tests::fuzz::vrrp_advert`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_tests::fuzz::vrrp_advert(data));
