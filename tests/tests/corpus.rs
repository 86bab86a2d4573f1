//! The crafted-packet corpus (`tests/corpus/packets.txt`, built by
//! `lb_tests::corpus`, where the decisions are written down) through the
//! compiled program with BPF_PROG_TEST_RUN, at both hooks (XDP and tc;
//! frames the kernel builds no skb from are checked to be refused and
//! skipped at tc, see `testbed::skb_refuses`): every entry, every cut of
//! every valid frame, all 256 TCP flag bytes. Each run asserts the verdict,
//! the one verdict counter it bumped, and the bytes that come out (TX: the
//! input with only the MACs rewritten, to the right backend; otherwise the
//! input untouched). Needs root, except the file check.

use std::{fs, path::PathBuf};

use lb_common::stats::Counter;
use lb_tests::{
    corpus::{self, Entry, Verdict, VipFlow},
    packet,
    testbed::{skb_refuses, vip4_tcp, vip4_udp, vip6_tcp, vip6_udp, Hook, TestBed},
};
use lb_userspace::config::VipConfig;

fn file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(corpus::FILE)
}

/// The corpus as committed.
fn load() -> Vec<Entry> {
    let text = fs::read_to_string(file()).expect("reading the corpus file");
    corpus::parse(&text).expect("parsing the corpus file")
}

/// A test bed serving the corpus's four VIPs, and what a run did.
struct Runner {
    bed: TestBed,
    vips: Vec<VipConfig>,
}

/// What one run did.
struct Outcome {
    verdict: Option<Verdict>,
    counter: Counter,
    out: Vec<u8>,
}

impl Runner {
    fn new(hook: Hook) -> Self {
        let vips = vec![vip4_tcp(), vip4_udp(), vip6_tcp(), vip6_udp()];
        let bed = TestBed::with_hook(&vips, hook).expect("test bed");
        Self { bed, vips }
    }

    fn verdict_counters(&self) -> Vec<(Counter, u64)> {
        self.bed
            .dataplane
            .counters()
            .expect("counters")
            .into_iter()
            .filter(|(c, _)| c.is_verdict())
            .collect()
    }

    /// Runs `frame`; exactly one verdict counter must move, by one. None:
    /// a frame the tc test run cannot take (checked to be refused).
    fn run(&mut self, frame: &[u8], what: &str) -> Option<Outcome> {
        if self.bed.hook == Hook::Tc && skb_refuses(frame) {
            assert!(self.bed.run(frame).is_err(), "{what}: the kernel took it");
            return None;
        }
        let before = self.verdict_counters();
        let (action, out) = self.bed.run(frame).expect("test run");
        let after = self.verdict_counters();
        let moved: Vec<(Counter, u64)> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| a.1 != b.1)
            .map(|(b, a)| (b.0, a.1 - b.1))
            .collect();
        assert!(
            moved.len() == 1 && moved[0].1 == 1,
            "{what}: verdict counters moved {moved:?}"
        );
        Some(Outcome {
            verdict: Verdict::of_action(action),
            counter: moved[0].0,
            out,
        })
    }

    /// The MAC of the backend Maglev gives `flow` (nothing in these beds
    /// changes the backends, so tracked flows stay on it).
    fn backend_mac(&self, flow: &VipFlow) -> [u8; 6] {
        let vip = self
            .vips
            .iter()
            .find(|v| {
                v.address == flow.vip.ip()
                    && v.port == flow.vip.port()
                    && v.protocol == flow.protocol
            })
            .unwrap_or_else(|| panic!("no VIP for {flow:?}"));
        self.bed
            .maglev_backend(vip, &flow.flow())
            .expect("Maglev backend")
            .1
    }

    /// Runs `frame` and asserts verdict, counter and output bytes.
    fn expect(
        &mut self,
        what: &str,
        frame: &[u8],
        verdict: Verdict,
        counter: Counter,
        flow: Option<&VipFlow>,
    ) {
        let Some(outcome) = self.run(frame, what) else {
            return;
        };
        assert_eq!(
            (outcome.verdict, outcome.counter),
            (Some(verdict), counter),
            "{what}"
        );
        if verdict == Verdict::Tx {
            let flow = flow.unwrap_or_else(|| panic!("{what}: TX expected without a flow"));
            let mac = self.backend_mac(flow);
            assert_eq!(
                outcome.out,
                packet::forwarded(frame, mac),
                "{what}: only the MACs may change, to the flow's backend"
            );
        } else {
            assert_eq!(outcome.out, frame, "{what}: must leave the frame untouched");
        }
    }
}

