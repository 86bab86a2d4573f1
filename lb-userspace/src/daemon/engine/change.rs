//! The engine's one change path: an operator's edit or a reload becomes the
//! next model (pure rules in `model`), the balancer stages it (the tables it
//! will really produce, in either Maglev mode), the plan is read off the
//! staged tables, and — unless it is a dry run — the staged writes are
//! replayed to the maps and the model adopted. A refused change leaves the
//! running state untouched.

use std::time::Instant;

use tracing::{info, warn};

use super::{tunnel::TunnelState, Engine};
use crate::{
    api::schema::{Change, DrainPlan},
    config::Config,
    dataplane::{newly_translating, HookChoice, Hooked, Translating},
    guard::GuardConfig,
    model::{Edit, Model, ModelError},
    reconcile::{ApplyReport, ReconcileError},
};

/// Why a change was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The model's rules refuse it (no such VIP, exists, a bad value, a
    /// limit).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The config file could not be read or is invalid (reload).
    #[error("reload refused, running state unchanged: {0}")]
    File(String),
    /// The data plane refused the writes.
    #[error("the data plane refused the change: {0}")]
    Dataplane(#[from] ReconcileError),
    /// A backend's drain, maintenance or enable could not be recorded for
    /// the next lbd (see `admin_state`).
    #[error("{0}")]
    Unrecorded(String),
    /// A program the change needs cannot be loaded (`tc_hc_encap`, for
    /// the first check through a tunnel; see `hc_load`).
    #[error("{0}")]
    Program(String),
}

