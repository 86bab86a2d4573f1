//! The flow key a client names, the API route that carries it, and the
//! decisions' wire names.
use super::*;

#[test]
fn the_key_is_the_one_the_parser_builds() {
    let key = flow_key(&vip(), "198.18.1.10:40000".parse().unwrap());
    assert_eq!(key.src, [u32::from_ne_bytes([198, 18, 1, 10]), 0, 0, 0]);
    assert_eq!(key.dst, [u32::from_ne_bytes([198, 18, 0, 100]), 0, 0, 0]);
    assert_eq!(key.sport.to_ne_bytes(), 40000u16.to_be_bytes());
    assert_eq!(key.dport.to_ne_bytes(), 80u16.to_be_bytes());
    assert_eq!((key.proto, key.family, key._pad), (IPPROTO_TCP, AF_INET, 0));

    let v6: VipId = "[2001:2::100]:53/udp".parse().unwrap();
    let key = flow_key(&v6, "[2001:2::10]:5353".parse().unwrap());
    let words = |a: &str| {
        let o = a.parse::<std::net::Ipv6Addr>().unwrap().octets();
        [0, 4, 8, 12].map(|i| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
    };
    assert_eq!(key.src, words("2001:2::10"));
    assert_eq!(key.dst, words("2001:2::100"));
    assert_eq!((key.proto, key.family), (IPPROTO_UDP, AF_INET6));
}

#[test]
fn clients_of_the_other_family_or_port_zero_are_refused() {
    let v4 = vip();
    let v6: VipId = "[2001:2::100]:80/tcp".parse().unwrap();
    assert!(parse_client(&v4, "198.18.1.10:40000").is_ok());
    assert!(parse_client(&v6, "[2001:2::10]:40000").is_ok());
    let error = parse_client(&v4, "[2001:2::10]:40000").unwrap_err();
    assert!(
        error.contains("2001:2::10") && error.contains("IPv6") && error.contains(VIP),
        "{error}"
    );
    let error = parse_client(&v6, "198.18.1.10:40000").unwrap_err();
    assert!(
        error.contains("IPv4") && error.contains("2001:2::100"),
        "{error}"
    );
    let error = parse_client(&v4, "198.18.1.10:0").unwrap_err();
    assert!(error.contains("port 0"), "{error}");
    for bad in [
        "198.18.1.10",
        "2001:2::10:80",
        "x:1",
        "198.18.1.10:65536",
        "",
    ] {
        assert!(parse_client(&v4, bad).is_err(), "{bad} accepted");
    }
}

/// The path lbctl sends, decoded by the server, routed.
fn routed(vip: &str, client: &str) -> Result<crate::api::route::Route, crate::api::Response> {
    let path = crate::api::client::api_path(&["vips", vip, "flows", client]);
    let (head, ()) = hyper::Request::get(path.as_str())
        .body(())
        .unwrap()
        .into_parts();
    let request = crate::api::server::parse_request(&head, b"")?;
    crate::api::route::Call::decode(&request).map(|call| call.route)
}

#[test]
fn the_route_takes_encoded_clients_of_both_families() {
    use crate::api::route::Route;
    assert_eq!(
        routed(VIP, "198.18.1.10:40000"),
        Ok(Route::Flow(vip(), "198.18.1.10:40000".parse().unwrap()))
    );
    let v6: VipId = "[2001:2::100]:80/tcp".parse().unwrap();
    assert_eq!(
        routed("[2001:2::100]:80/tcp", "[2001:2::10]:40000"),
        Ok(Route::Flow(v6, "[2001:2::10]:40000".parse().unwrap()))
    );
    for (vip, client) in [
        (VIP, "[2001:2::10]:40000"),
        (VIP, "198.18.1.10:0"),
        (VIP, "198.18.1.10"),
        ("198.18.0.100:0/tcp", "198.18.1.10:40000"),
    ] {
        let answer = routed(vip, client).unwrap_err();
        assert_eq!(answer.status, 400, "{vip} {client}: {:?}", answer.body);
    }
}

#[test]
fn decisions_serialise_lower_case() {
    let text = serde_json::to_string(&[
        FlowDecision::Tracked,
        FlowDecision::HalfOpen,
        FlowDecision::Maglev,
        FlowDecision::Dropped,
    ])
    .unwrap();
    assert_eq!(text, r#"["tracked","half_open","maglev","dropped"]"#);
    assert_eq!(
        serde_json::to_string(&DropReason::EmptySlot).unwrap(),
        r#""empty_slot""#
    );
}
