//! The engine's one change path: an operator's edit or a reload becomes the
//! next model (pure rules in `model`), the balancer stages it (the tables it
//! will really produce, in either Maglev mode), the plan is read off the
//! staged tables, and — unless it is a dry run — the staged writes are
//! replayed to the maps and the model adopted. A refused change leaves the
//! running state untouched.

use std::time::Instant;

use tracing::{info, warn};

mod mac_wait;
mod node_rules;
mod reload_notes;
#[cfg(test)]
mod tests;
mod warnings;

pub(super) use reload_notes::undone_by_reload;
pub(super) use warnings::edit_warnings;

use mac_wait::PLACEHOLDER_MAC;
use node_rules::{
    backend_on_a_vrrp_address, nat_address_refuses, vip_on_a_mesh_peer, vip_on_a_vrrp_peer,
};
use warnings::{config_warnings_brought, per_node_warning};

use super::{tunnel::TunnelState, Engine};
use crate::{
    api::schema::{Change, DrainPlan},
    config::Config,
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
        brought.extend(per_node_warning(
            edit,
            &self.config,
            self.admin.shares,
            &self.peers_taking_states(),
        ));
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
        // On a node that shares backend states with sync peers, the
        // change is stamped (see `shared_states`).
        let stamps = self.stamps_after(edit, &next);
        if admin && !dry_run {
            if let Err(why) = self.record_admin_states(&next, &stamps) {
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
        if admin && !dry_run {
            self.admin.stamps = stamps;
        }
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
        mut next: Model,
        dry_run: bool,
        guards: GuardConfig,
    ) -> Result<(Vec<crate::model::VipPlan>, Option<ApplyReport>), ChangeError> {
        // A dry run assumes the MACs of the backends the change brings
        // will resolve, as the real change waits for them (backends that
        // run without one stay without), and their checks pass.
        let (desired, ramps) = if dry_run {
            let brought = self.brought_unresolved(&next);
            let passed = next.assuming_checks_pass();
            // The ramps it would begin, its plan showing where they lead.
            let ramps = self
                .with_slow_starts(passed.clone())
                .ramps_begun(&self.model);
            let desired = passed.desired(&|a| {
                self.mac_of(a)
                    .or_else(|| brought.contains(&a).then_some(PLACEHOLDER_MAC))
            });
            (desired, ramps)
        } else {
            next = self.with_slow_starts(next);
            let ramps = next.ramps_begun(&self.model);
            (next.desired(&|a| self.mac_of(a)), ramps)
        };
        let staged = self.balancer.stage(&desired)?;
        let mut plan = self.balancer.plan(&staged);
        crate::plan::note_slow_starts(&mut plan, &ramps);
        if dry_run {
            return Ok((plan, None));
        }
        let report = self.commit_staged(next, staged, guards)?;
        Ok((plan, Some(report)))
    }
}
