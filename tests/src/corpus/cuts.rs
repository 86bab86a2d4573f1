//! Truncations of the corpus's frames, and what each must get.

use super::*;

/// A frame derived from an entry by cutting it, and what must happen to it.
#[derive(Debug, Clone)]
pub struct Cut {
    /// The frame as cut (and, for a consistent cut, with its IP length
    /// fixed).
    pub frame: Vec<u8>,
    /// Whether the cut frame is still valid VIP traffic (TX expected, to the
    /// entry's flow's backend); otherwise `DROP drop_malformed`.
    pub valid: bool,
    /// Whether this is a consistent cut.
    pub consistent: bool,
}

/// Offset and kind of the (outer) IP header.
fn ip_layer(layers: &[Layer]) -> Option<(usize, Kind)> {
    [Kind::Ipv4, Kind::Ipv6]
        .into_iter()
        .find_map(|k| offset_of(layers, k).map(|o| (o, k)))
}

/// Where the IP packet ends according to its length field.
fn ip_end(layers: &[Layer]) -> Option<usize> {
    let (off, kind) = ip_layer(layers)?;
    let frame = bytes(layers);
    let field = |at: usize| usize::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
    Some(match kind {
        Kind::Ipv4 => off + field(off + 2),
        _ => off + 40 + field(off + 4),
    })
}

/// The shortest IP packet end at which a valid entry stays valid: the end
/// of the last header the data plane reads (see the module comment).
fn min_valid_end(layers: &[Layer]) -> Option<usize> {
    if let Some(end) = end_of(layers, Kind::Tcp) {
        return Some(end);
    }
    if let Some(off) = offset_of(layers, Kind::Udp) {
        let udp = &layers.iter().find(|l| l.kind == Kind::Udp)?.bytes;
        return Some(off + usize::from(u16::from_be_bytes([udp[4], udp[5]])));
    }
    [Kind::QuotedIpv4, Kind::QuotedIpv6]
        .into_iter()
        .find_map(|k| end_of(layers, k))
        .map(|end| end + 8)
}

/// The smallest frame BPF_PROG_TEST_RUN takes: an Ethernet header.
pub const MIN_FRAME: usize = 14;

/// Every cut of `entry`'s frame, from `MIN_FRAME` bytes to one byte short:
/// plain cuts (the frame ends early, its length fields unchanged), and for
/// valid entries also consistent ones (the IP length field set to match,
/// wherever the cut leaves it whole).
pub fn cuts(entry: &Entry) -> Vec<Cut> {
    let frame = entry.frame();
    let ip_end = ip_end(&entry.layers);
    let mut out = Vec::new();
    for len in MIN_FRAME..frame.len() {
        out.push(Cut {
            frame: frame[..len].to_vec(),
            valid: entry.flow.is_some() && ip_end.is_some_and(|end| len >= end),
            consistent: false,
        });
    }
    let (Some((ip_off, kind)), Some(min_end), Some(_)) = (
        ip_layer(&entry.layers),
        min_valid_end(&entry.layers),
        entry.flow,
    ) else {
        return out;
    };
    for len in MIN_FRAME..frame.len() {
        let mut cut = frame[..len].to_vec();
        match kind {
            Kind::Ipv4 if len >= ip_off + 4 => {
                let total = u16::try_from(len - ip_off).expect("length");
                cut[ip_off + 2..ip_off + 4].copy_from_slice(&total.to_be_bytes());
            }
            Kind::Ipv6 if len >= ip_off + 40 => {
                let payload = u16::try_from(len - ip_off - 40).expect("length");
                cut[ip_off + 4..ip_off + 6].copy_from_slice(&payload.to_be_bytes());
            }
            _ => continue,
        }
        out.push(Cut {
            frame: cut,
            valid: len >= min_end,
            consistent: true,
        });
    }
    out
}