impl Engine {
    /// Carries out one operator edit (or, with `dry_run`, only plans it).
    pub async fn change(&mut self, edit: &Edit, dry_run: bool) -> Result<Change, ChangeError> {
        if let Some(why) = self.tunnel_sources_hold(edit) {
            return Err(ModelError::Invalid(why).into());
        }
        if let Edit::AddVip(vip) = edit {
            if let Some(why) = self.generic_xdp_refuses(std::slice::from_ref(vip)) {
                return Err(ModelError::Invalid(why).into());
            }
            if let Some(why) = vip_on_a_vrrp_peer(vip, &self.vrrp_configs())
                .or_else(|| vip_on_a_mesh_peer(vip, self.config.sync.as_ref()))
            {
                return Err(ModelError::Invalid(why).into());
            }
        }
        if let Some(why) = nat_address_refuses(edit, |vip| self.nat_address_left_behind(vip)) {
            return Err(ModelError::Invalid(why).into());
        }
        let mut next = self.model.clone();
        let now = Instant::now();
        let drain = next.apply(edit, now)?;
        if let Some(why) = backend_on_a_vrrp_address(&next, &self.vrrp_addresses()) {
            return Err(ModelError::Invalid(why).into());
        }
        let drain = drain.map(|timeout| DrainPlan {
            timeout_s: timeout.after.map(|d| d.as_secs()),
            from: timeout.source,
            cuts_flows: timeout.cuts_flows,
            draining_for_s: timeout
                .draining_since
                .map(|since| now.saturating_duration_since(since).as_secs()),
        });
        self.fits_the_maps(&next)?;
        // A first tunnelled VIP moves the tunnel state before staging; a
        // dry run or a refused change puts it back (see `settle_tunnel`).
        let tunnel = self.tunnel_state();
        self.follow_addresses_for_first_tunnel(&next).await;
        if !dry_run {
            self.wait_for_brought_macs(&next).await;
        }
        // Before anything is staged or recorded: a change that takes a
        // serving VIP out of service for want of MACs is refused.
        let mac_warnings = match self.macs_after_wait(&next, dry_run) {
            Ok(warnings) => warnings,
            Err(why) => {
                self.put_back_tunnel(tunnel);
                return Err(ModelError::Invalid(why).into());
            }
        };
        // The first check through a tunnel: its program is loaded first,
        // and a refusal refuses the change (see `hc_load`).
        if let Err(why) = self.load_hc_program_for(&next, dry_run) {
            warn!(error = %why, "change refused");
            self.put_back_tunnel(tunnel);
            return Err(ChangeError::Program(why));
        }
        let guards = self.guard.config().clone();
        // What the file path would warn of for the VIP the edit touches,
        // a VIP left with no backend for new flows, and a backend state
        // that the peers this node replicates to do not share.
        let mut brought = edit_warnings(&self.model, &next, &self.config, edit);
        brought.extend(per_node_warning(edit, &self.config));
        let mut awaiting = next.newly_awaiting_checks(&self.model);
        awaiting.extend(self.announced_without_backends(&self.model, &next));
        // The running configuration is recorded for the next lbd first
        // (nothing is written when the edit leaves it as it is: a drain,
        // a maintenance): a change a restart would undo is refused, as
        // is an admin state that cannot be recorded (see
        // `running_state`, `admin_state`).
        if !dry_run {
            if let Err(why) = self.record_running(&next, &guards) {
                warn!(error = %why, "change refused");
                self.put_back_tunnel(tunnel);
                return Err(ChangeError::Unrecorded(why));
            }
        }
        let admin = matches!(
            edit,
            Edit::Drain { .. } | Edit::Maintenance(..) | Edit::Enable(..)
        );
        if admin && !dry_run {
            if let Err(why) = self.record_admin_states(&next) {
                warn!(error = %why, "backend state change refused");
                self.put_back_tunnel(tunnel);
                self.follow_running();
                return Err(ChangeError::Unrecorded(why));
            }
        }
        let committed = self.stage_and_commit(next, dry_run, guards);
        self.settle_tunnel(tunnel, dry_run, &committed);
        if committed.is_err() && !dry_run {
            // The files back to the running state.
            if admin {
                self.follow_admin_states();
            }
            self.follow_running();
        }
        let (plan, report) = committed?;
        let mut warnings: Vec<String> = match edit {
            Edit::AddVip(vip) => self.vip_address_left_behind(vip).into_iter().collect(),
            Edit::RemoveVip(id) => self
                .guard
                .config()
                .kept_for_removed(id)
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        warnings.extend(awaiting);
        warnings.extend(mac_warnings);
        warnings.extend(brought);
        if !dry_run {
            for warning in &warnings {
                warn!(%warning, "change applied with a warning");
            }
        }
        if let Some(report) = report {
            for vip in &plan {
                info!(vip = %vip.vip, change = %vip.change, moved = ?vip.moved_fraction, ?report, "change applied");
            }
        }
        Ok(Change {
            dry_run,
            plan,
            undone: Vec::new(),
            drain,
            warnings,
        })
    }

    /// Re-reads the config file and applies its difference (or, with
    /// `dry_run`, only plans it). Node settings that need a restart are
    /// listed, and keep their running values.
    pub async fn reload(&mut self, dry_run: bool) -> Result<Change, ChangeError> {
        let result = self.try_reload(dry_run).await;
        if !dry_run {
            match &result {
                Ok(_) => self.reloads.succeeded += 1,
                Err(error) => {
                    self.reloads.failed += 1;
                    warn!(%error, "reload refused; running state unchanged");
                }
            }
        }
        result
    }

    async fn try_reload(&mut self, dry_run: bool) -> Result<Change, ChangeError> {
        let file = Config::load(&self.config_path).map_err(|e| ChangeError::File(e.to_string()))?;
        // The running [bgp] (a restart setting) decides what is announced:
        // the file's own check saw only the file's.
        if let Some(why) = file
            .vips
            .iter()
            .find_map(|v| self.reload_announcement_refuses(&file, v))
        {
            return Err(ChangeError::File(why));
        }
        // The same for VRRP (also a restart setting): the file's rule
        // (`nat_sources_move`) on the running instances' addresses, fixed
        // at start. A NAT VIP whose address a running instance moves needs
        // its NAT address moved by that instance, or it would be used at
        // once from a node that may lose it at a failover; one whose
        // address no instance moves is let through, as at start (the
        // VIP-not-moved warning below covers it).
        if let Some(why) = file
            .vips
            .iter()
            .find_map(|v| self.nat_address_left_behind(v))
        {
            return Err(ChangeError::File(why));
        }
        // Nor a VIP on a running instance's unicast peer (a restart
        // setting, which may differ from the file's), or on a peer of the
        // `[sync]` mesh this reload runs (the file's peers, unless its
        // listen address or key file changed: see `reloaded_sync`).
        let running = self.vrrp_configs();
        let mesh = self.config.with_reloadable_from(&file).sync;
        if let Some(why) = file.vips.iter().find_map(|v| {
            vip_on_a_vrrp_peer(v, &running).or_else(|| vip_on_a_mesh_peer(v, mesh.as_ref()))
        }) {
            return Err(ChangeError::File(why));
        }
        // Generic XDP cannot translate: no NAT or tunnelled VIP joins it
        // (see `dataplane::hook_choice`).
        if let Some(why) = self.generic_xdp_refuses(&file.vips) {
            return Err(ChangeError::File(why));
        }
        let next = self.model.reloaded(&file);
        if let Some(why) = backend_on_a_vrrp_address(&next, &self.vrrp_addresses()) {
            return Err(ChangeError::File(why));
        }
        self.fits_the_maps(&next)?;
        // The file's [tunnel] is applied with its VIPs; a refused or dry
        // run keeps the running one, and the interface's addresses as
        // they were (see `settle_tunnel`).
        let tunnel = self.tunnel_state();
        // As an edit does: the interface's addresses before the first
        // tunnelled VIP, and a short wait for the MACs of the backends the
        // file brings (a backend written without one takes no traffic
        // until the next refresh finds it).
        self.reread_addresses_for_first_tunnel(&next).await;
        if !dry_run {
            self.wait_for_brought_macs(&next).await;
        }
        // Before anything is staged: a reload that takes a serving VIP
        // out of service for want of MACs is refused, the tunnel state
        // put back as `settle_tunnel` does for a refusal.
        let mac_warnings = match self.macs_after_wait(&next, dry_run) {
            Ok(warnings) => warnings,
            Err(why) => {
                self.put_back_tunnel(tunnel);
                return Err(ChangeError::File(why));
            }
        };
        // As an edit does: the program of the first check through a
        // tunnel is loaded first, and a refusal refuses the reload.
        if let Err(why) = self.load_hc_program_for(&next, dry_run) {
            self.put_back_tunnel(tunnel);
            return Err(ChangeError::Program(why));
        }
        let mac_known = |a| self.mac_of(a).is_some();
        let mut undone = undone_by_reload(&self.model, &next, &self.config, &file, &mac_known);
        undone.extend(self.replication.as_ref().and_then(|r| r.key_file_changed()));
        let awaiting = next.newly_awaiting_checks(&self.model);
        // VIP addresses the file brings that the running VRRP instances
        // do not move (they took their addresses at start).
        let mut new_addresses: Vec<std::net::IpAddr> = Vec::new();
        let mut unmoved = Vec::new();
        for vip in &file.vips {
            let running = self.model.vips.keys().any(|id| id.address == vip.address);
            if running || new_addresses.contains(&vip.address) {
                continue;
            }
            new_addresses.push(vip.address);
            if let Some(warning) = self.vip_address_left_behind(vip) {
                unmoved.push(warning);
            }
        }
        // New services without backends BGP announces the address of.
        unmoved.extend(self.announced_without_backends(&self.model, &next));
        // What `lbctl config check` and a start warn of in the file, for
        // the VIPs whose warnings the reload brings.
        let mut file_warnings = config_warnings_brought(&self.model.to_config(&self.config), &file);
        file_warnings.extend(
            self.held_address_warnings(&file)
                .await
                .iter()
                .map(ToString::to_string),
        );
        let guards_undone = self.guard.config().undone_by(&file.guard);
        // The file is the running configuration again: its record goes
        // (see `running_state`) before the reload commits, or the reload
        // is refused (a restart would bring back what it undoes).
        let based_before = if dry_run {
            None
        } else {
            match self.record_reloaded(&next, &file) {
                Ok(before) => Some(before),
                Err(why) => {
                    self.put_back_tunnel(tunnel);
                    return Err(ChangeError::Unrecorded(why));
                }
            }
        };
        let wanted = self.node_tunnel(&file.tunnel);
        self.balancer.set_tunnel(wanted);
        let staged = self.stage_and_commit(next, dry_run, file.guard.clone());
        self.settle_tunnel(tunnel, dry_run, &staged);
        if let (Err(_), Some(before)) = (&staged, based_before) {
            self.unrecord_reloaded(before);
        }
        let (plan, report) = staged?;
        // Logged once the reload is in (a refused one moved nothing); a
        // dry run only answers them.
        if report.is_some() {
            for warning in &unmoved {
                warn!(%warning, "reload");
            }
            for warning in &file_warnings {
                warn!(file = %self.config_path.display(), "config: {warning}");
            }
        }
        let mut warnings = awaiting;
        warnings.extend(mac_warnings);
        warnings.extend(unmoved);
        warnings.extend(file_warnings);
        if let Some(report) = report {
            // The file's guards are the source of truth: runtime rules go.
            // The VIPs are in already, so a refusal here is a warning in
            // the answer, not a refused reload.
            match self.apply_guard(file.guard.clone()) {
                Ok(()) => undone.extend(guards_undone),
                Err(error) => {
                    let warning = format!("the file's deny/allow lists and limits could not be written ({error}); lbd writes them again every second, and the lists last written stay in force until then: see lbctl acl list and lbctl limit");
                    warn!(%warning, "reload");
                    warnings.push(warning);
                }
            }
            for note in &undone {
                warn!(note = %note, "reload");
            }
            if file.flood != self.flood.thresholds() {
                info!(thresholds = ?file.flood, "SYN-flood thresholds from the file");
                self.flood.set_thresholds(file.flood);
            }
            let running_timeouts = (self.config.tcp_idle_timeout, self.config.udp_idle_timeout);
            let mut kept_timeouts = None;
            if (file.tcp_idle_timeout, file.udp_idle_timeout) != running_timeouts {
                match self
                    .dataplane
                    .set_idle_horizons(file.tcp_idle_timeout, file.udp_idle_timeout)
                {
                    Ok(()) => info!(
                        tcp_s = file.tcp_idle_timeout.as_secs(),
                        udp_s = file.udp_idle_timeout.as_secs(),
                        "idle horizons from the file"
                    ),
                    Err(error) => {
                        // The running timeouts stay the config's, so
                        // `config dump` and the flow census say what the
                        // data plane holds, and the next reload of the
                        // file writes them again.
                        let warning = format!("the file's idle timeouts could not be written to the data plane ({error}); the running ones stay in force (tcp_idle_timeout_s = {}, udp_idle_timeout_s = {}): reload again to retry", running_timeouts.0.as_secs(), running_timeouts.1.as_secs());
                        warn!(%warning, "reload");
                        warnings.push(warning);
                        kept_timeouts = Some(running_timeouts);
                    }
                }
            }
            info!(?report, vips = plan.len(), "config reloaded");
            self.config = self.config.with_reloadable_from(&file);
            if let Some((tcp, udp)) = kept_timeouts {
                self.config.tcp_idle_timeout = tcp;
                self.config.udp_idle_timeout = udp;
            }
            // `[sync] peers` reload: a node joins or leaves the mesh.
            warnings.extend(self.apply_sync_peers());
        } else {
            // A dry run: what the reload would undo.
            undone.extend(guards_undone);
        }
        Ok(Change {
            dry_run,
            plan,
            undone,
            drain: None,
            warnings,
        })
    }

    /// After a change staged with the tunnel state moved from `before` (a
    /// first tunnelled VIP's addresses, a reload's `[tunnel]`): a dry run
    /// or a refused change puts `before` back, so it leaves the engine as
    /// it found it. A commit that failed half-way had the running state
    /// written back with the moved settings: it is written again with
    /// `before`'s.
    fn settle_tunnel<T>(
        &mut self,
        before: TunnelState,
        dry_run: bool,
        result: &Result<T, ChangeError>,
    ) {
        if !dry_run && result.is_ok() {
            return;
        }
        let moved = self.put_back_tunnel(before);
        if let Err(ChangeError::Dataplane(error)) = result {
            if moved && !error.is_refusal() {
                self.restore_after_failed_commit();
            }
        }
    }

    /// Stages `next` on the balancer, reads the plan off the staged tables
    /// and, unless `dry_run`, commits it (maps first, then the model).
    fn stage_and_commit(
        &mut self,
        next: Model,
        dry_run: bool,
        guards: GuardConfig,
    ) -> Result<(Vec<crate::model::VipPlan>, Option<ApplyReport>), ChangeError> {
        // A dry run assumes the MACs of the backends the change brings
        // will resolve, as the real change waits for them (backends that
        // run without one stay without), and their checks pass.
        let desired = if dry_run {
            let brought = self.brought_unresolved(&next);
            next.assuming_checks_pass().desired(&|a| {
                self.mac_of(a)
                    .or_else(|| brought.contains(&a).then_some(PLACEHOLDER_MAC))
            })
        } else {
            next.desired(&|a| self.mac_of(a))
        };
        let staged = self.balancer.stage(&desired)?;
        let plan = self.balancer.plan(&staged);
        if dry_run {
            return Ok((plan, None));
        }
        let report = self.commit_staged(next, staged, guards)?;
        Ok((plan, Some(report)))
    }

    /// The file's rule that no VIP or backend lies inside the running
    /// `[tunnel]` outer-source prefixes, for VIPs and backends added at
    /// run time (a backend would drop the tunnel's packets as coming from
    /// its own address).
    fn tunnel_sources_hold(&self, edit: &Edit) -> Option<String> {
        let tunnel = &self.config.tunnel;
        let hold = crate::config::outer_sources_hold;
        match edit {
            Edit::AddVip(vip) => hold(tunnel, vip.address, "VIP").or_else(|| {
                vip.backends
                    .iter()
                    .find_map(|b| hold(tunnel, b.address, "backend"))
            }),
            Edit::AddBackend(_, backend) => hold(tunnel, backend.address, "backend"),
            _ => None,
        }
    }

    /// Why `vips` (a reload's file, or a VIP added at run time) cannot be
    /// served: this lbd runs generic XDP and they add NAT or tunnelled
    /// VIPs (new ones, or DSR-L2 ones switched), which generic XDP cannot
    /// translate (see `dataplane::hook_choice`).
    fn generic_xdp_refuses(&self, vips: &[crate::config::VipConfig]) -> Option<String> {
        let generic = crate::config::XdpMode::Generic;
        if self.hooked != Hooked::Xdp(generic) {
            return None;
        }
        let running =
            |id: &crate::vip_id::VipId| self.model.vips.get(id).map(|v| v.config.forwarding);
        let added = Translating::of(newly_translating(running, vips));
        match added.choose(generic, false) {
            HookChoice::Refuse => Some(added.refusal(&format!(
                "lbd runs generic XDP on {}, which cannot take the NAT or tunnelled VIP(s) added (attach and xdp_mode change at a restart)",
                self.interface.name
            ))),
            HookChoice::Native | HookChoice::Generic | HookChoice::Tc => None,
        }
    }

    /// The addresses the running VRRP instances move.
    fn vrrp_addresses(&self) -> Vec<std::net::IpAddr> {
        self.vrrp
            .iter()
            .flat_map(|i| i.config().addresses.iter().copied())
            .collect()
    }

    /// The running VRRP instances' settings (fixed at start), for the
    /// file's rules on a VIP added at run time.
    fn vrrp_configs(&self) -> Vec<&crate::config::VrrpConfig> {
        self.vrrp.iter().map(|i| i.config()).collect()
    }

    /// What to tell the operator when a VIP added at run time (`lbctl vip
    /// add`, a reload) has an address no running VRRP instance moves and
    /// the running `[bgp]` does not announce: a warning, not a refusal
    /// (the address may be put on the interface by hand).
    fn vip_address_left_behind(&self, vip: &crate::config::VipConfig) -> Option<String> {
        let moved: Vec<&[std::net::IpAddr]> = self
            .vrrp
            .iter()
            .map(|i| i.config().addresses.as_slice())
            .collect();
        let announced = self
            .config
            .bgp
            .as_ref()
            .is_some_and(|bgp| bgp.covers(vip.address, false));
        super::nat::unmoved_vip_address(vip, &moved, announced)
    }

    /// The model's rule on the maps' size, for this engine's maps.
    fn fits_the_maps(&self, next: &Model) -> Result<(), ChangeError> {
        Ok(crate::model::fits_the_maps(
            next.vips.len(),
            self.model.vips.len(),
            self.dataplane.sizes().max_vips,
        )?)
    }

    /// The backends `next` brings whose MAC is neither configured nor
    /// known (see `macs::brought_unresolved`): only those make a change
    /// wait.
    fn brought_unresolved(&self, next: &Model) -> Vec<std::net::IpAddr> {
        super::macs::brought_unresolved(&self.model, next, |a| self.mac_of(a).is_some())
    }

    /// Waits briefly for the MACs of the backends `next` brings, if any.
    async fn wait_for_brought_macs(&mut self, next: &Model) {
        let brought = self.brought_unresolved(next);
        if !brought.is_empty() {
            self.resolve_new(&brought).await;
        }
    }

    /// After [`Self::wait_for_brought_macs`] (or, in a dry run, without
    /// it): the answer's warnings for the backends `next` brings to
    /// DSR-L2 whose MAC is still not known, or why the change is refused
    /// (it would take a VIP that serves now out of service, see
    /// [`mac_refusal`]). A dry run is never refused here: it cannot know
    /// what the wait finds, and its warnings say so. On a refusal the
    /// MACs the wait found for the change are dropped again, so the
    /// engine is as it was.
    fn macs_after_wait(&mut self, next: &Model, dry_run: bool) -> Result<Vec<String>, String> {
        let vips = super::macs::unresolved_vips(&self.model, next, &|a| self.mac_of(a));
        if !dry_run {
            if let Some(why) = mac_refusal(&vips) {
                self.forget_unwanted_macs();
                return Err(why);
            }
        }
        Ok(mac_warnings(&vips, !dry_run))
    }
}

/// The MAC a dry run assumes for a backend whose MAC is not known yet.
const PLACEHOLDER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// What a reload's note adds for established NAT flows that keep an old
/// NAT address or backend port on a node that replicates: the peer
/// refuses a record whose NAT address is not its VIP's or whose backend
/// port differs (`replication::nat`), so their copies there are no longer
/// refreshed.
const NOT_REPLICATED: &str = "; with replication ([[vrrp]] sync_peer or [sync] peers), these established flows are no longer copied to the peer, and do not survive a failover once the peer's copies of them age out";

/// Whether the running node copies its flows to peers: a `[[vrrp]]`
/// instance's `sync_peer` or the `[sync]` mesh's peers (restart settings,
/// so the running config's).
fn replicates(running: &Config) -> bool {
    running.vrrp.iter().any(|v| v.sync_peer.is_some())
        || running.sync.as_ref().is_some_and(|s| !s.peers.is_empty())
}

/// How long a change waits for the MACs it brings, for its messages.
fn mac_wait_text() -> String {
    format!("{} s", super::macs::RUNTIME_RESOLVE_TIMEOUT.as_secs_f64())
}

/// Why a change is refused after its MAC wait (see
/// `macs::unresolved_vips`): it takes a VIP that serves now out of
/// service, as no backend of it has a MAC DSR-L2 could send to. The
/// VIPs and their backends named, with what to do.
fn mac_refusal(vips: &[super::macs::UnresolvedVip]) -> Option<String> {
    let refusals: Vec<String> = vips
        .iter()
        .filter(|v| v.stops_serving)
        .map(|v| {
            let backends: Vec<String> = v.unresolved.iter().map(|a| a.to_string()).collect();
            let what_to_do = match v.was {
                Some(was) if was != lb_common::Mode::DsrL2 => format!(
                    "keep the VIP's current mode ({}) or fix the backends",
                    was.name()
                ),
                _ => "keep the backends' `mac` or fix the backends".to_owned(),
            };
            format!(
                "VIP {}: forwarding = \"dsr-l2\" sends to its backends' MACs, and none of its backends has one: no neighbour entry for {} after waiting {} (dsr-l2 needs backends on this node's L2 segment, or their `mac` set), so the VIP, which takes packets now, would take none; {what_to_do}",
                v.vip,
                backends.join(", "),
                mac_wait_text()
            )
        })
        .collect();
    (!refusals.is_empty()).then(|| refusals.join("; "))
}

/// The answer's warnings for the backends a change brings to DSR-L2
/// without a known MAC (see `macs::unresolved_vips`): one per backend,
/// saying what it takes and what happens to its tracked flows. `waited`:
/// after the change's wait; a dry run cannot wait, so its warnings say
/// what happens if the MAC does not resolve.
fn mac_warnings(vips: &[super::macs::UnresolvedVip], waited: bool) -> Vec<String> {
    let wait = mac_wait_text();
    let mut warnings = Vec::new();
    for v in vips {
        for address in &v.unresolved {
            let tracked = v.tracked.contains(address);
            let of = format!("backend {address} of VIP {}", v.vip);
            let warning = if waited {
                let flows = if tracked {
                    "dsr-l2 sends it nothing, and its tracked flows are rehashed to the VIP's backends whose MAC is known, until it resolves"
                } else {
                    "dsr-l2 sends it nothing until it resolves"
                };
                format!("{of}: no MAC after waiting {wait} (no neighbour entry: dsr-l2 needs backends on this node's L2 segment): {flows}")
            } else {
                let flows = if tracked {
                    ", and its tracked flows are rehashed to the VIP's backends whose MAC is known,"
                } else {
                    ""
                };
                let refused = if v.stops_serving {
                    "; no backend of the VIP has a MAC yet: if none resolves, the change is refused"
                } else {
                    ""
                };
                format!("{of}: MAC not known yet (no neighbour entry; dsr-l2 needs backends on this node's L2 segment): the change waits up to {wait} for it, and the plan assumes it resolves; if it does not, dsr-l2 sends it nothing{flows} until it resolves{refused}")
            };
            warnings.push(warning);
        }
    }
    warnings
}

/// Runtime changes a reload undoes, node settings it applies whose
/// change the plan does not show, and settings it cannot apply live.
/// `mac_known` says which backends' MACs are known (after the change's
/// wait, or not yet in a dry run): a switch to DSR-L2 keeps no tracked
/// flow of a backend without one.
pub(super) fn undone_by_reload(
    current: &Model,
    next: &Model,
    running: &Config,
    file: &Config,
    mac_known: &dyn Fn(std::net::IpAddr) -> bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    let replicated = replicates(running);
    for (id, vip) in &current.vips {
        let Some(new) = next.vips.get(id) else {
            notes.push(format!("VIP {id} is not in the file: removed"));
            continue;
        };
        notes.extend(vip_settings_undone(
            id,
            &vip.config,
            &new.config,
            replicated,
        ));
        let nat = lb_common::Mode::Nat;
        let nat_replicated =
            replicated && vip.config.forwarding == nat && new.config.forwarding == nat;
        for (address, backend) in &vip.backends {
            match new.backends.get(address) {
                None => notes.push(format!(
                    "backend {address} of {id} is not in the file: removed"
                )),
                Some(b) => notes.extend(backend_settings_undone(
                    &format!("backend {address} of {id}"),
                    (&vip.config.health, &backend.config),
                    (&new.config.health, &b.config),
                    nat_replicated,
                )),
            }
        }
    }
    for (id, vip) in &next.vips {
        match current.vips.get(id) {
            None => notes.push(format!("VIP {id} from the file: added")),
            Some(old) => {
                for address in vip
                    .backends
                    .keys()
                    .filter(|a| !old.backends.contains_key(a))
                {
                    notes.push(format!("backend {address} of {id} from the file: added"));
                }
                let (was, now) = (old.config.forwarding, vip.config.forwarding);
                let nat = lb_common::Mode::Nat;
                if was != now && now == nat {
                    // A NAT VIP drops a packet of a connection it holds
                    // no translation for, and answers nothing: neither
                    // end is told (see `nat::reaper`).
                    notes.push(format!(
                        "VIP {id}: forwarding {} -> nat: established connections are cut without a reset (a NAT VIP drops the packets of a connection it holds no translation for, and answers nothing), so their clients time out (TCP retransmits for up to ~15 min); to move a service with long-lived connections to nat, give it a new VIP and move the clients there instead; new flows take the new mode",
                        was.name()
                    ));
                } else if was != now && was == nat {
                    // The backend knew a NAT'd connection by the NAT
                    // address, and now sees the client's: it resets it.
                    notes.push(format!(
                        "VIP {id}: forwarding nat -> {}: established connections end (their backend knew them by the NAT address, sees the client's now, and answers with a reset); new flows take the new mode",
                        now.name()
                    ));
                } else if was != now {
                    // A switch to DSR-L2 keeps no tracked flow of a
                    // backend without a MAC (see `mac_warnings`).
                    let without_mac: Vec<String> = if now == lb_common::Mode::DsrL2 {
                        vip.backends
                            .values()
                            .filter(|b| {
                                b.config.mac.is_none()
                                    && !mac_known(b.config.address)
                                    && old.backends.contains_key(&b.config.address)
                            })
                            .map(|b| b.config.address.to_string())
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let except = if without_mac.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", except those of {}, whose MAC is not known: they are rehashed (see the warnings)",
                            without_mac.join(", ")
                        )
                    };
                    notes.push(format!(
                        "VIP {id}: forwarding {} -> {}: tracked flows keep their backend, their next packets take the new mode{except}",
                        was.name(),
                        now.name()
                    ));
                }
            }
        }
    }
    notes.extend(live_node_settings_changed(running, file));
    for name in running.restart_only_changes(file) {
        notes.push(format!("{name} changed: takes effect when lbd restarts"));
    }
    notes
}

