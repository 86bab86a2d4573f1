use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum::{fold, sum_words};
use super::*;

const SRC4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const DST4: IpAddr = IpAddr::V4(VRRP_MCAST_V4);
const VIP4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));
const SRC6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2));
const DST6: IpAddr = IpAddr::V6(VRRP_MCAST_V6);

/// An independent RFC 1071 checksum, written differently from the one
/// under test: a plain index loop over a byte vector with a u32 sum.
fn ref_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let hi = u32::from(bytes[i]);
        let lo = if i + 1 < bytes.len() {
            u32::from(bytes[i + 1])
        } else {
            0
        };
        sum += (hi << 8) | lo;
        i += 2;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv4 pseudo-header, byte by byte from RFC 768's layout.
fn ref_pseudo_v4(src: [u8; 4], dst: [u8; 4], len: u16) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.push(0);
    v.push(112);
    v.extend_from_slice(&len.to_be_bytes());
    v
}

/// The IPv6 pseudo-header, byte by byte from RFC 8200 §8.1.
fn ref_pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, len: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 112]);
    v
}

/// Writes a reference checksum into bytes 6..8 of a hand-built payload.
fn fix_checksum_v4(mut payload: Vec<u8>, pseudo: bool) -> Vec<u8> {
    payload[6] = 0;
    payload[7] = 0;
    let mut summed = if pseudo {
        ref_pseudo_v4([198, 18, 0, 2], [224, 0, 0, 18], payload.len() as u16)
    } else {
        Vec::new()
    };
    summed.extend_from_slice(&payload);
    let c = ref_checksum(&summed);
    payload[6..8].copy_from_slice(&c.to_be_bytes());
    payload
}

/// The golden advert, checksum field zero: version 3 / type 1, VRID 51,
/// priority 100, one address, reserved 0 + 100 cs, 198.18.0.100.
fn golden_unsummed() -> Vec<u8> {
    vec![
        0x31, 51, 100, 1, //
        0x00, 0x64, 0x00, 0x00, //
        198, 18, 0, 100,
    ]
}

fn golden_ad() -> Advertisement {
    Advertisement {
        vrid: 51,
        priority: 100,
        max_adver_int_cs: 100,
        addresses: vec![VIP4],
    }
}

#[test]
fn golden_v4_checksums_match_hand_computation() {
    // Worked by hand from the RFC layout: payload words 3133 6401 0064
    // 0000 c612 0064 sum to 0x15c0e -> 0x5c0f -> checksum 0xa3f0; the
    // pseudo-header words c612 0002 e000 0012 0070 000c add 0x1a6a2, so
    // 0x302b0 -> 0x02b3 -> checksum 0xfd4c.
    let pseudo = fix_checksum_v4(golden_unsummed(), true);
    let plain = fix_checksum_v4(golden_unsummed(), false);
    assert_eq!(&pseudo[6..8], &[0xfd, 0x4c]);
    assert_eq!(&plain[6..8], &[0xa3, 0xf0]);
}

#[test]
fn golden_v4_encodes_in_both_forms() {
    let ad = golden_ad();
    let pseudo = ad.encode(SRC4, DST4, ChecksumMode::PseudoHeader).unwrap();
    assert_eq!(pseudo, fix_checksum_v4(golden_unsummed(), true));
    let plain = ad.encode(SRC4, DST4, ChecksumMode::NoPseudoHeader).unwrap();
    assert_eq!(plain, fix_checksum_v4(golden_unsummed(), false));
    assert_ne!(pseudo, plain);
}

#[test]
fn golden_v4_decodes_in_both_forms_and_reports_which() {
    let pseudo = fix_checksum_v4(golden_unsummed(), true);
    let (ad, mode) = Advertisement::decode(&pseudo, SRC4, DST4).unwrap();
    assert_eq!(ad, golden_ad());
    assert_eq!(mode, ChecksumMode::PseudoHeader);

    let plain = fix_checksum_v4(golden_unsummed(), false);
    let (ad, mode) = Advertisement::decode(&plain, SRC4, DST4).unwrap();
    assert_eq!(ad, golden_ad());
    assert_eq!(mode, ChecksumMode::NoPseudoHeader);
}

