//! The demo behind `cargo xtask demo`: builds the lab (client, lbd with XDP
//! on the LB node, three nginx backends), sends requests from the client to
//! the VIP, prints who served them and what the data plane counted, then
//! tears the lab down (or, with --keep, waits for Ctrl-C first).

use std::net::IpAddr;

use anyhow::Context as _;
use clap::Parser;
use lb_common::stats::Counter;
use lb_tests::{
    client,
    lab::{Lab, VIP4, VIP6},
    lbd_maps::LbdMaps,
};

/// Demo of the XDP load balancer in a namespace lab.
#[derive(Debug, Parser)]
struct Args {
    /// Requests to send to each VIP, each on a new TCP connection.
    #[arg(long, default_value_t = 300)]
    requests: u32,
    /// Keep the lab running until Ctrl-C, and print how to reach it.
    #[arg(long)]
    keep: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.keep {
        // Wait for the signals with sigwait below instead of dying on them,
        // so the lab is always torn down. Children start with a clean mask.
        block_termination_signals();
    }
    println!("Building the lab: client, lb (lbd + XDP), backends b1 b2 b3 (nginx) ...");
    let mut lab = Lab::start(3)?;
    lab.wait_for_backends()?;
    let config = lab.lbd_config();
    let pid = lab.start_lbd(&config)?;
    println!(
        "lbd is running on {} (eth0 {}), VIPs {VIP4}:80 and [{VIP6}]:80\n",
        lab.lb.netns, lab.lb.ipv4
    );
    println!("lbd config:\n{config}");

    for vip in [IpAddr::V4(VIP4), IpAddr::V6(VIP6)] {
        let tally = client::burst(&lab.client.netns, vip, args.requests)?;
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
    }

    let maps = LbdMaps::of_process(pid).context("reading lbd's counters")?;
    println!("\nData-plane counters (summed over CPUs):");
    for counter in Counter::ALL {
        println!("  {:<24} {}", counter.name(), maps.counter(counter)?);
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
        wait_for_termination_signal();
    }
    drop(lab);
    println!("Lab torn down.");
    Ok(())
}

fn termination_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

fn block_termination_signals() {
    let set = termination_signals();
    // SAFETY: blocks the signals for this thread and threads it starts.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

fn wait_for_termination_signal() {
    let set = termination_signals();
    let mut signal = 0;
    // SAFETY: the signals are blocked, so sigwait receives them.
    unsafe { libc::sigwait(&set, &mut signal) };
}