/// The file's own warnings (`config::warnings`, as a start logs them and
/// `lbctl config check` prints them) that a reload of it brings: those
/// of its VIPs that the running VIP of the same identity (in `running`,
/// runtime changes included) did not have, so a reload repeats none
/// already given. Node-wide ones are left out: `[bgp]` and `[[vrrp]]` are
/// restart settings, whose warnings the start gave, and the reload says
/// itself which new VIP addresses the running instances do not move.
/// A backend's warning is matched by the backend's address, not its
/// place: the running VIP lists its backends in address order (the
/// model's), the file in its own.
fn config_warnings_brought(running: &Config, file: &Config) -> Vec<String> {
    warnings_brought(running, file)
        .into_iter()
        .map(|Brought { index, warning, .. }| {
            let field = match warning.field.strip_prefix("vip[0]") {
                Some(rest) => format!("vip[{index}]{rest}"),
                None => warning.field,
            };
            format!("{field}: {}", warning.message)
        })
        .collect()
}

/// What a runtime edit brings to warn of for the VIP it touches (`lbctl
/// backend weight ... 0` on the last backend, `backend remove` of the
/// last, `vip add` or `backend add` of doubtful settings): the file's
/// own warnings of that VIP that it did not have before, as a reload
/// of the same content gives them ([`config_warnings_brought`]), named
/// by the VIP rather than a place in a file; and, when no backend of the
/// VIP takes new flows after the edit (weight 0, removed, draining or in
/// maintenance, or down), that every new flow is dropped. Backends still
/// waiting for their first checks are taken as passing them (the edit's
/// answer says they wait); a VIP added without backends is warned of by
/// the file's own warning.
fn edit_warnings(current: &Model, next: &Model, running: &Config, edit: &Edit) -> Vec<String> {
    let id = edit.vip();
    let only = |model: &Model| {
        let mut config = model.to_config(running);
        config.vips.retain(|v| crate::vip_id::VipId::of(v) == id);
        config
    };
    let mut warnings: Vec<String> = warnings_brought(&only(current), &only(next))
        .into_iter()
        .map(
            |Brought {
                 by_address,
                 warning,
                 ..
             }| match by_address.strip_prefix("vip[0]") {
                Some("") => warning.message,
                Some(rest) => format!(
                    "VIP {id} {}: {}",
                    rest.trim_start_matches('.'),
                    warning.message
                ),
                None => format!("{}: {}", warning.field, warning.message),
            },
        )
        .collect();
    let stays = !matches!(edit, Edit::AddVip(_) | Edit::RemoveVip(_));
    if let (true, Some(vip)) = (stays, next.vips.get(&id)) {
        if takes_no_new_flows(vip) {
            warnings.push(format!(
                "no backend of VIP {id} takes new flows after this change: every new flow is dropped"
            ));
        }
    }
    warnings
}

