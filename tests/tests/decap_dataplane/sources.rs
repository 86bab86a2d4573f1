//! `sources`: with source prefixes configured, only tunnel packets from a
//! balancer's outer source are unwrapped; from anywhere else they are
//! dropped (`drop_not_source`) and left as they were. Unset, any sender is
//! accepted as before. A reload moves between the two with no restart.

use lb_common::decap::DecapCounter;
use lb_decap::config::Settings;
use lb_tests::{
    decapbed::{
        ethernet, tunnel_frame, tunnel_packet, DecapBed, Encap, BACKEND_V4, BACKEND_V6,
        LB_OUTER_V4, LB_OUTER_V6,
    },
    packet::{self, CLIENT_MAC, LB_MAC},
    testbed::{action, Hook},
};

use crate::{
    checks::{assert_refused, assert_unwrapped, run_case},
    gue0, gue1, inner_tcp, inner_udp, ip, VIP4, VIP6, VIPS,
};

/// The fixtures' backend, `VIPS` and `sources` (omitted when `None`),
/// through lb-decap's own validation.
fn settings(sources: Option<&[&str]>) -> Settings {
    let vips: Vec<String> = VIPS.iter().map(|v| format!("{v:?}")).collect();
    let sources = sources.map_or(String::new(), |list| {
        let list: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
        format!("sources = [{}]\n", list.join(", "))
    });
    Settings::parse(&format!(
        "interface = \"lo\"\naddresses = [\"{BACKEND_V4}\", \"{BACKEND_V6}\"]\n{sources}vips = [{}]\n",
        vips.join(", ")
    ))
    .expect("valid settings")
}

/// The balancers' prefixes: the fixtures' outer sources are inside.
const BALANCERS: [&str; 2] = ["198.19.200.0/24", "2001:2:0:200::/64"];
/// Outer sources outside `BALANCERS`.
const STRANGER_V4: &str = "198.19.201.7";
const STRANGER_V6: &str = "2001:2:0:201::7";

/// A tunnel frame to `dst` from outer source `src`.
fn frame_from(src: &str, dst: &str, encap: Encap, inner: &[u8]) -> Vec<u8> {
    ethernet(
        CLIENT_MAC,
        LB_MAC,
        &tunnel_packet(ip(src), ip(dst), encap, inner),
    )
}

/// Every encapsulation, from outer source `v4` / `v6`: (name, frame,
/// inner, counter when unwrapped).
fn forms(v4: &str, v6: &str) -> Vec<(&'static str, Vec<u8>, Vec<u8>, DecapCounter)> {
    let tcp4 = inner_tcp(VIP4, 80);
    let udp4 = inner_udp(VIP4, 53);
    let tcp6 = inner_tcp(VIP6, 80);
    vec![
        (
            "ipip",
            frame_from(v4, BACKEND_V4, Encap::Ipip, &tcp4),
            tcp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "ip6ip6",
            frame_from(v6, BACKEND_V6, Encap::Ipip, &tcp6),
            tcp6.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "4in6",
            frame_from(v6, BACKEND_V6, Encap::Ipip, &tcp4),
            tcp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "gue1 v4",
            frame_from(v4, BACKEND_V4, gue1(), &udp4),
            udp4,
            DecapCounter::DecapGue,
        ),
        (
            "gue0 v6",
            frame_from(v6, BACKEND_V6, gue0(&tcp6), &tcp6),
            tcp6.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue1 4in6",
            frame_from(v6, BACKEND_V6, gue1(), &tcp4),
            tcp4,
            DecapCounter::DecapGue,
        ),
    ]
}

fn assert_all_unwrapped(bed: &mut DecapBed, v4: &str, v6: &str, why: &str) {
    for (name, frame, inner, counter) in forms(v4, v6) {
        let what = format!("{name} from {v4}/{v6} ({why})");
        let out = run_case(bed, &what, &frame, action::PASS, counter);
        assert_unwrapped(&out, &inner, &what);
    }
}

fn assert_all_dropped(bed: &mut DecapBed, v4: &str, v6: &str, why: &str) {
    for (name, frame, _, _) in forms(v4, v6) {
        let what = format!("{name} from {v4}/{v6} ({why})");
        assert_refused(
            bed,
            &what,
            &frame,
            action::DROP,
            DecapCounter::DropNotSource,
        );
    }
}

