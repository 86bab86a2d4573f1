//! Withdrawing every address at once, a stop for good: from the
//! running announcer, from the config, or from the record a stopped lbd
//! left (no announcer running).

use std::collections::BTreeSet;

use anyhow::Context as _;
use tracing::{error, info};

use super::Announcer;
use crate::bgp::{bird, routes_file};
use crate::config::BgpConfig;

impl Announcer {
    /// Withdraws every address now (a stop for good).
    pub(crate) async fn withdraw_all(&mut self) -> anyhow::Result<()> {
        withdraw(&self.config).await?;
        self.applied = Some(BTreeSet::new());
        self.may_announce.clear();
        Ok(())
    }
}

/// Withdraws every address of `config` (an empty routes file, then a
/// reconfigure): a stop for good.
pub async fn withdraw(config: &BgpConfig) -> anyhow::Result<()> {
    withdraw_routes(&crate::ownership::held::HeldBgp::from(config)).await
}

/// Withdraws every address of the announcement `held` describes (its
/// routes file emptied, then its BIRD reconfigured): also with no lbd
/// running, from the record of what the lbd that ran held
/// (`lbd --release-vips`, `--cleanup`), whatever the config says now. A
/// BIRD that refuses its config (bird.conf broken) has both of lbd's
/// protocols disabled instead, which withdraws as well; the next
/// configure it takes enables them again, with the emptied file.
pub(crate) async fn withdraw_routes(held: &crate::ownership::held::HeldBgp) -> anyhow::Result<()> {
    routes_file::write(
        &held.routes_file,
        &routes_file::render(&held.protocol, &BTreeSet::new()),
    )?;
    match bird::configure(&held.bird_socket).await {
        Ok(_) => {
            info!(routes_file = %held.routes_file.display(), "BGP: every address withdrawn");
            Ok(())
        }
        Err(refused) if bird::is_refused(&refused) => {
            let protocols = routes_file::protocols(&held.protocol);
            bird::toggle(&held.bird_socket, &protocols, bird::Toggle::Disable)
                .await
                .into_result()
                .with_context(|| {
                    format!("{refused:#}; and disabling lbd's protocols instead failed too")
                })?;
            error!(error = %format!("{refused:#}"), ?protocols, "BGP: BIRD refuses its config (bird.conf or a file it includes is broken): every address withdrawn by disabling lbd's protocols instead; fix bird.conf (`birdc configure` must succeed), which enables them again");
            Ok(())
        }
        Err(error) => Err(error),
    }
}