/// Whether no backend of `vip` takes new flows (an empty Maglev table),
/// backends still waiting for their first checks taken as passing them.
fn takes_no_new_flows(vip: &crate::model::VipModel) -> bool {
    let mut vip = vip.clone();
    for backend in vip.backends.values_mut() {
        backend.awaiting_checks = false;
    }
    vip.shares().values().all(|share| *share <= 0.0)
}

/// The warning for a drain, maintenance or undrain on a node that
/// replicates its flows to peers (`[[vrrp]] sync_peer`, `[sync]`
/// peers): backend states are per node (replication carries flows and
/// NAT translations, not drains), so a peer that becomes master, or that
/// the routers send flows to, still sends new flows to a backend drained
/// here, and a drain's deadline fires only here.
fn per_node_warning(edit: &Edit, running: &Config) -> Option<String> {
    let (vip, backend, what, todo, command) = match edit {
        Edit::Drain { vip, backend, .. } => (
            vip,
            backend,
            "drains are",
            format!("drain {backend}"),
            "drain",
        ),
        Edit::Maintenance(vip, backend) => (
            vip,
            backend,
            "maintenance is",
            format!("put {backend} in maintenance"),
            "maintenance",
        ),
        Edit::Enable(vip, backend) => (
            vip,
            backend,
            "backend states are",
            format!("put {backend} back in service"),
            "undrain",
        ),
        _ => return None,
    };
    let mut peers: Vec<String> = running
        .vrrp
        .iter()
        .filter_map(|v| v.sync_peer)
        .chain(running.sync.iter().flat_map(|s| s.peers.iter().copied()))
        .map(|peer| peer.ip().to_string())
        .collect();
    peers.sort();
    peers.dedup();
    if peers.is_empty() {
        return None;
    }
    Some(format!(
        "{what} per node: {todo} on {} too (`lbctl backend {command} {vip} {backend}` there): replication copies flows, not backend states, so a peer that takes over the VIP (or that the routers send to) still treats {backend} as before, and a drain's deadline ends it only on the node that has it",
        peers.join(", ")
    ))
}

/// One of the file's warnings of one of its VIPs (see [`warnings_brought`]).
struct Brought {
    /// The VIP's place in the file.
    index: usize,
    /// The warning's field with its backend named by address
    /// (`vip[0].backend[198.19.2.11].health`, see [`warning_by_address`]).
    by_address: String,
    /// The warning as given for the VIP alone (fields `vip[0]...`).
    warning: crate::config::Warning,
}

/// The file's warnings of each VIP of `file` that the running VIP of the
/// same identity did not have (see [`config_warnings_brought`]).
fn warnings_brought(running: &Config, file: &Config) -> Vec<Brought> {
    let mut alone = Config {
        vips: Vec::new(),
        vrrp: Vec::new(),
        vrrp_listed: Vec::new(),
        bgp: None,
        sync: None,
        ..file.clone()
    };
    // One VIP's warnings, its fields named `vip[0]`, each with what it
    // is of that does not depend on the backends' order.
    let mut of = |vip: &crate::config::VipConfig| {
        alone.vips = vec![vip.clone()];
        crate::config::warnings(&alone)
            .into_iter()
            .map(|warning| (warning_by_address(vip, &warning), warning))
            .collect::<Vec<_>>()
    };
    let mut brought = Vec::new();
    for (index, vip) in file.vips.iter().enumerate() {
        let id = crate::vip_id::VipId::of(vip);
        let had: Vec<_> = running
            .vips
            .iter()
            .find(|v| crate::vip_id::VipId::of(v) == id)
            .map(&mut of)
            .unwrap_or_default()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        for (key, warning) in of(vip) {
            if !had.contains(&key) {
                brought.push(Brought {
                    index,
                    by_address: key.0,
                    warning,
                });
            }
        }
    }
    brought
}

/// A warning of `vip` (alone, as `vip[0]`) with its backend named by
/// address instead of place (`vip[0].backend[198.19.2.11].health`), so
/// two listings of the same backends in another order give the same.
fn warning_by_address(
    vip: &crate::config::VipConfig,
    warning: &crate::config::Warning,
) -> (String, String) {
    let field = warning
        .field
        .strip_prefix("vip[0].backend[")
        .and_then(|rest| {
            let (place, rest) = rest.split_once(']')?;
            let backend = vip.backends.get(place.parse::<usize>().ok()?)?;
            Some(format!("vip[0].backend[{}]{rest}", backend.address))
        })
        .unwrap_or_else(|| warning.field.clone());
    (field, warning.message.clone())
}

/// The node settings a reload applies at once whose change no VIP's plan
/// shows, one note per key, with what it does to flows already there:
/// `[tunnel]` (every tunnelled packet takes the new port or sources at
/// once, established flows' too, which the backends' lb-decap may not
/// accept), and `[nat]`'s port range and timeouts (its addresses are
/// each NAT VIP's `nat_source` note).
fn live_node_settings_changed(running: &Config, file: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    let (was, now) = (&running.tunnel, &file.tunnel);
    if was.gue_port != now.gue_port {
        notes.push(format!(
            "[tunnel] gue_port: {} -> {} (the file's): every GUE packet from now on, established flows' too, goes to UDP port {}; backends whose lb-decap does not listen on it drop them",
            was.gue_port, now.gue_port, now.gue_port
        ));
    }
    let sources = |prefix: Option<(std::net::IpAddr, u8)>, family: &str| {
        prefix.map_or_else(
            || format!("the interface's own {family} address"),
            crate::config::prefix_text,
        )
    };
    for (key, family, a, b) in [
        ("source_ipv4", "IPv4", was.source_ipv4, now.source_ipv4),
        ("source_ipv6", "IPv6", was.source_ipv6, now.source_ipv6),
    ] {
        if a != b {
            notes.push(format!(
                "[tunnel] {key}: {} -> {} (the file's): every tunnelled packet to an {family} backend from now on, established flows' too, leaves from the new sources; backends whose lb-decap `sources` do not allow them drop them",
                sources(a, family),
                sources(b, family)
            ));
        }
    }
    let (was, now) = (&running.nat, &file.nat);
    if (was.port_min, was.port_max) != (now.port_min, now.port_max) {
        notes.push(format!(
            "[nat] source_port_min..source_port_max: {}-{} -> {}-{} (the file's): new NAT flows take ports in {}-{}; established ones keep theirs until they end",
            was.port_min, was.port_max, now.port_min, now.port_max, now.port_min, now.port_max
        ));
    }
    let (a, b) = (&was.timeouts, &now.timeouts);
    for (key, was, now) in [
        ("tcp_syn_timeout_s", a.tcp_syn, b.tcp_syn),
        (
            "tcp_established_timeout_s",
            a.tcp_established,
            b.tcp_established,
        ),
        ("tcp_closing_timeout_s", a.tcp_closing, b.tcp_closing),
        ("tcp_time_wait_timeout_s", a.tcp_time_wait, b.tcp_time_wait),
        ("tcp_closed_timeout_s", a.tcp_closed, b.tcp_closed),
        ("udp_timeout_s", a.udp, b.udp),
    ] {
        if was != now {
            notes.push(format!(
                "[nat] {key}: {} -> {} (the file's): NAT flows already there take it too (the reaper removes those idle longer)",
                was.as_secs(),
                now.as_secs()
            ));
        }
    }
    notes
}