/// The committed corpus is what the generator writes. With
/// `corpus::WRITE_ENV` set, a corpus that differs is written anew and the
/// test still fails (an environment that leaks the variable cannot turn
/// this check into a pass, and a rewrite is always reviewed); one that
/// is already current passes as without it.
#[test]
fn corpus_file_is_what_the_generator_writes() {
    let generated = corpus::render(&corpus::generate());
    let path = file();
    let committed = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => panic!("reading {}: {error}", path.display()),
    };
    if committed != generated {
        if std::env::var_os(corpus::WRITE_ENV).is_some() {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).expect("creating the corpus directory");
            }
            fs::write(&path, &generated).expect("writing the corpus file");
            panic!(
                "regenerated {}: review the diff, then rerun without {}",
                path.display(),
                corpus::WRITE_ENV
            );
        }
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{} differs from what lb_tests::corpus::generate writes (first at line {}); \
             regenerate it with `{}=1 cargo test -p lb-tests --test corpus corpus_file` \
             (which fails once, having written it), review the diff and rerun",
            path.display(),
            line + 1,
            corpus::WRITE_ENV
        );
    }
    assert_eq!(
        corpus::parse(&committed).expect("parsing"),
        corpus::generate(),
        "the file reads back as the generated entries"
    );
}

#[test]
fn corpus_entries_are_tx_exactly_when_they_are_valid_vip_traffic() {
    let entries = load();
    assert!(entries.len() > 100, "{} entries", entries.len());
    for e in &entries {
        assert_eq!(
            e.verdict == Verdict::Tx,
            e.flow.is_some(),
            "{}: TX iff the entry carries a VIP flow",
            e.name
        );
        assert_eq!(
            e.verdict == Verdict::Tx,
            matches!(e.counter, Counter::Forwarded | Counter::ForwardedIcmpError),
            "{}: verdict and counter agree",
            e.name
        );
    }
    // Every verdict counter is exercised, but one that needs a VIP without
    // backends and the routed modes' (NAT, tunnels), which need NAT state,
    // routes and neighbours: tests/tests/nat_dataplane/ and
    // tunnel_dataplane/ cover each of those. The guards' verdicts need
    // rules and limits: tests/tests/guard_dataplane.rs covers them. A
    // redirect with no `TX_PORTS` slot and a refusing kernel helper need
    // routed state too (nat_dataplane's tx_ports, tunnel_dataplane's
    // next_hop and icmp); a VIP frame for another host's MAC needs the
    // node's MAC set (dataplane.rs).
    let needs_routes = [
        Counter::DropNoTxPort,
        Counter::DropInternal,
        Counter::PassForeignMac,
        Counter::DropAclDenied,
        Counter::DropAclNotAllowed,
        Counter::DropRateLimited,
        Counter::DropNatPortsExhausted,
        Counter::DropNatTableFull,
        Counter::DropNoRoute,
        Counter::DropNoNeighbour,
        Counter::DropNatNoFlow,
        Counter::DropTtlExceeded,
        Counter::DropTooBig,
        Counter::ForwardedNatReply,
        Counter::ForwardedNatIcmpError,
        Counter::SentIcmpTooBig,
    ];
    for counter in Counter::ALL
        .into_iter()
        .filter(|c| c.is_verdict() && *c != Counter::DropNoBackend && !needs_routes.contains(c))
    {
        assert!(
            entries.iter().any(|e| e.counter == counter),
            "no entry for {}",
            counter.name()
        );
    }
}

fn every_corpus_entry_gets_its_verdict_counter_and_bytes(hook: Hook) {
    let mut runner = Runner::new(hook);
    for e in load() {
        runner.expect(&e.name, &e.frame(), e.verdict, e.counter, e.flow.as_ref());
    }
}

