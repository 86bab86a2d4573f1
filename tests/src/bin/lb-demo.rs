//! The demo behind `cargo xtask demo`: builds the lab (client, lbd with XDP
//! on the LB node, three nginx backends), sends requests from the client to
//! the VIP, prints who served them, `lbctl status` and what the data plane
//! counted, then tears the lab down (or, with --keep, waits for Ctrl-C
//! first).
//!
//! However it is stopped, the lab goes: SIGINT (Ctrl-C, to the demo alone
//! or its whole process group), SIGTERM or SIGHUP at any step, or the death
//! of whatever started it (a killed `cargo xtask demo`), end the current
//! step and tear the lab down before the demo exits.

use std::{
    net::IpAddr,
    process::ExitCode,
    sync::{
        atomic::{AtomicI32, Ordering},
        mpsc, Mutex,
    },
};

use anyhow::{bail, Context as _};
use clap::Parser;
use lb_common::stats::Counter;
use lb_tests::{
    client::{self, Tally},
    lab::{Lab, VIP4, VIP6},
    lbd_maps::LbdMaps,
};

/// Demo of the XDP load balancer in a namespace lab.
#[derive(Debug, Parser)]
struct Args {
    /// Requests to send to each VIP, each on a new TCP connection (at
    /// least 1: none would show nothing).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    requests: u32,
    /// Keep the lab running until Ctrl-C, and print how to reach it.
    #[arg(long)]
    keep: bool,
}

/// Requests sent between two looks at whether the demo was stopped.
const REQUESTS_PER_STEP: u32 = 50;