/// The settings of a VIP that stays (its backends apart) whose running
/// value is not the file's: one note per key, as the reload puts the
/// file's back (`Model::reloaded` rebuilds the VIP from the file). A
/// runtime `vip remove` + `vip add` can give a VIP any of them, so the
/// dry run must list each, not only the backends and weights.
/// `forwarding` has its own note (what its flows do); the NAT address is
/// compared only between two NAT VIPs (a switch to or from NAT is that
/// note's).
/// `replicated`: the node copies its flows to peers (see [`replicates`]).
fn vip_settings_undone(
    id: &crate::vip_id::VipId,
    was: &crate::config::VipConfig,
    now: &crate::config::VipConfig,
    replicated: bool,
) -> Vec<String> {
    let of = format!("VIP {id}");
    let mut notes = Vec::new();
    let mut moved_source = None;
    let mut differs = |key: &str, was: String, now: String| {
        if was != now {
            notes.push(format!("{key} of {of}: {was} -> {now} (the file's)"));
        }
    };
    differs(
        "table_size",
        was.table_size.to_string(),
        now.table_size.to_string(),
    );
    differs(
        "on_all_down",
        was.on_all_down.to_string(),
        now.on_all_down.to_string(),
    );
    let seconds =
        |d: Option<std::time::Duration>| d.map_or("never".to_owned(), |d| d.as_secs().to_string());
    differs(
        "drain_timeout_s",
        seconds(was.drain_timeout),
        seconds(now.drain_timeout),
    );
    if let (Some(a), Some(b)) = (was.nat, now.nat) {
        let source = |n: crate::config::VipNat| {
            if n.own_source {
                n.source.to_string()
            } else {
                format!("the node's ({})", n.source)
            }
        };
        if a.source == b.source {
            differs("nat_source", source(a), source(b));
        } else {
            // A translation holds its NAT address: only new flows take
            // the new one, and replies to the old one must still reach
            // this node.
            moved_source = Some(format!(
                "nat_source of {of}: {} -> {} (the file's): established connections keep {}, which must stay on the node until they end; new flows take {}{}",
                source(a),
                source(b),
                a.source,
                b.source,
                if replicated {
                    NOT_REPLICATED
                } else {
                    ""
                }
            ));
        }
    }
    for (key, was, now) in health_keys(&was.health, &now.health) {
        differs(&format!("health.{key}"), was, now);
    }
    notes.extend(moved_source);
    notes
}

/// As [`vip_settings_undone`], for a backend that stays (`of`: "backend
/// B of V"), given with its VIP's checks before and after: weight, port,
/// mac and its own checks. A backend's checks are compared as they apply
/// (its own, else its VIP's) when it has its own on either side; without
/// any, the VIP's notes say it.
/// `nat_replicated`: a NAT backend of a node that copies its flows to
/// peers (see [`replicates`]), whose established flows keep their port.
fn backend_settings_undone(
    of: &str,
    (vip_was, was): (&crate::config::HealthConfig, &crate::config::BackendConfig),
    (vip_now, now): (&crate::config::HealthConfig, &crate::config::BackendConfig),
    nat_replicated: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    let port = |p: Option<u16>| p.map_or("the VIP's".to_owned(), |p| p.to_string());
    let port_note = (was.port != now.port && nat_replicated).then(|| {
        format!(
            "port of {of}: {} -> {} (the file's): established NAT flows keep the old port, new ones take the new{NOT_REPLICATED}",
            port(was.port),
            port(now.port)
        )
    });
    let mut differs = |key: &str, was: String, now: String, note: Option<String>| {
        if let Some(note) = note {
            notes.push(note);
        } else if was != now {
            notes.push(format!("{key} of {of}: {was} -> {now} (the file's)"));
        }
    };
    differs(
        "weight",
        was.weight.to_string(),
        now.weight.to_string(),
        None,
    );
    differs("port", port(was.port), port(now.port), port_note);
    let mac = |m: Option<crate::mac::Mac>| {
        m.map_or("none (from the neighbour table)".to_owned(), |m| {
            m.to_string()
        })
    };
    differs("mac", mac(was.mac), mac(now.mac), None);
    if was.health.is_some() || now.health.is_some() {
        let checks_was = was.health.as_ref().unwrap_or(vip_was);
        let checks_now = now.health.as_ref().unwrap_or(vip_now);
        for (key, was, now) in health_keys(checks_was, checks_now) {
            differs(&format!("health.{key}"), was, now, None);
        }
    }
    notes
}

/// The keys of two health tables that differ, by the file's names and
/// units: (key, running value, file's value).
fn health_keys(
    was: &crate::config::HealthConfig,
    now: &crate::config::HealthConfig,
) -> Vec<(&'static str, String, String)> {
    let keys = |h: &crate::config::HealthConfig| {
        let default = |v: Option<String>| v.unwrap_or_else(|| "default".to_owned());
        [
            ("check", h.check.to_string()),
            ("user", h.user.clone().unwrap_or_else(|| "none".to_owned())),
            ("database", database(h)),
            ("port", default(h.port.map(|p| p.to_string()))),
            ("path", h.path.clone()),
            ("host", default(h.host.clone())),
            ("expect_status", h.expect_status.to_string()),
            ("interval_ms", h.interval.as_millis().to_string()),
            ("fast_interval_ms", h.fast_interval.as_millis().to_string()),
            ("timeout_ms", h.timeout.as_millis().to_string()),
            ("rise", h.rise.to_string()),
            ("fall", h.fall.to_string()),
            ("through_tunnel", h.through_tunnel.to_string()),
        ]
    };
    // An unset database is the user's name (the server's default): the
    // same database as naming it, and no change while both leave it
    // unset (the user's own note says it).
    let same_database = match (&was.database, &now.database) {
        (None, None) => true,
        (a, b) => a.as_ref().or(was.user.as_ref()) == b.as_ref().or(now.user.as_ref()),
    };
    keys(was)
        .into_iter()
        .zip(keys(now))
        .filter(|((key, a), (_, b))| {
            if *key == "database" {
                !same_database
            } else {
                a != b
            }
        })
        .map(|((key, a), (_, b))| (key, a, b))
        .collect()
}

/// A health table's `database` as a note shows it: an unset one is the
/// server's default, the user's name.
fn database(h: &crate::config::HealthConfig) -> String {
    match (&h.database, &h.user) {
        (Some(database), _) => database.clone(),
        (None, Some(user)) => format!("default (the user's name, {user})"),
        (None, None) => "default".to_owned(),
    }
}

/// As a reload refuses it (the file's rule, `nat_sources_move`, on the
/// running VRRP instances' addresses, fixed at start): a NAT VIP added
/// at run time whose address a running instance moves but whose NAT
/// address it does not (`left_behind`, see `nat_address_left_behind`).
/// Refused, not warned of: taken, it would be used at once from a node
/// that may lose the VIP at a failover, and `config dump` would write a
/// file that does not load. Only an add brings a NAT address.
fn nat_address_refuses(
    edit: &Edit,
    left_behind: impl Fn(&crate::config::VipConfig) -> Option<String>,
) -> Option<String> {
    match edit {
        Edit::AddVip(vip) => left_behind(vip),
        _ => None,
    }
}

/// As the file refuses it: a backend of `model` at an address a running
/// VRRP instance moves (`moved`). On the master that address is this
/// node's: the backend's packets would come back here, its checks would
/// reach the node itself, and `config dump` would write a file that does
/// not load.
fn backend_on_a_vrrp_address(model: &Model, moved: &[std::net::IpAddr]) -> Option<String> {
    model.vips.iter().find_map(|(vip, v)| {
        v.backends.keys().find(|b| moved.contains(b)).map(|backend| {
            format!(
                "backend {backend} of VIP {vip} is an address a VRRP instance moves: the master would take the backend's packets; a VRRP address is an address of this load balancer"
            )
        })
    })
}

/// As the file refuses it (`config::peer_on_a_vip`): a VIP added at run
/// time (`lbctl vip add`, a reload's file) whose address or NAT address is
/// a unicast peer or the `sync_peer` of a running VRRP instance
/// (`running`, whose peers are fixed at start). That address is another
/// node's: this one would hold it too (and replication would connect to
/// itself), and `config dump` would write a file that does not load.
fn vip_on_a_vrrp_peer(
    vip: &crate::config::VipConfig,
    running: &[&crate::config::VrrpConfig],
) -> Option<String> {
    let name = |_: usize| format!("VIP {}", crate::vip_id::VipId::of(vip));
    running.iter().find_map(|instance| {
        let unicast = instance
            .unicast_peers
            .iter()
            .enumerate()
            .map(|(p, peer)| (format!("unicast_peers[{p}]"), *peer));
        let sync = instance
            .sync_peer
            .map(|peer| ("sync_peer".to_owned(), peer.ip()));
        unicast.chain(sync).find_map(|(key, peer)| {
            crate::config::peer_on_a_vip(peer, std::slice::from_ref(vip), name).map(|why| {
                format!(
                    "{key} of the running [[vrrp]] with vrid {}: {why}; the running instances' peers change when lbd restarts",
                    instance.vrid
                )
            })
        })
    })
}