#[test]
fn pseudo_header_form_is_bound_to_the_addresses() {
    let pseudo = fix_checksum_v4(golden_unsummed(), true);
    let other_src = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));
    assert_eq!(
        Advertisement::decode(&pseudo, other_src, DST4),
        Err(DecodeError::Checksum)
    );
    // The payload-only form does not depend on them.
    let plain = fix_checksum_v4(golden_unsummed(), false);
    assert!(Advertisement::decode(&plain, other_src, DST4).is_ok());
}

#[test]
fn round_trip_v4_many_addresses() {
    let ad = Advertisement {
        vrid: 255,
        priority: 0,
        max_adver_int_cs: MAX_ADVER_INT_CS,
        addresses: (1..=255u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)))
            .collect(),
    };
    for mode in [ChecksumMode::PseudoHeader, ChecksumMode::NoPseudoHeader] {
        let bytes = ad.encode(SRC4, DST4, mode).unwrap();
        assert_eq!(bytes.len(), 8 + 255 * 4);
        assert_eq!(
            Advertisement::decode(&bytes, SRC4, DST4),
            Ok((ad.clone(), mode))
        );
    }
}

#[test]
fn round_trip_v6_uses_pseudo_header_always() {
    let ad = Advertisement {
        vrid: 7,
        priority: 200,
        max_adver_int_cs: 50,
        addresses: vec![
            "2001:db8::100".parse().unwrap(),
            "2001:db8::101".parse().unwrap(),
        ],
    };
    let bytes = ad.encode(SRC6, DST6, ChecksumMode::PseudoHeader).unwrap();
    assert_eq!(bytes.len(), 8 + 2 * 16);
    // Asking for no pseudo-header changes nothing on IPv6.
    let same = ad.encode(SRC6, DST6, ChecksumMode::NoPseudoHeader).unwrap();
    assert_eq!(bytes, same);
    // Checked against the independent checksum and pseudo-header.
    let (IpAddr::V6(s), IpAddr::V6(d)) = (SRC6, DST6) else {
        unreachable!()
    };
    let mut unsummed = bytes.clone();
    unsummed[6] = 0;
    unsummed[7] = 0;
    let mut summed = ref_pseudo_v6(s, d, bytes.len() as u32);
    summed.extend_from_slice(&unsummed);
    assert_eq!(&bytes[6..8], &ref_checksum(&summed).to_be_bytes());

    let decoded = Advertisement::decode(&bytes, SRC6, DST6).unwrap();
    assert_eq!(decoded, (ad, ChecksumMode::PseudoHeader));
}

#[test]
fn v6_without_pseudo_header_is_refused() {
    let ad = Advertisement {
        vrid: 7,
        priority: 100,
        max_adver_int_cs: 100,
        addresses: vec!["2001:db8::1".parse().unwrap()],
    };
    let mut bytes = ad.encode(SRC6, DST6, ChecksumMode::PseudoHeader).unwrap();
    bytes[6] = 0;
    bytes[7] = 0;
    let c = ref_checksum(&bytes);
    bytes[6..8].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        Advertisement::decode(&bytes, SRC6, DST6),
        Err(DecodeError::Checksum)
    );
}

#[test]
fn truncated_at_every_length() {
    let full = fix_checksum_v4(golden_unsummed(), true);
    for len in 0..full.len() {
        let got = Advertisement::decode(&full[..len], SRC4, DST4);
        let want = if len < HEADER_LEN {
            DecodeError::TooShort
        } else {
            DecodeError::Length { count: 1, len }
        };
        assert_eq!(got, Err(want), "length {len}");
    }
}

#[test]
fn bad_version_and_type() {
    let mut v2 = golden_unsummed();
    v2[0] = 0x21;
    let v2 = fix_checksum_v4(v2, true);
    assert_eq!(
        Advertisement::decode(&v2, SRC4, DST4),
        Err(DecodeError::Version(2))
    );
    let mut t2 = golden_unsummed();
    t2[0] = 0x32;
    let t2 = fix_checksum_v4(t2, true);
    assert_eq!(
        Advertisement::decode(&t2, SRC4, DST4),
        Err(DecodeError::Type(2))
    );
}

