//! `apply` against one pin directory from many lb-decaps at once, and
//! against a live program whose maps were replaced under it or that an
//! older lb-decap left with fewer maps: afterwards
//! exactly one program is attached and it reads the pinned maps, so a later
//! `apply` reaches the data plane; a replacement whose new program fails
//! to load leaves the old one attached. `xdp_mode = "auto"` where native
//! XDP is unavailable (`lo`) attaches at tc ingress, never generic XDP.
//! Several interfaces share one program and one set of maps; a second
//! running lb-decap for another interface is refused while the first
//! runs; another build's live program is swapped for this build's, but
//! not by a one-shot apply beside a running lb-decap nor by a running
//! one's re-apply.
//! Each test runs in a network namespace of its own (`lbk<pid>-<tag>`: its
//! `lo`, and a veth pair inside it for native XDP), pins under a BPF
//! filesystem outside /sys (mounted if needed), and removes both. Needs
//! root.

mod auto_mode;
mod failed_replacement;
mod fixtures;
mod foreign_links;
mod gro;
mod ownership;
mod pinned_maps;
mod several_interfaces;
mod upgrade;
