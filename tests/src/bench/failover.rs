//! Control-plane reaction: how long a dead backend stays in the table at
//! the lab's check settings, and the VRRP failover gap (master's software
//! killed, until the backup holds the VIP) for lbd and for keepalived as
//! both nodes, side by side, at 0.1 s and 1 s advertisement intervals.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::Spread;
use crate::lab::{Host, Lab, LabSpec};

/// The measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverResults {
    /// Health-check settings used for the detection measurement.
    pub check_settings: String,
    /// nginx stopped → lbd's status shows the backend out of the table, ms.
    pub backend_out_ms: Spread,
    /// Per system and interval: kill → backup holds the VIP, ms.
    pub vrrp: Vec<VrrpGap>,
}

/// One failover setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VrrpGap {
    /// lbd or keepalived.
    pub system: String,
    /// Advertisement interval, ms.
    pub advert_interval_ms: u32,
    /// RFC 5798 master-down interval of the backup (priority 100), ms.
    pub master_down_ms: f64,
    /// Measured gap, ms.
    pub gap_ms: Spread,
}

fn wait(limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn backend_out(rounds: u32) -> anyhow::Result<Vec<f64>> {
    let extra = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 200\nfast_interval_ms = 100\ntimeout_ms = 100\nrise = 2\nfall = 2\n";
    let backends = |lab: &Lab| -> Vec<lb_userspace::api::schema::BackendStatus> {
        lab.lbctl(&["status", "--json"])
            .ok()
            .and_then(|o| {
                serde_json::from_slice::<lb_userspace::api::schema::Status>(&o.stdout).ok()
            })
            .and_then(|s| s.vips.into_iter().next().map(|v| v.backends))
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for _ in 0..rounds {
        let mut lab = Lab::start(3)?;
        lab.wait_for_backends()?;
        let config = lab.lbd_config_for(&["b1", "b2", "b3"], extra);
        lab.start_lbd(&config)?;
        wait(Duration::from_secs(10), || {
            let all = backends(&lab);
            !all.is_empty()
                && all
                    .iter()
                    .all(|b| b.health == lb_userspace::api::schema::HealthStatus::Up)
        })
        .with_context(|| format!("backends up: {:?}", backends(&lab)))?;
        std::thread::sleep(Duration::from_millis(500));
        let killed = Instant::now();
        lab.terminate("nginx-b2")?;
        wait(Duration::from_secs(10), || {
            backends(&lab)
                .iter()
                .find(|b| b.address.to_string() == "198.18.0.12")
                .is_some_and(|b| !b.alive)
        })
        .with_context(|| format!("b2 out: {:?}", backends(&lab)))?;
        out.push(killed.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}

fn gap(system: &str, interval_ms: u32) -> anyhow::Result<f64> {
    let mut lab = Lab::start_spec(LabSpec {
        lbs: 2,
        backends: 1,
        static_vip: false,
    })?;
    lab.wait_for_backends()?;
    let (a, b): (Host, Host) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let advert_int = format!("{}", f64::from(interval_ms) / 1000.0);
    match system {
        "lbd" => {
            let set = |c: String| {
                c.replace(
                    "advert_interval_ms = 100",
                    &format!("advert_interval_ms = {interval_ms}"),
                )
            };
            let config_a = set(lab.ha_config(&a, &b, &["b1"], 150, true)?);
            let config_b = set(lab.ha_config(&b, &a, &["b1"], 100, true)?);
            lab.start_lbd_on(&a, "lbd-a", &config_a)?;
            lab.start_lbd_on(&b, "lbd-b", &config_b)?;
        }
        "keepalived" => {
            lab.start_keepalived_every(&a, "ka-a", 150, true, &advert_int)?;
            lab.start_keepalived_every(&b, "ka-b", 100, true, &advert_int)?;
        }
        other => bail!("unknown system {other}"),
    }
    wait(Duration::from_secs(15), || {
        lab.holds_vip(&a).unwrap_or(false)
    })
    .context("first election")?;
    // Let the backup hear a few adverts and settle.
    std::thread::sleep(Duration::from_millis(u64::from(interval_ms) * 5 + 300));
    if lab.holds_vip(&b)? {
        bail!("{system}: both nodes hold the VIP before the kill");
    }
    let killed = Instant::now();
    lab.kill_all_in(&a)?;
    wait(Duration::from_secs(15), || {
        lab.holds_vip(&b).unwrap_or(false)
    })?;
    Ok(killed.elapsed().as_secs_f64() * 1000.0)
}

/// Runs the measurements, `rounds` each, systems interleaved.
pub fn run(rounds: u32) -> anyhow::Result<FailoverResults> {
    let backend_out_ms = Spread::of(&backend_out(rounds)?);
    eprintln!(
        "bench: dead backend out of the table after {:.0} ms (median)",
        backend_out_ms.median
    );
    let mut vrrp = Vec::new();
    for interval in [100u32, 1000] {
        let mut gaps: Vec<(&str, Vec<f64>)> = vec![("lbd", Vec::new()), ("keepalived", Vec::new())];
        for _ in 0..rounds {
            for (system, samples) in &mut gaps {
                let ms = gap(system, interval)?;
                eprintln!("bench: {system:<10} advert {interval:>4} ms: backup held the VIP {ms:.0} ms after the kill");
                samples.push(ms);
            }
        }
        let master_down =
            3.0 * f64::from(interval) + f64::from(256 - 100) * f64::from(interval) / 256.0;
        for (system, samples) in gaps {
            vrrp.push(VrrpGap {
                system: system.to_owned(),
                advert_interval_ms: interval,
                master_down_ms: master_down,
                gap_ms: Spread::of(&samples),
            });
        }
    }
    Ok(FailoverResults {
        check_settings:
            "HTTP /health, interval 200 ms, fast interval 100 ms, timeout 100 ms, fall 2".to_owned(),
        backend_out_ms,
        vrrp,
    })
}