#[test]
fn count_and_length_must_agree() {
    // Count says 2, one address follows.
    let mut two = golden_unsummed();
    two[3] = 2;
    let two = fix_checksum_v4(two, true);
    assert_eq!(
        Advertisement::decode(&two, SRC4, DST4),
        Err(DecodeError::Length { count: 2, len: 12 })
    );
    // Trailing bytes after the last address.
    let mut long = golden_unsummed();
    long.extend_from_slice(&[0, 0, 0, 0]);
    let long = fix_checksum_v4(long, true);
    assert_eq!(
        Advertisement::decode(&long, SRC4, DST4),
        Err(DecodeError::Length { count: 1, len: 16 })
    );
    // An IPv6-sized address list read as IPv4.
    let ad6 = Advertisement {
        vrid: 51,
        priority: 100,
        max_adver_int_cs: 100,
        addresses: vec!["2001:db8::1".parse().unwrap()],
    };
    let bytes6 = ad6.encode(SRC6, DST6, ChecksumMode::PseudoHeader).unwrap();
    assert_eq!(
        Advertisement::decode(&bytes6, SRC4, DST4),
        Err(DecodeError::Length { count: 1, len: 24 })
    );
    // An IPv4-sized list read as IPv6.
    let bytes4 = fix_checksum_v4(golden_unsummed(), true);
    assert_eq!(
        Advertisement::decode(&bytes4, SRC6, DST6),
        Err(DecodeError::Length { count: 1, len: 12 })
    );
}

#[test]
fn zero_vrid_and_zero_interval() {
    let mut vrid0 = golden_unsummed();
    vrid0[1] = 0;
    let vrid0 = fix_checksum_v4(vrid0, true);
    assert_eq!(
        Advertisement::decode(&vrid0, SRC4, DST4),
        Err(DecodeError::ZeroVrid)
    );
    let mut int0 = golden_unsummed();
    int0[4] = 0;
    int0[5] = 0;
    let int0 = fix_checksum_v4(int0, true);
    assert_eq!(
        Advertisement::decode(&int0, SRC4, DST4),
        Err(DecodeError::ZeroInterval)
    );
    // Only reserved bits set: still a zero interval.
    let mut rsvd_only = golden_unsummed();
    rsvd_only[4] = 0xf0;
    rsvd_only[5] = 0;
    let rsvd_only = fix_checksum_v4(rsvd_only, false);
    assert_eq!(
        Advertisement::decode(&rsvd_only, SRC4, DST4),
        Err(DecodeError::ZeroInterval)
    );
}

#[test]
fn reserved_bits_are_ignored_on_receive() {
    let mut rsvd = golden_unsummed();
    rsvd[4] = 0xf0; // reserved nibble set, interval still 100
    let rsvd = fix_checksum_v4(rsvd, true);
    let (ad, _) = Advertisement::decode(&rsvd, SRC4, DST4).unwrap();
    assert_eq!(ad, golden_ad());
}

#[test]
fn bad_checksum() {
    let good = fix_checksum_v4(golden_unsummed(), true);
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let got = Advertisement::decode(&bad, SRC4, DST4);
        // Flipping the low bit of the version/type byte (type 0) or
        // of the count trips an earlier check; everything else must
        // come out as a checksum error.
        match i {
            0 => assert_eq!(got, Err(DecodeError::Type(0)), "byte {i}"),
            3 => assert!(matches!(got, Err(DecodeError::Length { .. })), "byte {i}"),
            _ => assert_eq!(got, Err(DecodeError::Checksum), "byte {i}"),
        }
    }
}

#[test]
fn decode_refuses_mixed_families() {
    let good = fix_checksum_v4(golden_unsummed(), true);
    assert_eq!(
        Advertisement::decode(&good, SRC4, DST6),
        Err(DecodeError::MixedFamilies)
    );
}

