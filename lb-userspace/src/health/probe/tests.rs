use std::net::SocketAddr;

use super::*;
use crate::health::TunnelPath;

pub(super) const TIMEOUT: Duration = Duration::from_millis(500);

/// While the check path is not attached, a check through the tunnel
/// fails with the reason, unsent (sent unwrapped, it would reach the
/// VIP on this node or be balanced as a client's flow and pass); a
/// direct check, or one whose path is attached, probes as usual.
#[test]
fn a_check_through_an_unattached_path_fails_with_the_reason() {
    let vip: SocketAddr = "198.18.0.100:80".parse().unwrap();
    let through = ProbeTarget {
        tls: false,
        through: Some(TunnelPath {
            mark: 7,
            backend: "198.19.2.11".parse().unwrap(),
            source: None,
        }),
        ..http_target(vip, "/", None)
    };
    let why = "tc_hc_encap not on the egress of eth0";
    let result = unattached_result(&through, Some(why)).expect("not probed");
    let Outcome::Failure(reason) = &result.outcome else {
        panic!("{result:?}");
    };
    assert_eq!(reason.label(), "path_not_attached");
    assert_eq!(
        result.outcome.to_string(),
        "check path not attached: tc_hc_encap not on the egress of eth0"
    );
    // Attached again: probed.
    assert_eq!(unattached_result(&through, None), None);
    // A direct check does not use the path.
    assert_eq!(
        unattached_result(&http_target(vip, "/", None), Some(why)),
        None
    );
}

pub(super) fn http_target(address: SocketAddr, path: &str, host: Option<&str>) -> ProbeTarget {
    ProbeTarget {
        tls: false,
        through: None,
        address,
        kind: CheckKind::Http {
            path: path.to_owned(),
            host: host.map(str::to_owned),
            expect_status: 200,
            expect_body: None,
        },
    }
}
