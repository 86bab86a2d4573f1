//! The `vrrp_advert` target: VRRP adverts decoded, checked and fed to
//! the state machine as lbd would.

use super::*;

/// Flag bits of the first byte of a `vrrp_advert` input.
pub mod vrrp_flags {
    /// IPv6 (else IPv4) addresses.
    pub const V6: u8 = 0x01;
    /// The destination is the family's multicast group (else it follows
    /// the source in the input).
    pub const MULTICAST: u8 = 0x02;
    /// Write the right checksum into the payload before decoding, so the
    /// fuzzer gets past the checksum to the fields behind it.
    pub const FIX_CHECKSUM: u8 = 0x04;
    /// With [`FIX_CHECKSUM`]: the IPv4 form without pseudo-header.
    pub const NO_PSEUDO_HEADER: u8 = 0x08;
    /// The rest is a whole IPv4 packet as the raw socket delivers it, read
    /// by lbd's own `parse_ipv4` (addresses and TTL from it).
    pub const IPV4_PACKET: u8 = 0x10;
    /// Our priority in the state machine fed the advert: 255 (owner) if
    /// set, else 100.
    pub const OWNER: u8 = 0x20;
    /// The machine preempts.
    pub const PREEMPT: u8 = 0x40;
}

/// An input of the `vrrp_advert` target: `flags | ttl | vrid | src | [dst] |
/// payload` (addresses 4 or 16 bytes; no dst with
/// [`vrrp_flags::MULTICAST`]), or `flags | IPv4 packet` with
/// [`vrrp_flags::IPV4_PACKET`].
pub fn vrrp_input(
    flags: u8,
    ttl: u8,
    vrid: u8,
    src: IpAddr,
    dst: Option<IpAddr>,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![flags, ttl, vrid];
    for addr in std::iter::once(src).chain(dst) {
        match addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Takes `N` bytes off the front of `data`.
fn take<const N: usize>(data: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = data.split_first_chunk::<N>()?;
    *data = rest;
    Some(*head)
}

fn take_addr(data: &mut &[u8], v6: bool) -> Option<IpAddr> {
    Some(if v6 {
        IpAddr::V6(Ipv6Addr::from(take::<16>(data)?))
    } else {
        IpAddr::V4(Ipv4Addr::from(take::<4>(data)?))
    })
}

/// Advert decoding, the receive checks and the state machine on arbitrary
/// packets: never a panic; whatever decodes has the fields' ranges, encodes
/// back to a packet that decodes to the same advert (byte for byte the
/// same when the reserved bits were clear), passes [`validate`] against
/// itself, and drives a [`Machine`] without trouble.
pub fn vrrp_advert(data: &[u8]) {
    let mut data = data;
    let Some([flags]) = take::<1>(&mut data) else {
        return;
    };
    let (ttl, our_vrid, src, dst, mut payload) = if flags & vrrp_flags::IPV4_PACKET != 0 {
        let Some(received) = parse_ipv4(data) else {
            return;
        };
        (
            received.ttl,
            0,
            received.src,
            received.dst,
            received.payload,
        )
    } else {
        let Some([ttl, vrid]) = take::<2>(&mut data) else {
            return;
        };
        let v6 = flags & vrrp_flags::V6 != 0;
        let Some(src) = take_addr(&mut data, v6) else {
            return;
        };
        let dst = if flags & vrrp_flags::MULTICAST != 0 {
            Family::of(&src).multicast_group()
        } else {
            let Some(dst) = take_addr(&mut data, v6) else {
                return;
            };
            dst
        };
        (ttl, vrid, src, dst, data.to_vec())
    };
    if flags & vrrp_flags::FIX_CHECKSUM != 0 && payload.len() >= 8 {
        let mode = if flags & vrrp_flags::NO_PSEUDO_HEADER != 0 {
            ChecksumMode::NoPseudoHeader
        } else {
            ChecksumMode::PseudoHeader
        };
        payload[6] = 0;
        payload[7] = 0;
        let sum = checksum(&payload, src, dst, mode);
        payload[6..8].copy_from_slice(&sum.to_be_bytes());
    }

    let Ok((ad, mode)) = Advertisement::decode(&payload, src, dst) else {
        return;
    };
    assert_ne!(ad.vrid, 0, "decoded VRID 0");
    assert!(
        (1..=0x0fff).contains(&ad.max_adver_int_cs),
        "interval {}",
        ad.max_adver_int_cs
    );
    assert_eq!(ad.addresses.len(), usize::from(payload[3]), "address count");
    assert!(
        ad.addresses
            .iter()
            .all(|a| Family::of(a) == Family::of(&src)),
        "address of another family: {ad:?}"
    );
    match ad.encode(src, dst, mode) {
        Err(EncodeError::NoAddresses) => assert!(ad.addresses.is_empty()),
        Err(e) => panic!("a decoded advert does not encode: {e} ({ad:?})"),
        Ok(bytes) => {
            assert_eq!(
                Advertisement::decode(&bytes, src, dst),
                Ok((ad.clone(), mode)),
                "re-encoded advert decodes differently"
            );
            if payload[4] & 0xf0 == 0 {
                assert_eq!(bytes, payload, "re-encoding changed the packet");
            }
        }
    }

    // The receive checks against an arbitrary configuration, and against
    // the advert's own.
    let verdict = validate(
        &ad,
        ttl,
        our_vrid,
        &[IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100))],
    );
    if verdict.is_ok() {
        assert!(ttl == VRRP_TTL && ad.vrid == our_vrid);
    }
    assert_eq!(validate(&ad, VRRP_TTL, ad.vrid, &ad.addresses), Ok(()));

    // The state machine, as the driver feeds it a checked advert.
    let settings = Settings {
        vrid: ad.vrid,
        priority: if flags & vrrp_flags::OWNER != 0 {
            255
        } else {
            100
        },
        adver_interval_cs: 100,
        preempt: flags & vrrp_flags::PREEMPT != 0,
        preempt_delay: Duration::from_secs(u64::from(ttl % 4)),
        accept_mode: false,
        announce_refresh: (ttl & 4 != 0).then_some(Duration::from_secs(2)),
    };
    let primary = match src {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)),
    };
    let mut machine = Machine::new(settings, primary);
    let now = Instant::now();
    machine.startup(now);
    machine.on_advert(&ad, src, now);
    for later in [1, 50, 5000] {
        machine.on_timer(now + Duration::from_millis(later));
        machine.on_advert(&ad, src, now + Duration::from_millis(later));
    }
    machine.shutdown(now + Duration::from_secs(10));
}