#[test]
fn a_balancer_source_is_unwrapped_and_any_other_dropped_and_counted() {
    for hook in Hook::ALL {
        let mut bed =
            DecapBed::new(&settings(Some(&BALANCERS)), hook).expect("decap bed (root needed)");
        assert_all_unwrapped(&mut bed, LB_OUTER_V4, LB_OUTER_V6, "inside");
        assert_all_dropped(&mut bed, STRANGER_V4, STRANGER_V6, "outside");
        // A host prefix and the edges of a /24.
        bed.apply(&settings(Some(&["198.19.200.7", "2001:2:0:200::7/128"])))
            .expect("apply");
        assert_all_unwrapped(&mut bed, LB_OUTER_V4, LB_OUTER_V6, "host prefixes");
        assert_all_dropped(&mut bed, "198.19.200.8", "2001:2:0:200::8", "next host");
        bed.apply(&settings(Some(&["198.19.200.0/24", "2001:2:0:200::/56"])))
            .expect("apply");
        assert_all_unwrapped(
            &mut bed,
            "198.19.200.255",
            "2001:2:0:2ff:ffff:ffff:ffff:ffff",
            "edges",
        );
        assert_all_dropped(
            &mut bed,
            "198.19.199.255",
            "2001:2:0:300::",
            "past the edges",
        );
    }
}

#[test]
fn only_the_family_configured_is_accepted() {
    let tcp4 = inner_tcp(VIP4, 80);
    for hook in Hook::ALL {
        let mut bed = DecapBed::new(&settings(Some(&["198.19.200.0/24"])), hook)
            .expect("decap bed (root needed)");
        let out = run_case(
            &mut bed,
            "ipip from a v4 balancer",
            &tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4),
            action::PASS,
            DecapCounter::DecapIpip,
        );
        assert_unwrapped(&out, &tcp4, "ipip from a v4 balancer");
        // No IPv6 prefix: no IPv6 sender is a balancer.
        assert_refused(
            &mut bed,
            "4in6 with no v6 source configured",
            &tunnel_frame(BACKEND_V6, Encap::Ipip, &tcp4),
            action::DROP,
            DecapCounter::DropNotSource,
        );
    }
}

#[test]
fn unset_sources_accept_any_sender() {
    for hook in Hook::ALL {
        let mut bed = DecapBed::new(&settings(None), hook).expect("decap bed (root needed)");
        assert_all_unwrapped(&mut bed, STRANGER_V4, STRANGER_V6, "unset");
    }
}

#[test]
fn a_reload_turns_the_check_on_and_off() {
    for hook in Hook::ALL {
        let mut bed = DecapBed::new(&settings(None), hook).expect("decap bed (root needed)");
        assert_all_unwrapped(&mut bed, STRANGER_V4, STRANGER_V6, "before");
        bed.apply(&settings(Some(&BALANCERS))).expect("apply");
        assert_all_dropped(&mut bed, STRANGER_V4, STRANGER_V6, "turned on");
        assert_all_unwrapped(&mut bed, LB_OUTER_V4, LB_OUTER_V6, "turned on");
        // The stranger's prefix added by a reload.
        bed.apply(&settings(Some(&[
            BALANCERS[0],
            BALANCERS[1],
            "198.19.201.0/24",
            "2001:2:0:201::/64",
        ])))
        .expect("apply");
        assert_all_unwrapped(&mut bed, STRANGER_V4, STRANGER_V6, "prefix added");
        bed.apply(&settings(None)).expect("apply");
        assert_all_unwrapped(&mut bed, STRANGER_V4, STRANGER_V6, "turned off");
        assert_all_unwrapped(&mut bed, "198.18.77.1", "2001:2:0:77::1", "turned off");
    }
}

#[test]
fn the_destination_is_judged_first_and_the_source_before_fragments() {
    let tcp4 = inner_tcp(VIP4, 80);
    for hook in Hook::ALL {
        let mut bed =
            DecapBed::new(&settings(Some(&BALANCERS)), hook).expect("decap bed (root needed)");
        // Not to us: passed untouched whoever sent it.
        assert_refused(
            &mut bed,
            "ipip from a stranger to another address",
            &frame_from(STRANGER_V4, "198.19.2.99", Encap::Ipip, &tcp4),
            action::PASS,
            DecapCounter::PassNotOurs,
        );
        // Non-tunnel traffic from anyone still passes.
        let plain = packet::tcp(
            &crate::flow(STRANGER_V4, BACKEND_V4, 22),
            packet::SYN,
            None,
            b"",
        );
        assert_refused(
            &mut bed,
            "plain tcp from a stranger",
            &plain,
            action::PASS,
            DecapCounter::PassNotTunnel,
        );
        // A fragment from a stranger is refused for its source; from a
        // balancer, for being a fragment.
        for (src, counter) in [
            (STRANGER_V4, DecapCounter::DropNotSource),
            (LB_OUTER_V4, DecapCounter::DropUnsupported),
        ] {
            let mut frame = frame_from(src, BACKEND_V4, Encap::Ipip, &tcp4);
            frame[14 + 6] = 0x20; // more fragments
            packet::fix_ipv4_checksum(&mut frame);
            assert_refused(
                &mut bed,
                &format!("ipip fragment from {src}"),
                &frame,
                action::DROP,
                counter,
            );
        }
    }
}
