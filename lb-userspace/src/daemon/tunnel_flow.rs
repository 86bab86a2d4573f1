//! `lbctl flow` for a tunnelled VIP: the outer header the flow's packets
//! get toward their backend, computed with the data plane's own rule
//! (`lb_common::tunnel`), so what lbctl shows is what a capture on the
//! wire finds.

use std::net::{IpAddr, SocketAddr};

use lb_common::{
    consts::{AF_INET, AF_INET6},
    tunnel::{outer_family, outer_source_v4, outer_source_v6},
    Mode, TunnelConfig,
};

use crate::{
    api::flow_schema::FlowTunnel,
    reconcile::{addr_words, words_addr},
};

/// The encapsulation of packets from `client` to backend `backend` of a
/// VIP at `vip` in `mode` under `config` (None: not a tunnelled mode, or a
/// pairing no tunnel carries).
pub fn encapsulation(
    mode: Mode,
    config: &TunnelConfig,
    vip: IpAddr,
    client: SocketAddr,
    backend: IpAddr,
) -> Option<FlowTunnel> {
    if !mode.is_tunnel() {
        return None;
    }
    let family = |a: IpAddr| if a.is_ipv4() { AF_INET } else { AF_INET6 };
    let outer = outer_family(family(vip), family(backend))?;
    let (words, _) = addr_words(client.ip());
    let port = client.port().to_be();
    let outer_src = if outer == AF_INET {
        words_addr([outer_source_v4(config, words[0], port), 0, 0, 0], AF_INET)
    } else {
        words_addr(outer_source_v6(config, &words, port), AF_INET6)
    };
    Some(FlowTunnel {
        mode,
        outer_src,
        outer_dst: backend,
        gue_port: (mode == Mode::Gue).then(|| u16::from_be(config.gue_port)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::TunnelSettings,
        tunnel::{resolve, OwnAddresses},
    };

    #[test]
    fn the_outer_header_follows_the_prefix_and_the_backends_family() {
        let settings = TunnelSettings {
            source_ipv4: Some(("198.18.200.0".parse().unwrap(), 24)),
            source_ipv6: Some(("2001:2:f0::".parse().unwrap(), 64)),
            ..TunnelSettings::default()
        };
        let config = resolve(&settings, 2, &OwnAddresses::default()).config;
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        let client: SocketAddr = "198.18.1.10:40000".parse().unwrap();

        let v4 = encapsulation(
            Mode::Ipip,
            &config,
            vip,
            client,
            "198.19.2.11".parse().unwrap(),
        )
        .unwrap();
        let IpAddr::V4(src) = v4.outer_src else {
            panic!("{v4:?}")
        };
        assert_eq!(src.octets()[..3], [198, 18, 200]);
        assert_eq!(v4.gue_port, None);
        // The data plane's rule, byte for byte.
        let words = addr_words(client.ip()).0;
        assert_eq!(
            u32::from_ne_bytes(src.octets()),
            outer_source_v4(&config, words[0], 40000u16.to_be())
        );

        let v6 = encapsulation(
            Mode::Gue,
            &config,
            vip,
            client,
            "2001:2:2::12".parse().unwrap(),
        )
        .unwrap();
        let IpAddr::V6(src) = v6.outer_src else {
            panic!("{v6:?}")
        };
        assert_eq!(src.segments()[..4], [0x2001, 2, 0xf0, 0]);
        assert_eq!(v6.gue_port, Some(6080));
        assert_eq!(v6.mode, Mode::Gue);

        assert_eq!(encapsulation(Mode::Nat, &config, vip, client, vip), None);
        let v6_vip: IpAddr = "2001:2::100".parse().unwrap();
        assert_eq!(
            encapsulation(
                Mode::Ipip,
                &config,
                v6_vip,
                client,
                "198.19.2.11".parse().unwrap()
            ),
            None
        );
    }
}
