//! Operator edits as the API asks for them, applied as a pure function of
//! the model, the edit and `now`; drains and their deadlines.

use super::*;

/// One operator change to the model, as the API asks for it. Applied by
/// [`Model::apply`], a pure function of the model, the edit and `now`.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Add a VIP (with its backends).
    AddVip(VipConfig),
    /// Remove a VIP.
    RemoveVip(VipId),
    /// Add a backend to a VIP.
    AddBackend(VipId, BackendConfig),
    /// Remove a backend from a VIP.
    RemoveBackend(VipId, IpAddr),
    /// Put a backend back in service (ends a drain or maintenance).
    Enable(VipId, IpAddr),
    /// Drain a backend: `timeout_s` is the request's own timeout (0:
    /// never cut), else the VIP's `drain_timeout_s`, else never.
    Drain {
        /// The VIP.
        vip: VipId,
        /// The backend.
        backend: IpAddr,
        /// The request's timeout in seconds, if it gave one.
        timeout_s: Option<u64>,
    },
    /// Take a backend out at once.
    Maintenance(VipId, IpAddr),
    /// Change a backend's weight.
    SetWeight(VipId, IpAddr, u32),
}

/// Longest drain timeout a request may ask for (also the longest a
/// restored drain may have left).
pub(crate) const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);

/// Where a drain's deadline comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainTimeoutSource {
    /// The drain request's own timeout.
    Request,
    /// The VIP's `drain_timeout_s`.
    VipDefault,
    /// Neither: established flows are never cut.
    None,
    /// The deadline of the drain already running, kept: a drain again of
    /// a draining backend without a timeout of its own changes nothing
    /// (as HAProxy's `set server ... state drain` is idempotent), so a
    /// drain repeated to watch it does not move or clear its deadline.
    Kept,
}

/// A drain's effective timeout and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainTimeout {
    /// After how long the remaining flows are cut (None: never).
    pub after: Option<Duration>,
    /// Which setting decided it.
    pub source: DrainTimeoutSource,
    /// Whether the timeout cuts the remaining flows (they are hashed to
    /// other backends): not for a NAT VIP, whose translated connections
    /// stay on the backend until they end or it is removed; its timeout
    /// only ends the drain (the backend goes to maintenance).
    pub cuts_flows: bool,
    /// When the backend began draining, for a drain of a backend that
    /// was draining already (None: this drain starts it), so the answer
    /// can say that it was, and whether its deadline was kept.
    pub draining_since: Option<Instant>,
}

/// The timeout of a drain: the request's own (`0` meaning never), else the
/// VIP's default, else never. Nothing else (a client's own wait, say) may
/// decide when established flows are cut.
pub(super) fn drain_timeout(
    requested_s: Option<u64>,
    vip_default: Option<Duration>,
) -> Result<DrainTimeout, ModelError> {
    Ok(match (requested_s, vip_default) {
        (Some(0), _) => DrainTimeout {
            after: None,
            source: DrainTimeoutSource::Request,
            cuts_flows: true,
            draining_since: None,
        },
        (Some(s), _) => {
            let after = Duration::from_secs(s);
            if after > MAX_DRAIN_TIMEOUT {
                return Err(ModelError::Invalid(format!(
                    "timeout_s {s} is above a week ({} s)",
                    MAX_DRAIN_TIMEOUT.as_secs()
                )));
            }
            DrainTimeout {
                after: Some(after),
                source: DrainTimeoutSource::Request,
                cuts_flows: true,
                draining_since: None,
            }
        }
        (None, Some(after)) => DrainTimeout {
            after: Some(after),
            source: DrainTimeoutSource::VipDefault,
            cuts_flows: true,
            draining_since: None,
        },
        (None, None) => DrainTimeout {
            after: None,
            source: DrainTimeoutSource::None,
            cuts_flows: true,
            draining_since: None,
        },
    })
}

impl Edit {
    /// The VIP the edit is about (the one it adds, for [`Edit::AddVip`]).
    pub(crate) fn vip(&self) -> VipId {
        match self {
            Edit::AddVip(vip) => VipId::of(vip),
            Edit::RemoveVip(id)
            | Edit::AddBackend(id, _)
            | Edit::RemoveBackend(id, _)
            | Edit::Enable(id, _)
            | Edit::Maintenance(id, _)
            | Edit::SetWeight(id, _, _)
            | Edit::Drain { vip: id, .. } => *id,
        }
    }
}

impl Model {
    /// Applies one operator edit at `now`; on error nothing changed.
    /// Returns the drain's effective timeout for a drain.
    pub fn apply(&mut self, edit: &Edit, now: Instant) -> Result<Option<DrainTimeout>, ModelError> {
        match edit {
            Edit::AddVip(vip) => self.add_vip(vip)?,
            Edit::RemoveVip(id) => self.remove_vip(id)?,
            Edit::AddBackend(id, backend) => self.add_backend(id, backend.clone())?,
            Edit::RemoveBackend(id, address) => self.remove_backend(id, *address)?,
            Edit::Enable(id, address) => self.set_admin(id, *address, AdminState::Enabled)?,
            Edit::Maintenance(id, address) => {
                self.set_admin(id, *address, AdminState::Maintenance)?;
            }
            Edit::SetWeight(id, address, weight) => self.set_weight(id, *address, *weight)?,
            Edit::Drain {
                vip,
                backend,
                timeout_s,
            } => {
                // No such backend is that (404), whatever the timeout
                // asked: looked up before the timeout is checked (400).
                let admin = self.backend(vip, *backend)?.admin;
                let config = &self.vip(vip)?.config;
                let mut timeout = drain_timeout(*timeout_s, config.drain_timeout)?;
                timeout.cuts_flows = config.forwarding != lb_common::Mode::Nat;
                // Draining a draining backend keeps its start; without a
                // timeout of its own it keeps its deadline too (None
                // included: a drain never cut stays so), else it takes
                // the new one.
                let admin = match (admin, timeout_s) {
                    (AdminState::Draining { since, deadline }, None) => {
                        timeout.after = deadline.map(|d| d.saturating_duration_since(now));
                        timeout.source = DrainTimeoutSource::Kept;
                        timeout.draining_since = Some(since);
                        AdminState::Draining { since, deadline }
                    }
                    (AdminState::Draining { since, .. }, Some(_)) => {
                        timeout.draining_since = Some(since);
                        AdminState::Draining {
                            since,
                            deadline: timeout.after.map(|t| now + t),
                        }
                    }
                    _ => AdminState::Draining {
                        since: now,
                        deadline: timeout.after.map(|t| now + t),
                    },
                };
                self.set_admin(vip, *backend, admin)?;
                return Ok(Some(timeout));
            }
        }
        Ok(None)
    }