fn main() -> ExitCode {
    let args = Args::parse();
    let stop = Stop::watch();
    let result = run(&args, &stop); // the lab is gone when run returns
    match (result, stop.signal()) {
        (Ok(()), _) => {
            println!("Lab torn down.");
            ExitCode::SUCCESS
        }
        (Err(_), Some(signal)) => {
            println!("Stopped by {}: lab torn down.", signal_name(signal));
            ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
        }
        (Err(error), None) => {
            eprintln!("lb-demo: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, stop: &Stop) -> anyhow::Result<()> {
    println!("Building the lab: client, lb (lbd + XDP), backends b1 b2 b3 (nginx) ...");
    let mut lab = Lab::start(3)?;
    stop.check()?;
    lab.wait_for_backends()?;
    stop.check()?;
    let config = lab.lbd_config();
    let pid = lab.start_lbd(&config)?;
    stop.check()?;
    println!(
        "lbd is running on {} (eth0 {}), VIPs {VIP4}:80 and [{VIP6}]:80\n",
        lab.lb.netns, lab.lb.ipv4
    );
    println!("lbd config:\n{config}");

    let backends: Vec<&str> = lab.backends.iter().map(|b| b.name.as_str()).collect();
    // What went wrong, per VIP: the demo still shows the status and the
    // counters (they say why), then fails.
    let mut problems = Vec::new();
    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let tally = burst(&lab, vip, args.requests, stop)?;
        println!(
            "{} requests to {vip} (one TCP connection each):",
            args.requests
        );
        for (backend, served) in &tally.by_backend {
            let share = *served as f64 * 100.0 / f64::from(args.requests);
            println!("  {backend}: {served:>6} ({share:.1}%)");
        }
        if tally.failed > 0 {
            println!("  failed: {} ({:?})", tally.failed, tally.errors);
        }
        if let Err(problem) = judge(vip, &tally, args.requests, &backends) {
            println!("  NOT OK: {problem:#}");
            problems.push(problem);
        }
    }

    // What an operator sees: the VIPs, backends, health, shares and
    // traffic, from lbctl as shipped.
    let status = lab.lbctl(&["status"]).context("running lbctl status")?;
    if !status.status.success() {
        bail!("lbctl status: {}", String::from_utf8_lossy(&status.stderr));
    }
    print!(
        "\n$ lbctl status\n{}",
        String::from_utf8_lossy(&status.stdout)
    );

    let maps = LbdMaps::of_process(pid).context("reading lbd's counters")?;
    println!("\nData-plane counters (summed over CPUs):");
    let width = Counter::ALL
        .iter()
        .map(|c| c.name().len())
        .max()
        .unwrap_or(0);
    for counter in Counter::ALL {
        println!("  {:<width$} {}", counter.name(), maps.counter(counter)?);
    }

    if args.keep {
        println!(
            "\nThe lab is up. Try:\n  ip netns exec {} curl http://{VIP4}/\n  ip netns exec {} curl -g 'http://[{VIP6}]/'\n  \
             ip -n {} -d link show eth0     # the XDP program\n  logs and configs: {}\nPress Ctrl-C to tear it down.",
            lab.client.netns,
            lab.client.netns,
            lab.lb.netns,
            lab.dir.display()
        );
        stop.wait();
    }
    drop(lab);
    match problems.as_slice() {
        [] => Ok(()),
        problems => bail!(
            "{}",
            problems
                .iter()
                .map(|p| format!("{p:#}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// Whether the `requests` sent to `vip` went as a working load balancer
/// sends them: none failed, and with at least three per backend, every
/// one of `backends` (their names, as they answer) served some. The
/// demo is the README's first step and a smoke test: it must not exit 0
/// when the data plane served nothing.
fn judge(vip: IpAddr, tally: &Tally, requests: u32, backends: &[&str]) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    if tally.failed > 0 {
        wrong.push(format!(
            "{} of {requests} requests failed ({})",
            tally.failed,
            tally.errors.join("; ")
        ));
    }
    if u64::from(requests) >= 3 * backends.len() as u64 {
        let idle: Vec<&str> = backends
            .iter()
            .copied()
            .filter(|b| tally.by_backend.get(*b).copied().unwrap_or(0) == 0)
            .collect();
        if !idle.is_empty() {
            wrong.push(format!(
                "{} served none of {requests} requests",
                idle.join(", ")
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        bail!("VIP {vip}: {}", wrong.join("; "))
    }
}

/// `count` requests to `vip`, a step at a time so that a stop is not held
/// up by the rest of the burst.
fn burst(lab: &Lab, vip: IpAddr, count: u32, stop: &Stop) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut left = count;
    while left > 0 {
        let step = left.min(REQUESTS_PER_STEP);
        tally.add(client::burst(&lab.client.netns, vip, step)?);
        left -= step;
        stop.check()?;
    }
    Ok(tally)
}

/// The signals that stop the demo (SIGHUP: its terminal went away).
const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Whether (and by which signal) the demo was asked to stop. The signals
/// are blocked in every thread and taken by one that waits for them, so
/// none can end the process before the lab is torn down.
struct Stop {
    signal: &'static AtomicI32,
    received: Mutex<mpsc::Receiver<i32>>,
}

impl Stop {
    /// Blocks the stop signals, asks for SIGTERM when the parent dies, and
    /// starts the thread that waits for them. Call before any other thread
    /// starts (they inherit the blocked set; so would the processes the lab
    /// starts, which `support::with_signals_unblocked` prevents).
    fn watch() -> Self {
        static SIGNAL: AtomicI32 = AtomicI32::new(0);
        let set = stop_signals();
        let parent = std::os::unix::process::parent_id();
        // SAFETY: blocks the signals for this thread and the threads it
        // starts; asks the kernel for SIGTERM when the parent goes (plain
        // integer arguments).
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        }
        let (tx, received) = mpsc::channel();
        if std::os::unix::process::parent_id() != parent {
            // The parent went before the request: as if it had come.
            SIGNAL.store(libc::SIGTERM, Ordering::SeqCst);
            let _ = tx.send(libc::SIGTERM);
        }
        std::thread::spawn(move || {
            let mut signal = 0;
            // SAFETY: the signals are blocked, so sigwait receives them.
            if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                let _ = SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                let _ = tx.send(signal);
            }
        });
        Self {
            signal: &SIGNAL,
            received: Mutex::new(received),
        }
    }

    /// The signal that stopped the demo, if one did.
    fn signal(&self) -> Option<i32> {
        Some(self.signal.load(Ordering::SeqCst)).filter(|s| *s != 0)
    }

    /// Fails once a stop signal has come, so the step in progress ends.
    fn check(&self) -> anyhow::Result<()> {
        if let Some(signal) = self.signal() {
            bail!("stopped by {}", signal_name(signal));
        }
        Ok(())
    }

    /// Waits for a stop signal.
    fn wait(&self) {
        let received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        let _ = received.recv();
    }
}

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in STOP_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKENDS: [&str; 3] = ["b1", "b2", "b3"];

    fn tally(served: &[(&str, u64)], failed: u64, errors: &[&str]) -> Tally {
        Tally {
            by_backend: served.iter().map(|(b, n)| ((*b).to_owned(), *n)).collect(),
            failed,
            errors: errors.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    #[test]
    fn every_request_served_and_every_backend_used_is_ok() {
        let all = tally(&[("b1", 98), ("b2", 101), ("b3", 101)], 0, &[]);
        judge(IpAddr::V4(VIP4), &all, 300, &BACKENDS).expect("ok");
    }

    #[test]
    fn failed_requests_fail_the_demo_naming_the_vip_and_the_errors() {
        let some_failed = tally(
            &[("b1", 100), ("b2", 100), ("b3", 90)],
            10,
            &["connection refused"],
        );
        let error = judge(IpAddr::V6(VIP6), &some_failed, 300, &BACKENDS).expect_err("failed");
        let text = error.to_string();
        assert!(text.contains(&VIP6.to_string()), "{text}");
        assert!(text.contains("10 of 300 requests failed"), "{text}");
        assert!(text.contains("connection refused"), "{text}");
        let none_served = tally(&[], 300, &["timed out"]);
        assert!(judge(IpAddr::V4(VIP4), &none_served, 300, &BACKENDS).is_err());
    }

    #[test]
    fn a_backend_that_served_none_fails_the_demo_naming_it() {
        let skipped = tally(&[("b1", 150), ("b3", 150)], 0, &[]);
        let error = judge(IpAddr::V4(VIP4), &skipped, 300, &BACKENDS).expect_err("b2 idle");
        let text = error.to_string();
        assert!(text.contains(&VIP4.to_string()), "{text}");
        assert!(text.contains("b2 served none of 300 requests"), "{text}");
        // Too few requests to expect each backend to get one.
        let few = tally(&[("b1", 4), ("b3", 4)], 0, &[]);
        judge(IpAddr::V4(VIP4), &few, 8, &BACKENDS).expect("8 < 3 per backend");
        let nine = tally(&[("b1", 5), ("b3", 4)], 0, &[]);
        assert!(judge(IpAddr::V4(VIP4), &nine, 9, &BACKENDS).is_err());
    }

    #[test]
    fn no_requests_is_refused() {
        let error = Args::try_parse_from(["lb-demo", "--requests", "0"]).expect_err("zero");
        assert!(error.to_string().contains("--requests"), "{error}");
    }
}
