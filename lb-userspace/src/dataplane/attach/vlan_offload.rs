//! Native XDP and the VLAN tags a NIC has already taken off. With RX VLAN
//! offload on (`ethtool -k <if>`: `rx-vlan-offload`), many NICs strip the
//! 802.1Q tag of a received frame into the receive descriptor: the XDP
//! program sees the frame untagged, and a frame it sends back out
//! (`XDP_TX`) leaves untagged, into another VLAN than it came from. lbd
//! leaves the host's settings alone: once at start, on a physical
//! interface it runs native XDP on, it reads the offload flags (the legacy
//! `ETHTOOL_GFLAGS` ioctl) and warns, naming the ways out (`ethtool -K
//! <if> rxvlan off`, or `attach = "tc"`, where the skb keeps the tag).
//! Virtual devices (veth, VLAN devices) have no descriptor to strip a
//! tag into, and generic XDP and tc run on the skb; none is warned
//! about. A bond is virtual too, but native XDP on a bond runs in its
//! slaves' drivers, which strip the tag: its physical slaves are checked.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use tracing::{debug, warn};

use crate::config::XdpMode;

/// `ETHTOOL_GFLAGS` (linux/ethtool.h): read the legacy offload flags.
const ETHTOOL_GFLAGS: u32 = 0x25;
/// `ETH_FLAG_RXVLAN` (linux/ethtool.h): RX VLAN offload
/// (`NETIF_F_HW_VLAN_CTAG_RX`).
pub(crate) const ETH_FLAG_RXVLAN: u32 = 1 << 8;

/// `struct ethtool_value` (linux/ethtool.h).
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Whether the balancer attached in `mode` loses the VLAN tags of the
/// frames it sends back: native XDP (or a kept link whose mode the kernel
/// did not name, `Auto`) on a physical device (`physical`) whose offload
/// flags (`flags`, as `ETHTOOL_GFLAGS` reads them) have RX VLAN offload
/// on. Generic XDP runs on the skb, which keeps the tag.
pub(crate) fn tags_lost(mode: XdpMode, physical: bool, flags: u32) -> bool {
    mode != XdpMode::Generic && physical && flags & ETH_FLAG_RXVLAN != 0
}

/// The warning for `interface` (see the module docs).
pub(crate) fn warning(interface: &str) -> String {
    format!(
        "RX VLAN offload is on for {interface} (rx-vlan-offload): the NIC takes 802.1Q tags off \
         before native XDP sees a frame, so frames lbd sends back out (XDP_TX) leave untagged, \
         into another VLAN than they came from. If VIP traffic arrives tagged, turn it off \
         (`ethtool -K {interface} rxvlan off`) or use attach = \"tc\", where the packet keeps \
         its tag"
    )
}

/// The devices whose NICs strip the tags of what `interface` receives,
/// under sysfs' `net` directory `class_net` (`/sys/class/net`):
/// `interface` itself if physical; a bond's physical slaves (a bond has
/// no `device`, its `bonding/slaves` lists them); none otherwise.
pub(crate) fn stripping_devices(class_net: &Path, interface: &str) -> Vec<String> {
    let physical = |name: &str| class_net.join(name).join("device").exists();
    if physical(interface) {
        return vec![interface.to_owned()];
    }
    std::fs::read_to_string(class_net.join(interface).join("bonding").join("slaves"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|slave| physical(slave))
        .map(str::to_owned)
        .collect()
}

/// `interface`'s legacy offload flags (`ETHTOOL_GFLAGS`), in this
/// thread's network namespace.
pub(crate) fn ethtool_flags(interface: &str) -> io::Result<u32> {
    let name = interface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an interface name: {interface:?}"),
        ));
    }
    // SAFETY: plain socket(2); the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GFLAGS,
        data: 0,
    };
    // SAFETY: ifreq is plain data; zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(name) {
        *to = *from as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: SIOCETHTOOL with an ifreq naming the interface (NUL
    // terminated: zeroed, the name shorter than IFNAMSIZ) and pointing at
    // a live ethtool_value, which the kernel fills.
    let done = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL as _, &raw mut request) };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}