#[test]
fn encode_errors() {
    let ad = golden_ad();
    let pm = ChecksumMode::PseudoHeader;
    let e = |ad: &Advertisement, s, d| ad.encode(s, d, pm).unwrap_err();
    assert_eq!(
        e(
            &Advertisement {
                vrid: 0,
                ..ad.clone()
            },
            SRC4,
            DST4
        ),
        EncodeError::ZeroVrid
    );
    for bad in [0, 4096, u16::MAX] {
        let a = Advertisement {
            max_adver_int_cs: bad,
            ..ad.clone()
        };
        assert_eq!(e(&a, SRC4, DST4), EncodeError::Interval(bad));
    }
    assert_eq!(e(&ad, SRC4, DST6), EncodeError::MixedFamilies);
    assert_eq!(e(&ad, SRC6, DST6), EncodeError::MixedFamilies);
    let mixed = Advertisement {
        addresses: vec![VIP4, "2001:db8::1".parse().unwrap()],
        ..ad.clone()
    };
    assert_eq!(e(&mixed, SRC4, DST4), EncodeError::MixedFamilies);
    let none = Advertisement {
        addresses: vec![],
        ..ad.clone()
    };
    assert_eq!(e(&none, SRC4, DST4), EncodeError::NoAddresses);
    let many = Advertisement {
        addresses: (0..256u32)
            .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
            .collect(),
        ..ad
    };
    assert_eq!(e(&many, SRC4, DST4), EncodeError::TooManyAddresses(256));
}

#[test]
fn labels_are_stable_and_distinct() {
    let decode = [
        DecodeError::MixedFamilies,
        DecodeError::TooShort,
        DecodeError::Version(2),
        DecodeError::Type(2),
        DecodeError::Length { count: 1, len: 9 },
        DecodeError::ZeroVrid,
        DecodeError::ZeroInterval,
        DecodeError::Checksum,
    ];
    let labels: Vec<_> = decode.iter().map(DecodeError::label).collect();
    assert_eq!(
        labels,
        [
            "mixed_families",
            "too_short",
            "version",
            "type",
            "length",
            "zero_vrid",
            "zero_interval",
            "checksum"
        ]
    );
    assert_eq!(Invalid::Ttl(1).label(), "ttl");
    assert_eq!(Invalid::OtherVrid(1).label(), "other_vrid");
    assert_eq!(Invalid::AddressMismatch.label(), "address_mismatch");
    assert_eq!(ChecksumMode::PseudoHeader.label(), "pseudo_header");
    assert_eq!(ChecksumMode::NoPseudoHeader.label(), "no_pseudo_header");
}

#[test]
fn validate_accepts_a_matching_advert() {
    let ad = golden_ad();
    assert_eq!(validate(&ad, 255, 51, &[VIP4]), Ok(()));
}

#[test]
fn validate_refuses_ttl_254() {
    assert_eq!(
        validate(&golden_ad(), 254, 51, &[VIP4]),
        Err(Invalid::Ttl(254))
    );
}

/// Multicast (no unicast peers): a TTL other than 255 is refused,
/// whoever sent it.
#[test]
fn validate_from_keeps_ttl_255_for_multicast() {
    let peer = Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3)));
    assert_eq!(
        validate_from(&golden_ad(), 255, peer, 51, &[VIP4], &[], 0),
        Ok(())
    );
    for ttl in [0, 1, 64, 254] {
        assert_eq!(
            validate_from(&golden_ad(), ttl, peer, 51, &[VIP4], &[], 0),
            Err(Invalid::Ttl(ttl))
        );
    }
}

