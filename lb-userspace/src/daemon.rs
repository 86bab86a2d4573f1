//! lbd's life: load the config, fill the maps, attach, keep backends' MACs
//! current, and on SIGTERM/SIGINT detach and leave the node as it found it.

use std::{collections::HashMap, net::IpAddr, path::Path, time::Duration};

use anyhow::Context as _;
use lb_common::{consts::MAX_VIPS_DEFAULT, LbConfig};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::{
    config::Config,
    dataplane::{Dataplane, MapSizes, MapWriter as _},
    netlink::Netlink,
    reconcile::{Balancer, DesiredVip},
};

/// How long start-up waits for backends' MACs before going on without them.
const INITIAL_RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often backends' MACs are looked up again (new, changed, recovered).
const RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// Backend addresses whose MAC must come from the neighbour table.
fn unresolved_addresses(config: &Config) -> Vec<IpAddr> {
    config
        .vips
        .iter()
        .flat_map(|v| v.backends.iter())
        .filter(|b| b.mac.is_none())
        .map(|b| b.address)
        .collect()
}

/// Runs lbd with the config at `path` until SIGTERM or SIGINT.
pub async fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let netlink = Netlink::connect()?;
    let interface = netlink.interface(&config.interface).await?;
    let sizes = MapSizes {
        max_vips: MAX_VIPS_DEFAULT.max(u32::try_from(config.vips.len()).unwrap_or(u32::MAX)),
        conntrack: config.conntrack_size,
    };
    let mut dataplane = Dataplane::load(sizes).context("loading the data plane")?;
    dataplane.set_config(&LbConfig {
        iface_mac: interface.mac,
        _pad: [0; 2],
    })?;

    let wanted = unresolved_addresses(&config);
    let mut macs = netlink
        .resolve(interface.index, &wanted, INITIAL_RESOLVE_TIMEOUT)
        .await?;
    warn_unresolved(&wanted, &macs);
    let mut balancer = Balancer::new(sizes.max_vips);
    let desired = |macs: &HashMap<IpAddr, [u8; 6]>| -> Vec<DesiredVip> {
        config
            .vips
            .iter()
            .map(|v| DesiredVip::from_config(v, &|a| macs.get(&a).copied()))
            .collect()
    };
    let report = balancer
        .apply(&mut dataplane, &desired(&macs))
        .context("filling the data plane")?;
    info!(?report, "maps filled");
    let mode = dataplane.attach(&interface.name, config.xdp_mode)?;
    info!(interface = %interface.name, ?mode, vips = config.vips.len(), "lbd ready");

    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut refresh = tokio::time::interval(RESOLVE_INTERVAL);
    refresh.tick().await;
    loop {
        tokio::select! {
            _ = terminate.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = interrupt.recv() => { info!("SIGINT: shutting down"); break; }
            _ = refresh.tick() => {
                match netlink.neighbours(interface.index).await {
                    Ok(known) => {
                        let fresh: HashMap<IpAddr, [u8; 6]> = wanted
                            .iter()
                            .filter_map(|a| known.get(a).map(|m| (*a, *m)))
                            .collect();
                        if fresh != macs {
                            let missing: Vec<IpAddr> = wanted.iter().filter(|a| !fresh.contains_key(a)).copied().collect();
                            if !missing.is_empty() {
                                // Keep asking the kernel for them.
                                let _probed = netlink.resolve(interface.index, &missing, Duration::ZERO).await;
                            }
                            // A MAC that vanished from the table (entry
                            // garbage-collected) is kept until a new one shows.
                            for (address, mac) in fresh {
                                macs.insert(address, mac);
                            }
                            match balancer.apply(&mut dataplane, &desired(&macs)) {
                                Ok(report) if report != Default::default() => info!(?report, "backend MACs changed; maps updated"),
                                Ok(_) => {}
                                Err(error) => warn!(%error, "updating the maps after a MAC change failed"),
                            }
                        }
                    }
                    Err(error) => warn!(%error, "reading the neighbour table failed"),
                }
            }
        }
    }
    dataplane.detach()?;
    info!("lbd stopped; XDP program detached");
    Ok(())
}

fn warn_unresolved(wanted: &[IpAddr], macs: &HashMap<IpAddr, [u8; 6]>) {
    for address in wanted.iter().filter(|a| !macs.contains_key(a)) {
        warn!(%address, "backend MAC unknown (no neighbour entry): it takes no traffic until it resolves");
    }
}