    /// Ends the drains whose deadline passed at `now` (their backends go to
    /// maintenance: the remaining flows are cut, but for a NAT VIP's,
    /// which stay until they end); returns which.
    pub(crate) fn expire_drains(&mut self, now: Instant) -> Vec<(VipId, IpAddr)> {
        let mut expired = Vec::new();
        for (id, vip) in &mut self.vips {
            for (address, backend) in &mut vip.backends {
                if let AdminState::Draining {
                    deadline: Some(deadline),
                    ..
                } = backend.admin
                {
                    if now >= deadline {
                        backend.admin = AdminState::Maintenance;
                        backend.drain_timed_out = true;
                        expired.push((*id, *address));
                    }
                }
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drain of a backend (or VIP) that does not exist is "no such
    /// backend" (404), whatever timeout it asks: a timeout out of range is
    /// a refused request (400) only for a backend that exists.
    #[test]
    fn a_drain_of_no_such_backend_is_not_found_whatever_its_timeout() {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n",
            "test.toml",
        )
        .unwrap();
        let mut model = Model::from_config(&config);
        let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let too_long = Some(MAX_DRAIN_TIMEOUT.as_secs() + 1);
        let drain = |vip, backend: &str, timeout_s| Edit::Drain {
            vip,
            backend: backend.parse().unwrap(),
            timeout_s,
        };
        let before = model.clone();
        let now = Instant::now();
        for timeout_s in [too_long, Some(30), None] {
            let absent = model.apply(&drain(vip, "198.18.0.99", timeout_s), now);
            assert!(
                matches!(absent, Err(ModelError::NoBackend { .. })),
                "{timeout_s:?}: {absent:?}"
            );
            let no_vip: VipId = "198.18.0.101:80/tcp".parse().unwrap();
            let absent = model.apply(&drain(no_vip, "198.18.0.11", timeout_s), now);
            assert!(
                matches!(absent, Err(ModelError::NoVip(_))),
                "{timeout_s:?}: {absent:?}"
            );
        }
        let refused = model.apply(&drain(vip, "198.18.0.11", too_long), now);
        assert!(
            matches!(refused, Err(ModelError::Invalid(_))),
            "{refused:?}"
        );
        assert_eq!(model, before);
    }

    /// A drain again of a draining backend without a timeout of its own
    /// keeps the deadline the first one set (and its start), and says
    /// so (`Kept`, what is left of it, since when it drains); with a
    /// timeout it sets the new one from now, still saying since when.
    #[test]
    fn a_drain_again_without_a_timeout_keeps_the_deadline() {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n",
            "test.toml",
        )
        .unwrap();
        let mut model = Model::from_config(&config);
        let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let backend: IpAddr = "198.18.0.11".parse().unwrap();
        let drain = |timeout_s| Edit::Drain {
            vip,
            backend,
            timeout_s,
        };
        let t0 = Instant::now();
        let first = model.apply(&drain(Some(300)), t0).unwrap().unwrap();
        assert_eq!(first.draining_since, None, "not draining before");
        let again = model
            .apply(&drain(None), t0 + Duration::from_secs(10))
            .unwrap()
            .unwrap();
        let admin = model.backend(&vip, backend).unwrap().admin;
        assert_eq!(
            admin,
            AdminState::Draining {
                since: t0,
                deadline: Some(t0 + Duration::from_secs(300)),
            }
        );
        assert_eq!(again.source, DrainTimeoutSource::Kept);
        assert_eq!(again.after, Some(Duration::from_secs(290)));
        assert_eq!(again.draining_since, Some(t0));
        // With a timeout: the new deadline, from now.
        let t1 = t0 + Duration::from_secs(20);
        let moved = model.apply(&drain(Some(60)), t1).unwrap().unwrap();
        assert_eq!(
            model.backend(&vip, backend).unwrap().admin,
            AdminState::Draining {
                since: t0,
                deadline: Some(t1 + Duration::from_secs(60)),
            }
        );
        assert_eq!(moved.source, DrainTimeoutSource::Request);
        assert_eq!(moved.draining_since, Some(t0));
        // A drain never cut stays never cut.
        model.apply(&drain(Some(0)), t1).unwrap();
        let kept = model.apply(&drain(None), t1).unwrap().unwrap();
        assert_eq!((kept.after, kept.source), (None, DrainTimeoutSource::Kept));
        assert_eq!(
            model.backend(&vip, backend).unwrap().admin,
            AdminState::Draining {
                since: t0,
                deadline: None,
            }
        );
    }
}