/// Unicast peers: a configured peer's advert, like anyone's, must
/// arrive with TTL 255 unless `unicast_peer_hops` says the peers are
/// routed: a claimed source address is no proof, and anyone who can
/// spoof it from afar would otherwise be heard. With N hops a peer's
/// advert is taken from TTL 255 - N up; a stranger's only at 255; the
/// VRID and address checks still apply to a peer.
#[test]
fn validate_from_holds_unicast_peers_to_their_hops() {
    let v4 = |last| IpAddr::V4(Ipv4Addr::new(198, 18, 0, last));
    let peers = [v4(3), v4(4)];
    // Default (0 hops): TTL 255 from a peer too.
    assert_eq!(
        validate_from(&golden_ad(), 255, Some(v4(4)), 51, &[VIP4], &peers, 0),
        Ok(())
    );
    for ttl in [1, 63, 64, 254] {
        assert_eq!(
            validate_from(&golden_ad(), ttl, Some(v4(4)), 51, &[VIP4], &peers, 0),
            Err(Invalid::Ttl(ttl)),
            "ttl {ttl} from a peer, no hops allowed"
        );
    }
    // Two routers between the peers: 253 and up.
    for ttl in [253, 254, 255] {
        assert_eq!(
            validate_from(&golden_ad(), ttl, Some(v4(4)), 51, &[VIP4], &peers, 2),
            Ok(()),
            "ttl {ttl} from a peer two hops away"
        );
    }
    for ttl in [1, 64, 252] {
        assert_eq!(
            validate_from(&golden_ad(), ttl, Some(v4(4)), 51, &[VIP4], &peers, 2),
            Err(Invalid::Ttl(ttl)),
            "ttl {ttl} from farther than two hops"
        );
    }
    // The hops are a peer's allowance only.
    assert_eq!(
        validate_from(&golden_ad(), 254, Some(v4(9)), 51, &[VIP4], &peers, 2),
        Err(Invalid::Ttl(254)),
        "a routed advert from a stranger"
    );
    assert_eq!(
        validate_from(&golden_ad(), 254, None, 51, &[VIP4], &peers, 2),
        Err(Invalid::Ttl(254)),
        "an unknown sender"
    );
    assert_eq!(
        validate_from(&golden_ad(), 255, Some(v4(9)), 51, &[VIP4], &peers, 0),
        Ok(()),
        "on the link (a peer listed by another of its addresses)"
    );
    assert_eq!(
        validate_from(&golden_ad(), 255, Some(v4(3)), 52, &[VIP4], &peers, 0),
        Err(Invalid::OtherVrid(51))
    );
    assert_eq!(
        validate_from(&golden_ad(), 254, Some(v4(3)), 51, &[v4(101)], &peers, 1),
        Err(Invalid::AddressMismatch)
    );
    // IPv6: the hop limit, the same way.
    let peer6 = IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3));
    let ad6 = Advertisement {
        addresses: vec![IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100))],
        ..golden_ad()
    };
    assert_eq!(
        validate_from(&ad6, 64, Some(peer6), 51, &ad6.addresses, &[peer6], 0),
        Err(Invalid::Ttl(64))
    );
    assert_eq!(
        validate_from(&ad6, 254, Some(peer6), 51, &ad6.addresses, &[peer6], 1),
        Ok(())
    );
    assert_eq!(
        validate_from(&ad6, 254, Some(SRC6), 51, &ad6.addresses, &[peer6], 1),
        Err(Invalid::Ttl(254))
    );
}

#[test]
fn validate_sets_other_vrid_apart() {
    assert_eq!(
        validate(&golden_ad(), 255, 52, &[VIP4]),
        Err(Invalid::OtherVrid(51))
    );
}

#[test]
fn validate_compares_addresses_as_sets() {
    let a: IpAddr = "198.18.0.100".parse().unwrap();
    let b: IpAddr = "198.18.0.101".parse().unwrap();
    let ad = Advertisement {
        addresses: vec![a, b],
        ..golden_ad()
    };
    assert_eq!(validate(&ad, 255, 51, &[b, a]), Ok(()), "order");
    assert_eq!(validate(&ad, 255, 51, &[a, b, a]), Ok(()), "repeats");
    assert_eq!(
        validate(&ad, 255, 51, &[a]),
        Err(Invalid::AddressMismatch),
        "we have fewer"
    );
    let c: IpAddr = "198.18.0.102".parse().unwrap();
    assert_eq!(
        validate(&ad, 255, 51, &[a, b, c]),
        Err(Invalid::AddressMismatch),
        "we have more"
    );
    assert_eq!(
        validate(&ad, 255, 51, &[a, c]),
        Err(Invalid::AddressMismatch),
        "same count, other address"
    );
}

#[test]
fn family_helpers() {
    assert_eq!(Family::of(&SRC4), Family::V4);
    assert_eq!(Family::of(&SRC6), Family::V6);
    assert_eq!(Family::V4.multicast_group(), DST4);
    assert_eq!(Family::V6.multicast_group(), DST6);
    assert_eq!(VRRP_MCAST_V6.to_string(), "ff02::12");
    assert_eq!(VRRP_MCAST_V4.to_string(), "224.0.0.18");
}

#[test]
fn checksum_helpers_fold_carries_and_pad_odd_bytes() {
    assert_eq!(fold(0x1_fffe), 0xffff);
    assert_eq!(fold(0x2_0001), 0x0003);
    assert_eq!(sum_words(0, &[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    for data in [&[0xab_u8][..], &[1, 2, 3], &[0xff; 9]] {
        assert_eq!(
            checksum(data, SRC4, DST4, ChecksumMode::NoPseudoHeader),
            ref_checksum(data)
        );
    }
}