/// [`vip_on_a_vrrp_peer`] for the running `[sync]` mesh (`running`,
/// its peers fixed at start): a VIP there would be this node's address,
/// so replication would connect to this node instead of the peer.
fn vip_on_a_mesh_peer(
    vip: &crate::config::VipConfig,
    running: Option<&crate::config::SyncSettings>,
) -> Option<String> {
    let name = |_: usize| format!("VIP {}", crate::vip_id::VipId::of(vip));
    running?.peers.iter().enumerate().find_map(|(p, peer)| {
        crate::config::peer_on_a_vip(peer.ip(), std::slice::from_ref(vip), name).map(|why| {
            format!(
                "peers[{p}] of the running [sync]: {why} (a reload takes the file's peers only while [sync] listens where it did with the same key file; those wait for a restart)"
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vip_id::VipId;

    fn config(forwarding: &str) -> Config {
        let nat = if forwarding == "nat" {
            "[nat]\nsource_ipv4 = \"198.18.0.50\"\n"
        } else {
            ""
        };
        let text = format!(
            "interface = \"eth0\"\n{nat}[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"{forwarding}\"\n[[vip.backend]]\naddress = \"198.19.2.11\"\n"
        );
        Config::from_toml_str(&text, "lbd.toml").unwrap()
    }

    /// A NAT VIP whose backend listens on 8080 (`vip`, `backend`: more
    /// keys of each, the VIP's before its backend's).
    fn nat_config(vip: &str, backend: &str) -> Config {
        let text = format!(
            "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\n{vip}[[vip.backend]]\naddress = \"198.19.2.11\"\nport = 8080\n{backend}"
        );
        Config::from_toml_str(&text, "lbd.toml").unwrap()
    }

    /// What a reload of `file` undoes in `running`.
    fn undone(running: &Model, file: &Config) -> Vec<String> {
        undone_by_reload(running, &running.reloaded(file), file, file, &|_| true)
    }

    /// A backend removed and added again on another port at run time: a
    /// reload writes the file's port back, and says so.
    #[test]
    fn a_reload_says_it_puts_a_backends_port_back() {
        let file = nat_config("", "");
        let id = VipId::of(&file.vips[0]);
        let address: std::net::IpAddr = "198.19.2.11".parse().unwrap();
        let mut running = Model::from_config(&file);
        running.remove_backend(&id, address).unwrap();
        let moved = crate::config::BackendConfig {
            port: Some(9090),
            ..crate::config::BackendConfig::new(address)
        };
        running.add_backend(&id, moved).unwrap();
        assert_eq!(
            undone(&running, &file),
            ["port of backend 198.19.2.11 of 198.18.0.100:80/tcp: 9090 -> 8080 (the file's)"]
        );
        assert!(undone(&Model::from_config(&file), &file).is_empty());
    }

    /// A VIP added again at run time without checks: a reload turns the
    /// file's checks back on, and says so.
    #[test]
    fn a_reload_says_it_turns_a_vips_checks_back_on() {
        let file = nat_config("", "");
        let mut vip = file.vips[0].clone();
        vip.health.check = crate::config::CheckType::None;
        let mut running = Model::from_config(&file);
        running.remove_vip(&VipId::of(&vip)).unwrap();
        running.add_vip(&vip).unwrap();
        assert_eq!(
            undone(&running, &file),
            ["health.check of VIP 198.18.0.100:80/tcp: none -> tcp (the file's)"]
        );
    }

    /// Every other setting a runtime `vip add` can give a VIP, and a
    /// backend's own checks, are named too.
    #[test]
    fn a_reload_names_each_vip_setting_it_puts_back() {
        let file = nat_config("", "");
        let runtime = nat_config(
            "table_size = 1021\non_all_down = \"keep\"\ndrain_timeout_s = 60\nnat_source = \"198.18.0.51\"\n[vip.health]\nrise = 5\n",
            "",
        );
        let mut notes = undone(&Model::from_config(&runtime), &file);
        notes.sort();
        let vip = "of VIP 198.18.0.100:80/tcp";
        let mut expected = vec![
            format!("drain_timeout_s {vip}: 60 -> never (the file's)"),
            format!("health.rise {vip}: 5 -> 2 (the file's)"),
            format!("nat_source {vip}: 198.18.0.51 -> the node's (198.18.0.50) (the file's): established connections keep 198.18.0.51, which must stay on the node until they end; new flows take 198.18.0.50"),
            format!("on_all_down {vip}: keep -> drop (the file's)"),
            format!("table_size {vip}: 1021 -> 65537 (the file's)"),
        ];
        expected.sort();
        assert_eq!(notes, expected);

        let runtime = nat_config("", "[vip.backend.health]\nport = 8081\n");
        assert_eq!(
            undone(&Model::from_config(&runtime), &file),
            ["health.port of backend 198.19.2.11 of 198.18.0.100:80/tcp: 8081 -> default (the file's)"]
        );
    }

    /// A pgsql check's `user` and `database` set at run time are named
    /// when a reload puts the file's back, as every other key is.
    #[test]
    fn a_reload_names_the_pgsql_keys_it_puts_back() {
        let file = nat_config(
            "[vip.health]\ncheck = \"pgsql\"\nuser = \"lb\"\ndatabase = \"app\"\n",
            "",
        );
        let runtime = nat_config("[vip.health]\ncheck = \"pgsql\"\nuser = \"other\"\n", "");
        let mut notes = undone(&Model::from_config(&runtime), &file);
        notes.sort();
        let vip = "of VIP 198.18.0.100:80/tcp";
        assert_eq!(
            notes,
            [
                format!(
                    "health.database {vip}: default (the user's name, other) -> app (the file's)"
                ),
                format!("health.user {vip}: other -> lb (the file's)"),
            ]
        );
        let runtime = nat_config(
            "[vip.health]\ncheck = \"pgsql\"\nuser = \"lb\"\ndatabase = \"app\"\n",
            "[vip.backend.health]\ndatabase = \"other\"\n",
        );
        assert_eq!(
            undone(&Model::from_config(&runtime), &file),
            ["health.database of backend 198.19.2.11 of 198.18.0.100:80/tcp: other -> app (the file's)"]
        );
        // Unset, the server takes the user's name: naming it is no change.
        let user = |database: &str| {
            nat_config(
                &format!("[vip.health]\ncheck = \"pgsql\"\nuser = \"lb\"\n{database}"),
                "",
            )
        };
        let named = user("database = \"lb\"\n");
        assert!(undone(&Model::from_config(&user("")), &named).is_empty());
        assert!(undone(&Model::from_config(&named), &user("")).is_empty());
        assert_eq!(
            undone(
                &Model::from_config(&user("")),
                &user("database = \"app\"\n")
            ),
            [format!(
                "health.database {vip}: default (the user's name, lb) -> app (the file's)"
            )]
        );
    }

    /// `[tunnel]` and `[nat]` are applied by a reload, and no VIP's plan
    /// shows them: each changed key is a note saying what it does to the
    /// flows already there (a dry run included).
    #[test]
    fn a_reload_names_the_tunnel_and_nat_keys_it_changes() {
        let running = nat_config("", "");
        let text = "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\nsource_port_min = 2000\nsource_port_max = 2999\ntcp_established_timeout_s = 600\n[tunnel]\ngue_port = 6081\nsource_ipv4 = \"198.18.200.0/24\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\n[[vip.backend]]\naddress = \"198.19.2.11\"\nport = 8080\n";
        let file = Config::from_toml_str(text, "lbd.toml").unwrap();
        let model = Model::from_config(&running);
        let notes = undone_by_reload(&model, &model.reloaded(&file), &running, &file, &|_| true);
        assert_eq!(notes.len(), 4, "{notes:#?}");
        assert!(
            notes[0].starts_with("[tunnel] gue_port: 6080 -> 6081 (the file's): every GUE packet from now on, established flows' too, goes to UDP port 6081"),
            "{notes:#?}"
        );
        assert!(
            notes[1].starts_with("[tunnel] source_ipv4: the interface's own IPv4 address -> 198.18.200.0/24 (the file's)")
                && notes[1].contains("established flows' too"),
            "{notes:#?}"
        );
        assert_eq!(
            notes[2],
            "[nat] source_port_min..source_port_max: 1024-65535 -> 2000-2999 (the file's): new NAT flows take ports in 2000-2999; established ones keep theirs until they end"
        );
        assert!(
            notes[3].starts_with("[nat] tcp_established_timeout_s: ")
                && notes[3].contains("-> 600 (the file's)"),
            "{notes:#?}"
        );
        // Back: the same keys, the other way.
        let back = undone_by_reload(&model, &model, &file, &running, &|_| true);
        assert_eq!(back.len(), 4, "{back:#?}");
        assert!(
            back[1].starts_with(
                "[tunnel] source_ipv4: 198.18.200.0/24 -> the interface's own IPv4 address"
            ),
            "{back:#?}"
        );
    }

    /// A reload says what `lbctl config check` would warn of in the file
    /// for the VIPs it brings or changes, and not again for one whose
    /// running state had the warning already.
    #[test]
    fn a_reload_warns_of_what_the_file_brings() {
        let running = config("dsr-l2");
        let text = format!(
            "{}[vip.health]\npath = \"/healthz\"\n[[vip]]\naddress = \"198.18.0.101\"\nport = 80\n[[vip.backend]]\naddress = \"198.19.2.12\"\nweight = 0\n",
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n[[vip.backend]]\naddress = \"198.19.2.11\"\n"
        );
        let file = Config::from_toml_str(&text, "lbd.toml").unwrap();
        let brought = config_warnings_brought(&running, &file);
        assert_eq!(
            brought,
            [
                "vip[0].health: path set but check = \"tcp\": only an HTTP check uses them (set check = \"http\")",
                "vip[1]: every backend of VIP 198.18.0.101:80/tcp has weight 0: it drops every new flow",
            ]
        );
        // Already so when it runs: not again.
        assert!(config_warnings_brought(&file, &file).is_empty());
        // The restart settings' warnings (VRRP, BGP) are not the reload's.
        let vrrp = Config::from_toml_str(
            &format!("{text}[[vrrp]]\nvrid = 51\npriority = 255\naddresses = [\"198.18.0.200\"]\n"),
            "lbd.toml",
        )
        .unwrap();
        assert!(!crate::config::warnings(&vrrp).is_empty());
        assert!(config_warnings_brought(&vrrp, &vrrp).is_empty());
        assert_eq!(config_warnings_brought(&running, &vrrp), brought);
    }

    /// A backend's warning is the same warning whatever the backends'
    /// order: the running VIP (`to_config`, the model's address order)
    /// lists .11 before .12, the file .12 first, and an unchanged reload
    /// does not warn again; a new one is named by the file's place.
    #[test]
    fn a_reload_does_not_repeat_a_backends_warning_in_another_order() {
        let text = |health: &str| {
            format!(
                "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n[[vip.backend]]\naddress = \"198.19.2.12\"\n[vip.backend.health]\n{health}[[vip.backend]]\naddress = \"198.19.2.11\"\n"
            )
        };
        let file = Config::from_toml_str(&text("path = \"/healthz\"\n"), "lbd.toml").unwrap();
        let running = Model::from_config(&file).to_config(&file);
        assert_eq!(
            running.vips[0].backends[1].address,
            "198.19.2.12".parse::<std::net::IpAddr>().unwrap()
        );
        assert!(config_warnings_brought(&running, &file).is_empty());
        // Another warning of that backend: named by its place in the file.
        let changed =
            Config::from_toml_str(&text("path = \"/healthz\"\nhost = \"app\"\n"), "lbd.toml")
                .unwrap();
        assert_eq!(
            config_warnings_brought(&running, &changed),
            ["vip[0].backend[0].health: path, host set but check = \"tcp\": only an HTTP check uses them (set check = \"http\")"]
        );
    }

    /// The API refuses what the file refuses: a backend at an address a
    /// running VRRP instance moves.
    #[test]
    fn a_backend_at_a_vrrp_address_is_refused() {
        let model = Model::from_config(&config("dsr-l2"));
        let moved: Vec<std::net::IpAddr> = vec!["198.18.0.100".parse().unwrap()];
        assert_eq!(backend_on_a_vrrp_address(&model, &moved), None);
        let moved: Vec<std::net::IpAddr> = vec!["198.19.2.11".parse().unwrap()];
        let why = backend_on_a_vrrp_address(&model, &moved).expect("refused");
        assert!(
            why.starts_with("backend 198.19.2.11 of VIP 198.18.0.100:80/tcp is an address a VRRP instance moves"),
            "{why}"
        );
    }

    /// The API refuses what the file refuses: a VIP, or a NAT VIP's NAT
    /// address, at a running VRRP instance's unicast peer.
    #[test]
    fn a_vip_at_a_vrrp_peer_is_refused() {
        let node = |peers: &str| {
            let text = format!(
                "interface = \"eth0\"\n[[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.200\"]\nunicast_peers = [{peers}]\n"
            );
            Config::from_toml_str(&text, "lbd.toml").unwrap()
        };
        let vip = nat_config("", "").vips[0].clone();
        let other = node("\"198.18.0.3\"");
        assert_eq!(vip_on_a_vrrp_peer(&vip, &[&other.vrrp[0]]), None);
        let at_vip = node("\"198.18.0.3\", \"198.18.0.100\"");
        assert_eq!(
            vip_on_a_vrrp_peer(&vip, &[&other.vrrp[0], &at_vip.vrrp[0]]).as_deref(),
            Some("unicast_peers[1] of the running [[vrrp]] with vrid 51: 198.18.0.100 is VIP 198.18.0.100:80/tcp's address, so this node's own: a peer is another node's own address; the running instances' peers change when lbd restarts")
        );
        let at_nat = node("\"198.18.0.50\"");
        let why = vip_on_a_vrrp_peer(&vip, &[&at_nat.vrrp[0]]).expect("refused");
        assert!(
            why.starts_with("unicast_peers[0] of the running [[vrrp]] with vrid 51: 198.18.0.50 is the NAT address of VIP 198.18.0.100:80/tcp, so this node's own"),
            "{why}"
        );
        // The replication peer too: a VIP there would be this node's.
        let pair = |peer: &str| {
            let text = format!(
                "interface = \"eth0\"\n[[vrrp]]\nvrid = 52\naddresses = [\"198.18.0.200\"]\nsync_listen = \"198.18.0.2:7540\"\nsync_peer = \"{peer}:7540\"\nsync_key_file = \"/k\"\n"
            );
            Config::from_toml_str(&text, "lbd.toml").unwrap()
        };
        assert_eq!(
            vip_on_a_vrrp_peer(&vip, &[&pair("198.18.0.3").vrrp[0]]),
            None
        );
        let why = vip_on_a_vrrp_peer(&vip, &[&pair("198.18.0.100").vrrp[0]]).expect("refused");
        assert!(
            why.starts_with("sync_peer of the running [[vrrp]] with vrid 52: 198.18.0.100 is VIP 198.18.0.100:80/tcp's address"),
            "{why}"
        );
    }

    /// The same for a peer of the running `[sync]` mesh: a VIP, or a NAT
    /// VIP's NAT address, there is refused.
    #[test]
    fn a_vip_at_a_mesh_peer_is_refused() {
        let mesh = |peers: &str| {
            let text = format!(
                "interface = \"eth0\"\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [{peers}]\nkey_file = \"/k\"\n"
            );
            Config::from_toml_str(&text, "lbd.toml").unwrap()
        };
        let vip = nat_config("", "").vips[0].clone();
        assert_eq!(vip_on_a_mesh_peer(&vip, None), None);
        let others = mesh("\"198.18.2.12:7946\", \"198.18.2.13:7946\"");
        assert_eq!(vip_on_a_mesh_peer(&vip, others.sync.as_ref()), None);
        let at_vip = mesh("\"198.18.2.12:7946\", \"198.18.0.100:7946\"");
        assert_eq!(
            vip_on_a_mesh_peer(&vip, at_vip.sync.as_ref()).as_deref(),
            Some("peers[1] of the running [sync]: 198.18.0.100 is VIP 198.18.0.100:80/tcp's address, so this node's own: a peer is another node's own address (a reload takes the file's peers only while [sync] listens where it did with the same key file; those wait for a restart)")
        );
        let at_nat = mesh("\"198.18.0.50:7946\"");
        let why = vip_on_a_mesh_peer(&vip, at_nat.sync.as_ref()).expect("refused");
        assert!(
            why.starts_with("peers[0] of the running [sync]: 198.18.0.50 is the NAT address of VIP 198.18.0.100:80/tcp"),
            "{why}"
        );
    }

    /// A NAT VIP added at run time that the running VRRP instances would
    /// leave its NAT address behind is refused, as a reload refuses it,
    /// not taken with a warning; no other edit brings a NAT address.
    #[test]
    fn an_added_nat_vip_whose_nat_address_stays_behind_is_refused() {
        let vip = nat_config("", "").vips[0].clone();
        let asked = std::cell::RefCell::new(Vec::new());
        let left_behind = |v: &crate::config::VipConfig| {
            asked.borrow_mut().push(v.address);
            Some(format!("VIP {}: its NAT address stays", VipId::of(v)))
        };
        assert_eq!(
            nat_address_refuses(&Edit::AddVip(vip.clone()), left_behind).as_deref(),
            Some("VIP 198.18.0.100:80/tcp: its NAT address stays")
        );
        assert_eq!(*asked.borrow(), vec![vip.address]);
        assert_eq!(
            nat_address_refuses(&Edit::AddVip(vip.clone()), |_| None),
            None
        );
        let id = VipId::of(&vip);
        let backend = vip.backends[0].clone();
        for edit in [
            Edit::AddBackend(id, backend.clone()),
            Edit::Maintenance(id, backend.address),
            Edit::RemoveVip(id),
        ] {
            assert_eq!(nat_address_refuses(&edit, left_behind), None, "{edit:?}");
        }
    }

    #[test]
    fn a_reload_that_changes_a_vips_mode_says_what_its_flows_do() {
        let (running, file) = (config("dsr-l2"), config("ipip"));
        let notes = undone_by_reload(
            &Model::from_config(&running),
            &Model::from_config(&file),
            &running,
            &file,
            &|_| true,
        );
        assert_eq!(
            notes,
            ["VIP 198.18.0.100:80/tcp: forwarding dsr-l2 -> ipip: tracked flows keep their backend, their next packets take the new mode"]
        );
        // To or from NAT, the backends see other connections: from NAT
        // the backend resets them; to NAT nothing does, and the clients
        // time out.
        for (from, to) in [("dsr-l2", "nat"), ("nat", "gue")] {
            let (running, file) = (config(from), config(to));
            let notes = undone_by_reload(
                &Model::from_config(&running),
                &Model::from_config(&file),
                &running,
                &file,
                &|_| true,
            );
            assert_eq!(notes.len(), 1, "{notes:?}");
            if to == "nat" {
                assert!(
                    notes[0].contains("cut without a reset")
                        && notes[0].contains("time out")
                        && notes[0].contains("new VIP"),
                    "{notes:?}"
                );
            } else {
                assert!(
                    notes[0].contains("established connections end")
                        && notes[0].contains("reset")
                        && !notes[0].contains("without a reset"),
                    "{notes:?}"
                );
            }
        }
        let same = undone_by_reload(
            &Model::from_config(&file),
            &Model::from_config(&file),
            &file,
            &file,
            &|_| true,
        );
        assert!(same.is_empty(), "{same:?}");
    }

    /// `forwarding` and two backends (198.19.2.11 and 198.19.2.12,
    /// neither with a MAC configured) of VIP 198.18.0.100:80/tcp.
    fn two_backends(forwarding: &str) -> Config {
        let text = format!(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"{forwarding}\"\n[[vip.backend]]\naddress = \"198.19.2.11\"\n[[vip.backend]]\naddress = \"198.19.2.12\"\n"
        );
        Config::from_toml_str(&text, "lbd.toml").unwrap()
    }

    /// Only 198.19.2.12's MAC is known.
    fn only_12(a: std::net::IpAddr) -> Option<[u8; 6]> {
        (a == "198.19.2.12".parse::<std::net::IpAddr>().unwrap()).then_some([2, 0, 0, 0, 0, 0x12])
    }

    /// A switch to dsr-l2 whose backends no MAC resolves for would take
    /// a VIP that serves now out of service: refused, naming the VIP, the
    /// backends and why; with a MAC known, nothing to say.
    #[test]
    fn a_switch_to_dsr_l2_that_leaves_no_backend_with_a_mac_is_refused() {
        let (running, next) = (
            Model::from_config(&config("gue")),
            Model::from_config(&config("dsr-l2")),
        );
        let vips = super::super::macs::unresolved_vips(&running, &next, &|_| None);
        let why = mac_refusal(&vips).expect("refused");
        for part in [
            "VIP 198.18.0.100:80/tcp",
            "198.19.2.11",
            "no neighbour entry",
            "L2 segment",
            "keep the VIP's current mode (gue)",
        ] {
            assert!(why.contains(part), "{part}: {why}");
        }
        let known = |_| Some([2, 0, 0, 0, 0, 0x11]);
        let vips = super::super::macs::unresolved_vips(&running, &next, &known);
        assert!(vips.is_empty(), "{vips:?}");
        assert_eq!(mac_refusal(&vips), None);
        assert!(mac_warnings(&vips, true).is_empty());
        // A VIP that takes no packets now (its one backend in
        // maintenance) loses nothing: warned of, not refused.
        let id = VipId::of(&config("gue").vips[0]);
        let mut idle = running.clone();
        idle.apply(
            &Edit::Maintenance(id, "198.19.2.11".parse().unwrap()),
            Instant::now(),
        )
        .unwrap();
        let vips = super::super::macs::unresolved_vips(&idle, &next, &|_| None);
        assert_eq!(mac_refusal(&vips), None);
        assert_eq!(mac_warnings(&vips, true).len(), 1, "{vips:?}");
    }

    /// When some backends resolve, the switch goes on, and the answer
    /// names each one that did not: its tracked flows are rehashed to
    /// the resolved ones; the mode note claims nothing for them.
    #[test]
    fn a_switch_to_dsr_l2_names_the_backends_whose_mac_did_not_resolve() {
        let (running, file) = (two_backends("ipip"), two_backends("dsr-l2"));
        let (current, next) = (Model::from_config(&running), Model::from_config(&file));
        let vips = super::super::macs::unresolved_vips(&current, &next, &only_12);
        assert_eq!(mac_refusal(&vips), None);
        let warnings = mac_warnings(&vips, true);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        for part in [
            "backend 198.19.2.11 of VIP 198.18.0.100:80/tcp",
            "no neighbour entry",
            "tracked flows are rehashed",
            "until it resolves",
        ] {
            assert!(warnings[0].contains(part), "{part}: {warnings:?}");
        }
        assert!(!warnings[0].contains("198.19.2.12"), "{warnings:?}");
        let notes = undone_by_reload(&current, &next, &running, &file, &|a| only_12(a).is_some());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("forwarding ipip -> dsr-l2")
                && notes[0].contains("except")
                && notes[0].contains("198.19.2.11")
                && !notes[0].contains("198.19.2.12"),
            "{notes:?}"
        );
        // All known: the note as before, no warning.
        let notes = undone_by_reload(&current, &next, &running, &file, &|_| true);
        assert_eq!(
            notes,
            ["VIP 198.18.0.100:80/tcp: forwarding ipip -> dsr-l2: tracked flows keep their backend, their next packets take the new mode"]
        );
    }

    /// A dry run cannot wait for MACs: it warns of the brought backends
    /// whose MAC is not known yet, and says when the change would be
    /// refused, rather than planning with the placeholder in silence.
    #[test]
    fn a_dry_run_warns_of_macs_not_known_yet() {
        let (current, next) = (
            Model::from_config(&two_backends("gue")),
            Model::from_config(&two_backends("dsr-l2")),
        );
        let vips = super::super::macs::unresolved_vips(&current, &next, &only_12);
        let warnings = mac_warnings(&vips, false);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("backend 198.19.2.11 of VIP 198.18.0.100:80/tcp")
                && warnings[0].contains("not known yet"),
            "{warnings:?}"
        );
        let vips = super::super::macs::unresolved_vips(&current, &next, &|_| None);
        let warnings = mac_warnings(&vips, false);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings.iter().all(|w| w.contains("refused")),
            "{warnings:?}"
        );
    }

    /// With replication, the established flows that keep an old NAT
    /// address or backend port are no longer copied to the peer: the
    /// notes say so; without it, they do not.
    #[test]
    fn a_reload_says_flows_keeping_an_old_nat_value_are_no_longer_replicated() {
        let pair = "[[vrrp]]\nvrid = 52\naddresses = [\"198.18.0.200\"]\nsync_listen = \"198.18.0.2:7540\"\nsync_peer = \"198.18.0.3:7540\"\nsync_key_file = \"/k\"\n";
        let with_pair = |vip: &str, backend: &str| {
            let text = format!(
                "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n{pair}[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\n{vip}[[vip.backend]]\naddress = \"198.19.2.11\"\nport = 8080\n{backend}"
            );
            Config::from_toml_str(&text, "lbd.toml").unwrap()
        };
        let file = with_pair("", "");
        let runtime = with_pair("nat_source = \"198.18.0.51\"\n", "");
        let notes = undone(&Model::from_config(&runtime), &file);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("nat_source of VIP 198.18.0.100:80/tcp: 198.18.0.51 -> ")
                && notes[0].contains("no longer copied to the peer")
                && notes[0].contains("failover"),
            "{notes:?}"
        );
        let id = VipId::of(&file.vips[0]);
        let address: std::net::IpAddr = "198.19.2.11".parse().unwrap();
        let mut running = Model::from_config(&file);
        running.remove_backend(&id, address).unwrap();
        running
            .add_backend(
                &id,
                crate::config::BackendConfig {
                    port: Some(9090),
                    ..crate::config::BackendConfig::new(address)
                },
            )
            .unwrap();
        let notes = undone(&running, &file);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with(
                "port of backend 198.19.2.11 of 198.18.0.100:80/tcp: 9090 -> 8080 (the file's)"
            ) && notes[0].contains("no longer copied to the peer")
                && notes[0].contains("failover"),
            "{notes:?}"
        );
        // A [sync] mesh replicates too.
        let mesh = Config::from_toml_str(
            "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.12:7946\"]\nkey_file = \"/k\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\n[[vip.backend]]\naddress = \"198.19.2.11\"\nport = 8080\n",
            "lbd.toml",
        )
        .unwrap();
        let notes = undone(&running, &mesh);
        assert!(notes[0].contains("failover"), "{notes:?}");
        // Without replication: as before (see
        // a_reload_says_it_puts_a_backends_port_back).
        let notes = undone(&running, &nat_config("", ""));
        assert!(!notes[0].contains("failover"), "{notes:?}");
    }

    /// A runtime change that leaves a VIP no backend for new flows says
    /// so, with the file's own warning where the file has one (weight 0
    /// on the last backend, the last one removed), as a reload of the
    /// same content says it; a drain or maintenance of the last backend
    /// too. One that leaves a backend taking them warns of nothing.
    #[test]
    fn a_change_that_leaves_no_backend_for_new_flows_warns() {
        let file = config("dsr-l2");
        let running = Model::from_config(&file);
        let id = VipId::of(&file.vips[0]);
        let b: std::net::IpAddr = "198.19.2.11".parse().unwrap();
        let warned = |running: &Model, edit: &Edit| {
            let mut next = running.clone();
            next.apply(edit, Instant::now()).unwrap();
            edit_warnings(running, &next, &file, edit)
        };
        let dropped =
            "no backend of VIP 198.18.0.100:80/tcp takes new flows after this change: every new flow is dropped";
        let weight0 = warned(&running, &Edit::SetWeight(id, b, 0));
        assert_eq!(
            weight0,
            [
                "every backend of VIP 198.18.0.100:80/tcp has weight 0: it drops every new flow",
                dropped
            ]
        );
        let removed = warned(&running, &Edit::RemoveBackend(id, b));
        assert_eq!(
            removed,
            [
                "VIP 198.18.0.100:80/tcp has no backends: it drops every new flow",
                dropped
            ]
        );
        let drain = Edit::Drain {
            vip: id,
            backend: b,
            timeout_s: None,
        };
        assert_eq!(warned(&running, &drain), [dropped]);
        assert_eq!(warned(&running, &Edit::Maintenance(id, b)), [dropped]);
        // Another backend still takes new flows: nothing to warn of.
        let mut two = running.clone();
        two.add_backend(
            &id,
            crate::config::BackendConfig {
                address: "198.19.2.12".parse().unwrap(),
                ..file.vips[0].backends[0].clone()
            },
        )
        .unwrap();
        assert!(warned(&two, &Edit::SetWeight(id, b, 0)).is_empty());
        assert!(warned(&two, &drain).is_empty());
        // A backend's doubtful settings, named by the VIP and the backend.
        let mut checked = file.vips[0].backends[0].clone();
        checked.address = "198.19.2.13".parse().unwrap();
        let mut health = file.vips[0].health.clone();
        health.path = "/healthz".into();
        checked.health = Some(health);
        let added = warned(&running, &Edit::AddBackend(id, checked));
        assert!(
            added.iter().any(|w| w.starts_with(
                "VIP 198.18.0.100:80/tcp backend[198.19.2.13].health: path set but check = \"tcp\""
            )),
            "{added:?}"
        );
    }

    /// Drains, maintenance and undrains on a node that replicates to
    /// peers warn that the peers keep their own backend states; without
    /// replication, and for other edits, nothing.
    #[test]
    fn a_drain_on_a_replicating_node_says_drains_are_per_node() {
        let id: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let b: std::net::IpAddr = "198.19.2.11".parse().unwrap();
        let drain = Edit::Drain {
            vip: id,
            backend: b,
            timeout_s: None,
        };
        assert_eq!(per_node_warning(&drain, &config("dsr-l2")), None);
        let pair = Config::from_toml_str(
            "interface = \"eth0\"\n[[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.100\"]\nsync_listen = \"198.18.2.11:7000\"\nsync_peer = \"198.18.2.12:7000\"\nsync_key_file = \"/k\"\n",
            "lbd.toml",
        )
        .unwrap();
        let warning = per_node_warning(&drain, &pair).expect("a warning");
        assert!(
            warning.starts_with("drains are per node: drain 198.19.2.11 on 198.18.2.12 too"),
            "{warning}"
        );
        let maintenance = per_node_warning(&Edit::Maintenance(id, b), &pair).expect("a warning");
        assert!(
            maintenance.starts_with(
                "maintenance is per node: put 198.19.2.11 in maintenance on 198.18.2.12 too"
            ),
            "{maintenance}"
        );
        assert!(per_node_warning(&Edit::Enable(id, b), &pair).is_some());
        assert_eq!(per_node_warning(&Edit::SetWeight(id, b, 0), &pair), None);
        let mesh = Config::from_toml_str(
            "interface = \"eth0\"\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.13:7946\", \"198.18.2.12:7946\"]\nkey_file = \"/k\"\n",
            "lbd.toml",
        )
        .unwrap();
        let warning = per_node_warning(&drain, &mesh).expect("a warning");
        assert!(
            warning.contains("on 198.18.2.12, 198.18.2.13 too"),
            "{warning}"
        );
    }
}
