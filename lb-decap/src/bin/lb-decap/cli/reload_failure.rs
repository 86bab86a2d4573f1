//! The words of a failed reload's log line: whether the previous
//! configuration stays in force, or the maps hold part of the new one.

use lb_decap::maps;

/// What a failed reload leaves in force, in words for its log line: the
/// previous configuration, unless the maps could be neither updated nor
/// put back.
pub(super) fn reload_failed(error: &anyhow::Error) -> &'static str {
    if error.downcast_ref::<maps::PartlyApplied>().is_some() {
        "reload failed half-way: the maps hold part of the new configuration (`lb-decap status` shows what is in force)"
    } else {
        "reload failed; the previous configuration stays in force"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_decap::{
        config::{Attach, Settings},
        dataplane,
    };

    /// An update of a fresh decap object's maps that fails half-way (a
    /// 33-bit IPv4 source prefix, which the kernel refuses, after the
    /// VIP is added), wrapped as `apply` wraps it. With `frozen`,
    /// DECAP_CONFIG refuses writes from the start (`BPF_MAP_FREEZE`), so
    /// putting the maps back fails too.
    fn failed_update(frozen: bool) -> anyhow::Error {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        /// `BPF_MAP_FREEZE` in the kernel's `enum bpf_cmd`.
        const BPF_MAP_FREEZE: libc::c_long = 22;
        let settings = |sources: Vec<lb_decap::sources::Prefix>| Settings {
            interfaces: vec!["lo".to_owned()],
            attach: Attach::Xdp,
            xdp_mode: lb_decap::config::XdpMode::Auto,
            addresses: vec!["198.19.2.11".parse().expect("address")],
            addresses_from_interface: false,
            sources,
            vips: vec!["198.18.0.100:80/tcp".parse().expect("vip")],
            config: lb_common::decap::DecapConfig {
                gue_port: 0,
                flags: lb_common::decap::DECAP_F_IPIP,
            },
        };
        let mut ebpf = dataplane::load_object().expect("the decap object (runs as root)");
        let mut taken = maps::take(&mut ebpf).expect("maps");
        if frozen {
            let aya::maps::Map::Array(config) = &taken[2] else {
                panic!("DECAP_CONFIG is not an array");
            };
            let mut attr = [0u32; 32];
            attr[0] = u32::try_from(config.fd().as_fd().as_raw_fd()).expect("fd");
            // SAFETY: a zeroed `union bpf_attr` of that size naming the map.
            let done = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_FREEZE,
                    attr.as_ptr(),
                    std::mem::size_of_val(&attr),
                )
            };
            assert_eq!(done, 0, "{}", std::io::Error::last_os_error());
        }
        let bad = lb_decap::sources::Prefix {
            addr: "198.18.201.0".parse().expect("address"),
            len: 33,
        };
        maps::Maps::borrowed(&mut taken)
            .expect("views")
            .sync(&settings(vec![bad]))
            .expect_err("a 33-bit prefix")
            .context("applying /etc/lbd/lb-decap.toml")
    }

    #[test]
    fn a_failed_reload_says_whether_the_previous_configuration_stays_in_force() {
        let put_back = failed_update(false);
        assert!(
            reload_failed(&put_back).contains("the previous configuration stays in force"),
            "{put_back:#}"
        );
        let partly = failed_update(true);
        assert!(
            format!("{partly:#}").contains("putting them back failed too"),
            "{partly:#}"
        );
        assert!(
            reload_failed(&partly).contains("the maps hold part of the new configuration"),
            "{partly:#}"
        );
    }
}
