//! Before an instance starts: whether it resumes as master after a
//! restart, and the checks it must pass (and the address it will speak
//! from), all made before lbd loads or attaches anything.

use std::{net::IpAddr, path::Path};

use anyhow::anyhow;
use tracing::warn;

use super::Instance;
use crate::{
    config::{Config, VrrpConfig},
    netlink::{Interface, Netlink},
    vrrp::{
        addresses,
        driver::{
            record::{read_record, resume_decision, Resumption},
            source::{never_sources, source_address, SourceKind},
        },
        Family,
    },
};

/// An instance that passed its start-up checks ([`Instance::prepare`]),
/// to start.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The instance's configuration.
    pub(super) config: VrrpConfig,
    /// The address its adverts go from.
    pub(super) local: IpAddr,
    /// `local` is a `unicast_src_ip` not on the interface yet: the
    /// instance starts without a source (see [`Machine::source_gone`](crate::vrrp::Machine::source_gone)).
    pub(super) source_missing: bool,
    /// The addresses adverts never go from (see [`never_sources`]).
    pub(super) never: Vec<IpAddr>,
    /// Whether lbd replicates its connection table with a VRRP peer (any
    /// instance may carry it): a master steps back after a long link
    /// outage (see [`Machine::hold_after_outages`](crate::vrrp::Machine::hold_after_outages)).
    pub(super) replicates: bool,
}

impl Instance {
    /// Whether an instance of `config` would resume as master: its
    /// `state_file` holds the restart record of a master whose last advert
    /// left less than the shortest master-down interval any peer can run,
    /// less a margin for the start, ago (lbd restarted), so the backup has
    /// not taken over yet, whatever its priority (see [`resume_window`](crate::vrrp::driver::record::resume_window)).
    /// Decided once, before anything slow, and handed to [`Self::start`]:
    /// the caller starts such an instance first, while the pinned program
    /// keeps forwarding, so a slow start-up (the verifier, neighbour
    /// resolution) does not run the backup's timer out. The caller also
    /// checks that there is a pinned data plane to adopt: this looks at
    /// the state file only.
    ///
    /// Only a restart record ([`Self::abandon`]) resumes: a crash leaves
    /// the record of the last advert, and resuming on it would let a crash
    /// loop hold the addresses forever, the backup's timer reset at each
    /// start. An lbd from before restart records left that record at a
    /// restart too: the first restart into this one (an upgrade) does not
    /// resume, the peer takes over, and this node, if it preempts, takes
    /// mastership back once the peer's flows are here (with replication),
    /// as at any start.
    pub(crate) fn resumes(config: &VrrpConfig, state_file: Option<&Path>) -> bool {
        let Some(path) = state_file else {
            return false;
        };
        let now = crate::clock::monotonic_ns();
        match resume_decision(read_record(path), config, now) {
            Resumption::Resume => true,
            Resumption::NotAfterCrash => {
                warn!(
                    vrid = config.vrid,
                    "VRRP: was master until moments ago, but the last lbd did not stop for a restart (it crashed, or predates restart records): not resuming; the peer takes over"
                );
                false
            }
            Resumption::No => false,
        }
    }

    /// The checks an instance of `config` must pass on `interface` before
    /// it starts, and the address it will speak from: none of its
    /// addresses is already the interface's own, and the interface has an
    /// address to send adverts from. Only reads the interface: the caller
    /// runs it before it loads or attaches anything, so a refused instance
    /// leaves the node as it found it.
    /// `lbd` is the whole config: the other instances' addresses and the
    /// VIPs are never sources either (see [`never_sources`]).
    pub(crate) async fn prepare(
        config: VrrpConfig,
        lbd: &Config,
        interface: &Interface,
        netlink: &Netlink,
    ) -> anyhow::Result<Prepared> {
        let family = config
            .addresses
            .first()
            .map(Family::of)
            .ok_or_else(|| anyhow!("VRRP instance {} has no address to move", config.vrid))?;
        addresses::refuse_own(interface, config.vrid, &config.addresses).await?;
        let never = never_sources(lbd);
        let kind = SourceKind::of_instance(family, &config);
        let (local, source_missing) = match source_address(netlink, interface, kind, &never).await?
        {
            Ok(local) => (local, false),
            // A `unicast_src_ip` not (yet) on the interface: the instance
            // starts without a source, as one whose source went (see
            // `Machine::source_gone`), and sends once it is there.
            Err(missing) => match kind {
                SourceKind::Fixed(source) => {
                    warn!(
                        vrid = config.vrid,
                        interface = %interface.name,
                        missing,
                        "VRRP: the instance starts without an address to send adverts from: a backup that does not take over until unicast_src_ip {source} is on the interface"
                    );
                    (source, true)
                }
                _ => return Err(anyhow!("{missing}")),
            },
        };
        Ok(Prepared {
            config,
            local,
            source_missing,
            never,
            replicates: lbd.vrrp.iter().any(|v| v.sync_peer.is_some()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::driver::tests::{vrrp_config, StateFile, SECOND};

    #[test]
    fn resumes_measures_against_the_shortest_master_down_interval() {
        // Ours is 3 s + (256 - 100) / 256 s = 3.609 s; a peer of priority
        // 200 (with nopreempt, so this node was master) takes over after
        // 3 s + 56 / 256 s = 3.219 s, and one of 255 after 3.004 s: the
        // window is that, less a 0.1 s margin.
        let vrrp = vrrp_config(100, "198.18.0.10");
        let now = crate::clock::monotonic_ns();
        let fresh = StateFile::new("fresh", &format!("restarting {}\n", now - 1_900_000_000));
        assert!(Instance::resumes(&vrrp, Some(&fresh.0)));
        // 2.5 s (a restart with replication): still resumes.
        let restart = StateFile::new("restart", &format!("restarting {}\n", now - 2_500_000_000));
        assert!(Instance::resumes(&vrrp, Some(&restart.0)));
        // 2.95 s: within the peer's 3.004 s, but not by the margin.
        let late = StateFile::new("late", &format!("restarting {}\n", now - 2_950_000_000));
        assert!(!Instance::resumes(&vrrp, Some(&late.0)));
        // 3.3 s: within our own interval, but the peer may be master now.
        let taken = StateFile::new("taken", &format!("restarting {}\n", now - 3_300_000_000));
        assert!(!Instance::resumes(&vrrp, Some(&taken.0)));
        let stale = StateFile::new("stale", &format!("restarting {}\n", now - 4 * SECOND));
        assert!(!Instance::resumes(&vrrp, Some(&stale.0)));
        assert!(!Instance::resumes(&vrrp, None));
        // What a crash leaves, 1.2 s after the last advert: not resumed.
        let crashed = StateFile::new("crashed", &format!("master {}\n", now - 1_200_000_000));
        assert!(!Instance::resumes(&vrrp, Some(&crashed.0)));
    }
}