/// Warns if the balancer, attached to `interface` in `mode`, loses VLAN
/// tags (`tags_lost`). Called once at start, after the attach; a failed
/// read is only logged at debug level (nothing is known, nothing said).
pub(crate) fn warn_if_tags_lost(interface: &str, mode: XdpMode) {
    if mode == XdpMode::Generic {
        return;
    }
    for device in stripping_devices(Path::new("/sys/class/net"), interface) {
        match ethtool_flags(&device) {
            Ok(flags) if tags_lost(mode, true, flags) && device == interface => {
                warn!(%interface, "{}", warning(interface));
            }
            Ok(flags) if tags_lost(mode, true, flags) => {
                warn!(%interface, slave = %device, "{} (a slave of bond {interface}: native XDP on the bond runs in its slaves' drivers)", warning(&device));
            }
            Ok(_) => {}
            Err(error) => {
                debug!(%interface, %device, %error, "reading the offload flags (ETHTOOL_GFLAGS) failed: RX VLAN offload not checked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The warning's decision: native XDP (or a kept link of unnamed
    /// mode) on a physical device with RX VLAN offload on; any other flag
    /// does not count, virtual devices and generic XDP never warn.
    #[test]
    fn only_native_xdp_on_a_physical_device_with_rx_vlan_offload_loses_tags() {
        let other = (1 << 7) | (1 << 15) | (1 << 27); // TXVLAN, NTUPLE, RXHASH
        for mode in [XdpMode::Native, XdpMode::Auto] {
            assert!(tags_lost(mode, true, ETH_FLAG_RXVLAN), "{mode:?}");
            assert!(tags_lost(mode, true, ETH_FLAG_RXVLAN | other), "{mode:?}");
            assert!(!tags_lost(mode, true, other), "{mode:?}: offload off");
            assert!(!tags_lost(mode, true, 0), "{mode:?}: offload off");
            assert!(
                !tags_lost(mode, false, ETH_FLAG_RXVLAN),
                "{mode:?}: virtual"
            );
        }
        assert!(!tags_lost(XdpMode::Generic, true, ETH_FLAG_RXVLAN), "skb");
        let message = warning("ens1f0");
        assert!(
            message.contains("ethtool -K ens1f0 rxvlan off"),
            "{message}"
        );
        assert!(message.contains("attach = \"tc\""), "{message}");
    }

    /// Native XDP on a bond runs in its slaves' drivers: its physical
    /// slaves are checked (a bond has no `device` of its own), virtual
    /// ones are not; a physical interface is checked itself, and a
    /// virtual one that is no bond yields nothing.
    #[test]
    fn a_bond_is_checked_through_its_physical_slaves() {
        let scratch = crate::test_scratch::ScratchDir::new("vlan-sysfs");
        let root = scratch.path();
        for dir in ["eth0/device", "eth1/device", "veth0", "bond0/bonding", "lo"] {
            std::fs::create_dir_all(root.join(dir)).expect("a sysfs directory");
        }
        std::fs::write(root.join("bond0/bonding/slaves"), "eth0 veth0 eth1\n").expect("slaves");
        let bond = stripping_devices(root, "bond0");
        let eth = stripping_devices(root, "eth0");
        let virtual_device = stripping_devices(root, "lo");
        let missing = stripping_devices(root, "eth9");
        assert_eq!(bond, ["eth0", "eth1"]);
        assert_eq!(eth, ["eth0"]);
        assert!(virtual_device.is_empty());
        assert!(missing.is_empty());
    }

    /// The ioctl reads a veth's flags in a network namespace of its own
    /// (a thread's, gone with it: nothing is configured outside it): RX
    /// VLAN offload on as veth reports it, off once `ethtool -K` turned it
    /// off; a missing interface or a bad name is an error. A veth is no
    /// physical device, so it is never warned about anyway.
    #[test]
    fn the_offload_flags_of_a_veth_are_read_in_its_namespace() {
        use crate::test_netns::{in_own_netns, ip, is_root};
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        in_own_netns(|| {
            ip(&["link", "add", "vo0", "type", "veth", "peer", "name", "vo1"]);
            let flags = ethtool_flags("vo0").expect("reading vo0's flags");
            assert_ne!(flags & ETH_FLAG_RXVLAN, 0, "veth: rxvlan on ({flags:#x})");
            let class_net = Path::new("/sys/class/net");
            assert!(stripping_devices(class_net, "vo0").is_empty(), "virtual");
            let status = std::process::Command::new("ethtool")
                .args(["-K", "vo0", "rxvlan", "off"])
                .status()
                .expect("running ethtool");
            assert!(status.success(), "ethtool -K vo0 rxvlan off");
            let flags = ethtool_flags("vo0").expect("reading vo0's flags again");
            assert_eq!(flags & ETH_FLAG_RXVLAN, 0, "rxvlan off ({flags:#x})");
            let missing = ethtool_flags("vo9").expect_err("no such interface");
            assert_eq!(missing.raw_os_error(), Some(libc::ENODEV), "{missing}");
            for bad in ["", "a-name-too-long-for-ifnamsiz", "v\0o0"] {
                let refused = ethtool_flags(bad).expect_err("not a name");
                assert_eq!(refused.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            }
        });
    }
}
