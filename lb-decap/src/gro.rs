//! UDP GRO for forwarding at the tc hook. With `rx-udp-gro-forwarding`
//! or `rx-gro-list` on, the kernel may merge several GUE datagrams of a
//! flow into one skb before tc ingress sees it; the decap program unwraps
//! that skb by its first headers, so only the first inner packet
//! survives. XDP runs before GRO and is not affected. Read with the
//! ethtool ioctl (`ETHTOOL_GSSET_INFO`, `ETHTOOL_GSTRINGS`,
//! `ETHTOOL_GFEATURES`): three calls on an AF_INET socket, no privilege.

use std::{ffi::CString, os::fd::AsRawFd as _};

use anyhow::{bail, Context as _};

/// The features that merge UDP datagrams for forwarding.
pub const MERGING: [&str; 2] = ["rx-udp-gro-forwarding", "rx-gro-list"];

/// ethtool commands (linux/ethtool.h).
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
/// The string set of the feature names.
const ETH_SS_FEATURES: u32 = 4;
/// `ETH_GSTRING_LEN`.
const GSTRING_LEN: usize = 32;

/// The features of [`MERGING`] that are on for `interface`, in its order.
pub fn merging(interface: &str) -> anyhow::Result<Vec<&'static str>> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")
        .or_else(|_| std::net::UdpSocket::bind("[::]:0"))
        .context("opening a socket for the ethtool ioctl")?;
    let call = |data: &mut [u8]| ethtool(&socket, interface, data);
    // How many features there are.
    let mut info = [0u8; 20];
    info[0..4].copy_from_slice(&ETHTOOL_GSSET_INFO.to_ne_bytes());
    info[8..16].copy_from_slice(&(1u64 << ETH_SS_FEATURES).to_ne_bytes());
    call(&mut info).context("ETHTOOL_GSSET_INFO")?;
    if u64::from_ne_bytes(word::<8>(&info, 8)) & (1 << ETH_SS_FEATURES) == 0 {
        bail!("{interface} names no features");
    }
    let count = u32::from_ne_bytes(word::<4>(&info, 16)) as usize;
    // Their names.
    let mut strings = vec![0u8; 12 + count * GSTRING_LEN];
    strings[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    strings[4..8].copy_from_slice(&ETH_SS_FEATURES.to_ne_bytes());
    strings[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    call(&mut strings).context("ETHTOOL_GSTRINGS")?;
    // Which are on: blocks of 32 (available, requested, active,
    // never_changed).
    let blocks = count.div_ceil(32);
    let mut features = vec![0u8; 8 + blocks * 16];
    features[0..4].copy_from_slice(&ETHTOOL_GFEATURES.to_ne_bytes());
    features[4..8].copy_from_slice(&(blocks as u32).to_ne_bytes());
    call(&mut features).context("ETHTOOL_GFEATURES")?;
    let mut on = Vec::new();
    for index in 0..count {
        let name = &strings[12 + index * GSTRING_LEN..12 + (index + 1) * GSTRING_LEN];
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        let Some(feature) = MERGING.iter().find(|f| f.as_bytes() == name) else {
            continue;
        };
        let active = u32::from_ne_bytes(word::<4>(&features, 8 + (index / 32) * 16 + 8));
        if active & (1 << (index % 32)) != 0 {
            on.push(*feature);
        }
    }
    on.sort_by_key(|f| MERGING.iter().position(|m| m == f));
    Ok(on)
}

/// The warning for `interface` served at tc ingress with `on` (features
/// of [`MERGING`]) on, with the ways out.
pub fn warning(interface: &str, on: &[&str]) -> String {
    let off: Vec<String> = on.iter().map(|f| format!("{f} off")).collect();
    format!(
        "{} on for {interface}, where lb-decap unwraps at tc ingress: UDP GRO may merge several GUE datagrams into one skb, of which only the first inner packet survives the unwrap; turn it off (ethtool -K {interface} {}) or unwrap at native XDP, which runs before GRO",
        on.join(" and "),
        off.join(" ")
    )
}

/// `N` bytes of `data` at `at`.
fn word<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(bytes) = data.get(at..at + N) {
        out.copy_from_slice(bytes);
    }
    out
}

/// One `SIOCETHTOOL` call for `interface` with the command in `data`.
fn ethtool(socket: &std::net::UdpSocket, interface: &str, data: &mut [u8]) -> anyhow::Result<()> {
    let name = CString::new(interface).context("interface name holds a NUL byte")?;
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        bail!("interface name {interface:?} is too long");
    }
    // struct ifreq: the name, then (in the union) the data pointer.
    let mut request = [0u8; 40];
    request[..bytes.len()].copy_from_slice(bytes);
    request[16..24].copy_from_slice(&(data.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: an ifreq whose data pointer points at a buffer as long as
    // the command's structure (with its trailing array) that outlives the
    // call.
    let rc = unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            libc::SIOCETHTOOL as _,
            request.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("the ethtool ioctl on {interface}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_names_the_features_and_how_to_turn_them_off() {
        let text = warning("eth1", &MERGING);
        assert!(
            text.starts_with("rx-udp-gro-forwarding and rx-gro-list on for eth1"),
            "{text}"
        );
        assert!(
            text.contains("ethtool -K eth1 rx-udp-gro-forwarding off rx-gro-list off"),
            "{text}"
        );
    }

    /// `lo` has neither feature on (and cannot turn them on).
    #[test]
    fn loopback_merges_nothing() {
        assert!(merging("lo").expect("read").is_empty());
        assert!(merging("t2-none0").is_err());
    }
}
