//! The node's own settings at the document's top level: the hook, the
//! table sizes, where lbd keeps its socket and pins, logging, metrics and
//! the idle horizons. Each setting is one value with its default; the
//! rules that span sections are elsewhere.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::{Spanned, Value};

use super::{
    log_filter::log_filter_silences_lbd,
    paths::{admin_socket_path, pin_dir_path},
};
use crate::config::{
    checker::Checker, raw::RawConfig, value, Attach, ConfigError, XdpMode, DEFAULT_ADMIN_SOCKET,
    DEFAULT_CONNTRACK_SIZE, DEFAULT_HALF_OPEN_SIZE, DEFAULT_METRICS_LISTEN, DEFAULT_PIN_DIR,
    DEFAULT_TCP_IDLE_TIMEOUT, DEFAULT_UDP_IDLE_TIMEOUT, MAX_CONNTRACK_SIZE, MAX_HALF_OPEN_SIZE,
    MIN_CONNTRACK_SIZE, MIN_HALF_OPEN_SIZE,
};

impl Checker<'_> {
    /// `attach` and `xdp_mode`: a mode asked for at tc is refused, as it
    /// would be silently ignored.
    pub(super) fn hook(&self, raw: &RawConfig) -> Result<(Attach, XdpMode), ConfigError> {
        let attach = match &raw.attach {
            None => Attach::default(),
            Some(value) => self.choice(value, "attach", &Attach::ALL.map(|a| (a.name(), a)))?,
        };
        let xdp_mode = match &raw.xdp_mode {
            None => XdpMode::default(),
            Some(value) => {
                let mode = self.choice(value, "xdp_mode", &XdpMode::ALL.map(|m| (m.name(), m)))?;
                // "auto" (the default, which `lbctl config dump` writes) is
                // let by; a mode asked for would be silently ignored.
                if attach == Attach::Tc && mode != XdpMode::Auto {
                    return Err(self.bad_value(
                        value,
                        "xdp_mode",
                        format!(
                            "xdp_mode = {:?} is for attach = \"xdp\"; with attach = \"tc\" there is no XDP program to attach: remove xdp_mode",
                            mode.name()
                        ),
                    ));
                }
                mode
            }
        };
        Ok((attach, xdp_mode))
    }

    /// `conntrack_size` and `half_open_size`, each within its bounds.
    pub(super) fn table_sizes(&self, raw: &RawConfig) -> Result<(u32, u32), ConfigError> {
        let conntrack_size = match &raw.conntrack_size {
            None => DEFAULT_CONNTRACK_SIZE,
            Some(value) => self.integer(
                value,
                "conntrack_size",
                MIN_CONNTRACK_SIZE..=MAX_CONNTRACK_SIZE,
            )?,
        };
        let half_open_size = match &raw.half_open_size {
            None => DEFAULT_HALF_OPEN_SIZE,
            Some(value) => self.integer(
                value,
                "half_open_size",
                MIN_HALF_OPEN_SIZE..=MAX_HALF_OPEN_SIZE,
            )?,
        };
        Ok((conntrack_size, half_open_size))
    }

    /// `admin_socket` and `pin_dir` (None: `"off"`, nothing pinned), as
    /// paths lbd may create and remove.
    pub(super) fn node_paths(
        &self,
        raw: &RawConfig,
    ) -> Result<(PathBuf, Option<PathBuf>), ConfigError> {
        let admin_socket = match &raw.admin_socket {
            None => PathBuf::from(DEFAULT_ADMIN_SOCKET),
            Some(value) => {
                let path = self.string(value, "admin_socket")?;
                self.checked(value, "admin_socket", admin_socket_path(path))?;
                PathBuf::from(path)
            }
        };
        let pin_dir = match &raw.pin_dir {
            None => Some(PathBuf::from(DEFAULT_PIN_DIR)),
            Some(value) => {
                let path = self.string(value, "pin_dir")?;
                if path == "off" {
                    None
                } else {
                    self.checked(value, "pin_dir", pin_dir_path(path))?;
                    Some(PathBuf::from(path))
                }
            }
        };
        Ok((admin_socket, pin_dir))
    }

    /// `log_level`: a filter `tracing` takes that does not silence lbd's
    /// own warnings.
    pub(super) fn log_level(&self, raw: &RawConfig) -> Result<String, ConfigError> {
        let log_level = match &raw.log_level {
            None => "info".to_owned(),
            Some(value) => {
                let level = self.string(value, "log_level")?;
                if tracing_subscriber::EnvFilter::try_new(level).is_err() || level.is_empty() {
                    return Err(self.bad_value(
                        value,
                        "log_level",
                        format!("{level:?} is not a log filter (e.g. \"info\", \"warn\", \"info,lb_userspace=debug\")"),
                    ));
                }
                if let Some(problem) = log_filter_silences_lbd(level) {
                    return Err(self.bad_value(value, "log_level", problem));
                }
                level.to_owned()
            }
        };
        Ok(log_level)
    }

    /// `metrics_listen` (None: `"off"`), never empty: a template that
    /// rendered nothing is refused.
    pub(super) fn metrics_listen(
        &self,
        raw: &RawConfig,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        let metrics_listen = match &raw.metrics_listen {
            None => DEFAULT_METRICS_LISTEN.parse().ok(),
            Some(value) => {
                let text = self.string(value, "metrics_listen")?;
                if text == "off" {
                    None
                } else if text.is_empty() {
                    // A template that rendered nothing would otherwise
                    // take /metrics, /healthz and /readyz away unseen.
                    return Err(self.bad_value(
                        value,
                        "metrics_listen",
                        "is empty: give ADDRESS:PORT, or \"off\" to serve no metrics",
                    ));
                } else {
                    let address = text.parse().map_err(|_| {
                        self.bad_value(
                            value,
                            "metrics_listen",
                            format!("{text:?} is not ADDRESS:PORT (or \"off\")"),
                        )
                    })?;
                    Some(self.checked(
                        value,
                        "metrics_listen",
                        value::socket_address(address, false),
                    )?)
                }
            }
        };
        Ok(metrics_listen)
    }

    /// `tcp_idle_timeout_s` and `udp_idle_timeout_s`, a second to a week.
    pub(super) fn idle_timeouts(
        &self,
        raw: &RawConfig,
    ) -> Result<(Duration, Duration), ConfigError> {
        let seconds = |value: &Option<Spanned<Value>>, name: &str, default: Duration| {
            value.as_ref().map_or(Ok(default), |v| {
                self.integer::<u32>(v, name, 1..=86_400 * 7)
                    .map(|s| Duration::from_secs(s.into()))
            })
        };
        let tcp_idle_timeout = seconds(
            &raw.tcp_idle_timeout_s,
            "tcp_idle_timeout_s",
            DEFAULT_TCP_IDLE_TIMEOUT,
        )?;
        let udp_idle_timeout = seconds(
            &raw.udp_idle_timeout_s,
            "udp_idle_timeout_s",
            DEFAULT_UDP_IDLE_TIMEOUT,
        )?;
        Ok((tcp_idle_timeout, udp_idle_timeout))
    }
}