fn every_cut_of_a_valid_frame_is_dropped_until_its_headers_are_whole(hook: Hook) {
    let mut runner = Runner::new(hook);
    let mut counts = (0, 0);
    for e in load().into_iter().filter(|e| e.flow.is_some()) {
        for cut in corpus::cuts(&e) {
            let what = format!(
                "{} cut to {} bytes{}",
                e.name,
                cut.frame.len(),
                if cut.consistent {
                    ", IP length fixed"
                } else {
                    ""
                }
            );
            if cut.valid {
                counts.0 += 1;
                runner.expect(&what, &cut.frame, Verdict::Tx, e.counter, e.flow.as_ref());
            } else {
                counts.1 += 1;
                runner.expect(
                    &what,
                    &cut.frame,
                    Verdict::Drop,
                    Counter::DropMalformed,
                    None,
                );
            }
        }
    }
    // Both kinds happen: consistent cuts in TCP payloads and past the 8
    // quoted bytes of ICMP errors stay valid; the rest is dropped.
    assert!(counts.0 > 100 && counts.1 > 1000, "{counts:?}");
}

fn all_256_tcp_flag_bytes_to_a_vip_are_forwarded_or_dropped_by_the_rule(hook: Hook) {
    let mut runner = Runner::new(hook);
    let mut dropped = 0;
    for v6 in [false, true] {
        for flags in 0..=255u8 {
            let (flow, frame) = corpus::tcp_with_flags(v6, 30_000 + u16::from(flags), flags);
            let what = format!("TCP flags {flags:#04x} (IPv{})", if v6 { 6 } else { 4 });
            if corpus::tcp_flags_impossible(flags) {
                dropped += 1;
                runner.expect(&what, &frame, Verdict::Drop, Counter::DropTcpFlags, None);
            } else {
                runner.expect(&what, &frame, Verdict::Tx, Counter::Forwarded, Some(&flow));
            }
        }
    }
    // 34 of the 64 control-bit combinations, times 4 for ECE/CWR, per family.
    assert_eq!(dropped, 2 * 136);
    // Dropped packets never reached the tables: of the forwarded ones,
    // those with SYN and without ACK are held half-open, the rest tracked.
    let opening = (0..=255u8)
        .filter(|f| !corpus::tcp_flags_impossible(*f) && f & 0x12 == 0x02)
        .count() as u64;
    assert!(opening > 0);
    assert_eq!(
        runner
            .bed
            .counter(Counter::ConntrackHalfOpenNew)
            .expect("counter"),
        2 * opening
    );
    assert_eq!(
        runner.bed.counter(Counter::ConntrackNew).expect("counter"),
        2 * (256 - 136) - 2 * opening
    );
}

/// The invariant: whatever the corpus holds and however its frames are
/// cut, nothing goes to a backend unless it is valid VIP traffic.
fn nothing_is_sent_to_a_backend_unless_it_is_valid_vip_traffic(hook: Hook) {
    let mut runner = Runner::new(hook);
    let mut sent = 0;
    let mut check = |runner: &mut Runner, what: &str, frame: &[u8], flow: Option<&VipFlow>| {
        let Some(outcome) = runner.run(frame, what) else {
            return;
        };
        if outcome.verdict == Some(Verdict::Tx) {
            let flow = flow.unwrap_or_else(|| panic!("{what}: sent to a backend but not valid"));
            assert_eq!(
                outcome.out,
                packet::forwarded(frame, runner.backend_mac(flow)),
                "{what}: sent to the wrong backend"
            );
            sent += 1;
        }
    };
    for e in load() {
        check(&mut runner, &e.name, &e.frame(), e.flow.as_ref());
        for cut in corpus::cuts(&e) {
            let what = format!("{} cut to {} bytes", e.name, cut.frame.len());
            let flow = e.flow.as_ref().filter(|_| cut.valid);
            check(&mut runner, &what, &cut.frame, flow);
        }
    }
    for flags in 0..=255u8 {
        let (flow, frame) = corpus::tcp_with_flags(false, 31_000 + u16::from(flags), flags);
        let valid = !corpus::tcp_flags_impossible(flags);
        check(
            &mut runner,
            &format!("flags {flags:#04x}"),
            &frame,
            valid.then_some(&flow),
        );
    }
    assert!(sent > 100, "only {sent} frames were sent at all");
}

lb_tests::on_both_hooks!(
    every_corpus_entry_gets_its_verdict_counter_and_bytes,
    every_cut_of_a_valid_frame_is_dropped_until_its_headers_are_whole,
    all_256_tcp_flag_bytes_to_a_vip_are_forwarded_or_dropped_by_the_rule,
    nothing_is_sent_to_a_backend_unless_it_is_valid_vip_traffic,
);
