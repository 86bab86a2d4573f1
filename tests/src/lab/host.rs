//! Helpers beside a lab: running commands in a namespace, lbctl and HTTP
//! from one, the workspace's binaries, and the sweep of what killed runs
//! left (namespaces, pins).

use super::*;

/// Runs `f` on a thread that has entered network namespace `netns`:
/// sockets it opens live there.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let path = Path::new("/run/netns").join(netns);
    std::thread::spawn(move || -> anyhow::Result<T> {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: setns on a namespace fd affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "setns {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow!("thread in {netns} panicked"))?
}

/// Ids of the programs on the tcx ingress of `ifname` in namespace
/// `netns` (empty: none, also on a kernel without tcx, before 6.6, where
/// the demo runs too).
pub fn tcx_ingress_ids(netns: &str, ifname: &str) -> anyhow::Result<Vec<u32>> {
    let ifname = ifname.to_owned();
    in_netns(netns, move || -> anyhow::Result<Vec<u32>> {
        let queried = aya::programs::SchedClassifier::query_tcx(
            &ifname,
            aya::programs::TcAttachType::Ingress,
        );
        tcx_ids(queried.map(|(_, programs)| programs))
    })?
}

/// Ids of the programs on the tcx egress of `ifname` in namespace
/// `netns` (empty: none, also on a kernel without tcx). Any other error
/// of the query (no such device, no permission) is an error, never "no
/// programs": checks that nothing is left there must not pass on a
/// query that did not run.
pub fn tcx_egress_ids(netns: &str, ifname: &str) -> anyhow::Result<Vec<u32>> {
    let owned = ifname.to_owned();
    in_netns(netns, move || -> anyhow::Result<Vec<u32>> {
        let queried =
            aya::programs::SchedClassifier::query_tcx(&owned, aya::programs::TcAttachType::Egress);
        tcx_ids(queried.map(|(_, programs)| programs))
    })?
    .with_context(|| format!("tcx egress of {ifname} in {netns}"))
}

/// `tc filter show dev <dev> <hook>` (`ingress`, `egress`) in namespace
/// `netns`: the listing, empty when no filter is there (tc answers an
/// empty dump also when the device has no clsact qdisc). A failing tc (no
/// such device or namespace, a syntax iproute2 refuses) is an error, never
/// an empty listing: checks that a filter is gone must not pass on a tc
/// that did not run.
pub fn tc_filter_listing(netns: &str, dev: &str, hook: &str) -> anyhow::Result<String> {
    output(
        "ip",
        &[
            "netns", "exec", netns, "tc", "filter", "show", "dev", dev, hook,
        ],
    )
    .with_context(|| format!("tc filter show dev {dev} {hook} in {netns}"))
}

/// The ids of the programs of the cls_bpf filters running `program` in
/// `listing` (`tc filter show`: `... bpf ... NAME ... id ID ...`).
pub fn cls_bpf_program_ids(listing: &str, program: &str) -> Vec<u32> {
    listing
        .lines()
        .filter(|l| l.contains(" bpf ") && l.contains(program))
        .filter_map(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "id")
                .nth(1)
                .and_then(|id| id.parse().ok())
        })
        .collect()
}

/// The ids of a tcx query's programs; a kernel that does not know the
/// tcx attach type (EINVAL) has none.
fn tcx_ids(
    queried: Result<Vec<aya::programs::ProgramInfo>, aya::programs::ProgramError>,
) -> anyhow::Result<Vec<u32>> {
    match queried {
        Ok(programs) => Ok(programs
            .iter()
            .map(aya::programs::ProgramInfo::id)
            .collect()),
        Err(aya::programs::ProgramError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::EINVAL) =>
        {
            Ok(Vec::new())
        }
        Err(error) => Err(error.into()),
    }
}

/// GET `url` from inside `netns`: (status, body).
pub fn http_get(netns: &str, url: &str) -> anyhow::Result<(u16, String)> {
    let url = url.to_owned();
    in_netns(netns, move || -> anyhow::Result<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut response = agent.get(&url).call()?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    })?
}

/// Runs lbctl (next to lbd) against the lbd listening on `socket`.
pub fn lbctl_at(socket: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let lbctl = lbd_binary()?.with_file_name("lbctl");
    Ok(Command::new(lbctl)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()?)
}

/// `lbctl status --json` of the lbd listening on `socket`.
pub fn status_at(socket: &Path) -> anyhow::Result<lb_userspace::api::schema::Status> {
    let out = lbctl_at(socket, &["status", "--json"])?;
    if !out.status.success() {
        bail!("lbctl status: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The lbd binary: `$LBD_BIN`, or next to the test binary.
pub fn lbd_binary() -> anyhow::Result<PathBuf> {
    workspace_binary("lbd", "LBD_BIN", "lb-userspace")
}

/// Binary `name` of the workspace's package `package`: `$<env>`, or next
/// to the test binary (`target/<profile>/deps/<test>` ->
/// `target/<profile>/<name>`).
pub fn workspace_binary(name: &str, env: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .ok_or_else(|| anyhow!("cannot locate {name} next to {}", exe.display()))?;
    if !candidate.exists() {
        bail!(
            "{name} not found at {}: build it first (`cargo build -p {package} --bins`) or set {env}; `cargo xtask test` does both",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// Deletes network namespace `netns`, first killing whatever still runs
/// in it (a child of a stopped process: an nginx worker, a notify
/// script, which the namespace's deletion would leave running in a
/// namespace no name reaches), and the interface lock files its lbds
/// left in the node-wide lock directory (`/run/lbd`, named after the
/// namespace's inode: `lbd-xdp-<if>.net<ino>.lock`). lbd never deletes a
/// lock file (another lbd may be waiting on it), so without this every
/// lab would leave its files on the host; once the namespace's processes
/// are gone, nobody holds or waits on them.
pub fn delete_netns(netns: &str) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(pids) = output("ip", &["netns", "pids", netns]) {
        // Never this process (a runner whose main thread entered the
        // namespace is listed in it).
        let this = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            if pid != this {
                // SAFETY: plain kill(2) on a process of the lab's namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let inode = fs::metadata(Path::new("/run/netns").join(netns)).map(|m| m.ino());
    let _ = run("ip", &["netns", "del", netns]);
    let Ok(inode) = inode else {
        return;
    };
    let suffix = format!(".net{inode}.lock");
    let Ok(entries) = fs::read_dir("/run/lbd") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("lbd-xdp-") && name.ends_with(&suffix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Deletes what test processes that are gone left on the host (a run that
/// was killed before it could clean up): their network namespaces, killing
/// whatever still runs in them (lbd, nginx, lb-decap), the lock files
/// lbd left for those namespaces, the labs' scratch directories, and their
/// pin directories under [`BPFFS`]. Only names of the tests' own schemes
/// (see [`stale_owner`]) whose pid is not running are touched.
pub fn sweep_stale_labs() {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(list) = output("ip", &["netns", "list"]) {
        for netns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(owner) = stale_owner(netns, alive) else {
                continue;
            };
            delete_netns(netns);
            let _ = fs::remove_dir_all(std::env::temp_dir().join(owner.lab));
        }
    }
    // Also pins with no namespace (TestPins) or whose namespace is gone.
    if let Ok(entries) = fs::read_dir(BPFFS) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name
                .to_str()
                .is_some_and(|n| stale_owner(n, alive).is_some())
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Prefixes [`TestPins`] accepts: each test file's, followed by the pid
/// and `-<tag>`. Listed so that the sweep knows them for the tests' own.
const TEST_PIN_PREFIXES: &[&str] = &[
    "lbtct", "lbtnc", "lbtvi", "lbidle", "lbtnat", "lbtbw", "lbtbr", "lbtho",
];

/// A name of one of the tests' schemes, split into what the sweep needs.
#[derive(Debug, PartialEq, Eq)]
struct Owner<'a> {
    /// The pid of the test process that made it.
    pid: u32,
    /// The name's lab part: the name of the lab's scratch directory under
    /// the temporary directory (when the scheme has one).
    lab: &'a str,
}

/// The owner of `name` if it is a name of the tests' own schemes and its
/// pid is not `alive`; `None` for a live process's name and for any name
/// the tests do not make. The schemes (the pid right after the prefix):
/// - `lbt<pid>n<seq>-<host>`: the lab's namespaces and lbd pins
///   ([`super::Lab`], the NAT bed's `-natfib`);
/// - `t2-<pid>-<n>-<what>`: the decap lab's namespaces and its lb-decap's
///   pins (`-decap`);
/// - `lbk<pid>-<tag>`: lb-decap's own labs (its `concurrent_apply` and
///   status tests, the chain lab of `decap_lab.rs`), namespaces and pins;
/// - `<prefix><pid>-<tag>`, a prefix of [`TEST_PIN_PREFIXES`]: [`TestPins`].
fn stale_owner(name: &str, alive: impl Fn(u32) -> bool) -> Option<Owner<'_>> {
    let owner = owner(name)?;
    (!alive(owner.pid)).then_some(owner)
}

/// [`stale_owner`]'s parsing: the owner of `name`, alive or not.
fn owner(name: &str) -> Option<Owner<'_>> {
    /// The pid at the start of `s` and what follows it.
    fn pid(s: &str) -> Option<(u32, &str)> {
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        Some((s[..digits].parse().ok()?, &s[digits..]))
    }
    /// `s` without a leading sequence number.
    fn seq(s: &str) -> Option<&str> {
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        (digits > 0).then_some(&s[digits..])
    }
    // `name` up to `rest`, when `rest` is `-` and more (the tag).
    let lab = |rest: &str| {
        (rest.len() > 1 && rest.starts_with('-')).then(|| &name[..name.len() - rest.len()])
    };
    if let Some(after) = name.strip_prefix("lbt") {
        if let Some((pid, rest)) = pid(after) {
            let rest = seq(rest.strip_prefix('n')?)?;
            return Some(Owner {
                pid,
                lab: lab(rest)?,
            });
        }
    }
    if let Some(after) = name.strip_prefix("t2-") {
        let (pid, rest) = pid(after)?;
        let rest = seq(rest.strip_prefix('-')?)?;
        return Some(Owner {
            pid,
            lab: lab(rest)?,
        });
    }
    TEST_PIN_PREFIXES.iter().chain(&["lbk"]).find_map(|prefix| {
        let (pid, rest) = pid(name.strip_prefix(prefix)?)?;
        Some(Owner {
            pid,
            lab: lab(rest)?,
        })
    })
}

/// Where the labs' lbds pin their data planes: a BPF filesystem of its
/// own, outside /sys, because `ip netns exec` mounts a fresh /sys for the
/// process it runs (a pin under /sys/fs/bpf would vanish with lbd).
pub const BPFFS: &str = "/run/lbt-bpffs";

/// Mounts the labs' BPF filesystem if it is not mounted yet.
pub fn ensure_bpffs() -> anyhow::Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(BPFFS) && l.contains(" bpf "))
    {
        return Ok(());
    }
    fs::create_dir_all(BPFFS)?;
    run("mount", &["-t", "bpf", "bpf", BPFFS])
}

/// A pin directory of this test process under the labs' BPF filesystem,
/// named by `prefix` (the test file's) and `tag` (the test's), fresh at
/// creation and removed with what is in it when dropped, also when an
/// assertion fails.
pub struct TestPins {
    dir: std::path::PathBuf,
}

impl TestPins {
    /// A fresh pin directory `<prefix><pid>-<tag>`; `prefix` must be one
    /// of [`TEST_PIN_PREFIXES`], so that a killed run's directory is swept.
    pub fn new(prefix: &str, tag: &str) -> anyhow::Result<Self> {
        if !TEST_PIN_PREFIXES.contains(&prefix) {
            bail!(
                "pin prefix {prefix:?} is not in TEST_PIN_PREFIXES (tests/src/lab/host.rs): \
                 add it there so that sweep_stale_labs removes what a killed run left"
            );
        }
        ensure_bpffs()?;
        let dir = Path::new(BPFFS).join(format!("{prefix}{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Ok(Self { dir })
    }

    /// lbd's view of the directory.
    pub fn pins(&self) -> lb_userspace::pinning::PinDir {
        lb_userspace::pinning::PinDir::new(&self.dir)
    }
}

impl Drop for TestPins {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes the pin directories of lab `prefix` (lbd leaves its data plane
/// pinned when stopped with SIGTERM or killed): unpinning the link and the
/// maps frees them.
pub fn remove_pins(prefix: &str) {
    let Ok(entries) = fs::read_dir(BPFFS) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{prefix}-"))
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Pin directories of lab `prefix` that still exist (empty after drop;
/// also when [`BPFFS`] is not there at all). Any other failure to read
/// it is an error, never "none left": a teardown check must not pass on
/// a directory it could not read.
pub fn pins_with_prefix(prefix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(BPFFS) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {BPFFS}")),
    };
    let mut pins = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {BPFFS}"))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{prefix}-"))
        {
            pins.push(entry.path());
        }
    }
    Ok(pins)
}

/// Namespaces of this lab that still exist (empty after drop). A failing
/// `ip netns list` is an error, never "none left".
pub fn namespaces_with_prefix(prefix: &str) -> anyhow::Result<Vec<String>> {
    Ok(output("ip", &["netns", "list"])
        .context("listing the network namespaces")?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_owned)
        .collect())
}

pub(super) fn ip(netns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Makes `ifname` in `netns` take its packets in NAPI, one batch at a
/// time on one CPU, as a NIC's receive queue does, and keeps it from
/// pushing the next veth off NAPI: GRO on (a veth's NAPI) and TSO off (a
/// veth hands a TSO-capable sender's forwarded packets to `netif_rx` on
/// the sending CPU instead). Every end of every leg gets this, because a
/// single hop on `netif_rx` breaks a flow's order: a hop queues a packet
/// on the backlog of whichever CPU sent it, and a NAPI poll upstream (the
/// LB's XDP, a router's receive) runs on whichever CPU scheduled it, so
/// two packets of one flow can sit on two CPUs' backlogs and drain in
/// parallel. Seen as reordering on NAT mode's return path (spurious fast
/// retransmits, `TCPDSACKUndo` at the backends, `TCPOFOQueue` at the
/// client) before every hop had this. On a host's own leg it also fixes
/// the accept race: without it, two packets of one connection sent from
/// different CPUs (the client's handshake ACK from a softirq, its request
/// from the woken task) reach the host's TCP at the same time, and the
/// kernel's lockless lookup can miss the socket while the other CPU turns
/// the request socket into the connection: the request then meets the
/// listener, which answers with a reset (`tcp_send_reset`
/// state=TCP_LISTEN reason=TCP_FLAGS, seen on Linux 6.18). RPS would also
/// keep a flow on one CPU, but its cross-CPU interrupts cost a VM a sixth
/// of the lab's CPU (and it broke the routed lab's IPv6 reachability
/// check).
pub(super) fn receive_like_a_nic(netns: &str, ifname: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &[
            "netns", "exec", netns, "ethtool", "-K", ifname, "tso", "off", "gro", "on",
        ],
    )
    .with_context(|| format!("GRO on, TSO off on {ifname} in {netns}"))
}

/// Sets sysctl `key` to `value` inside `netns`.
pub(crate) fn sysctl(netns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &[
            "netns",
            "exec",
            netns,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ],
    )
}

/// Runs `program` with `args`; an error carries its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    output(program, args).map(drop)
}

/// `program`'s stdout; an error carries its stderr.
pub(crate) fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::{owner, stale_owner, tcx_ids, Owner};

    /// A kernel before 6.6 answers the tcx query with EINVAL: lbd's
    /// start-up wait (`cargo xtask demo` on Debian 12's kernel) goes on
    /// polling for its XDP program instead of failing.
    #[test]
    fn a_kernel_without_tcx_has_no_tcx_programs() {
        let einval = aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
            call: "bpf_prog_query",
            io_error: std::io::Error::from_raw_os_error(libc::EINVAL),
        });
        assert!(tcx_ids(Err(einval)).expect("no tcx: none").is_empty());
        let enodev = aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
            call: "bpf_prog_query",
            io_error: std::io::Error::from_raw_os_error(libc::ENODEV),
        });
        assert!(tcx_ids(Err(enodev)).is_err(), "other errors are errors");
    }

    /// The sweep takes the names the tests make with a dead pid in them,
    /// and leaves a live process's and every name the tests do not make.
    #[test]
    fn the_sweep_takes_only_the_tests_names_of_dead_pids() {
        let alive = |pid: u32| pid == 77;
        for (name, lab) in [
            ("lbt123n0-lb", "lbt123n0"),
            ("lbt123n4-client", "lbt123n4"),
            ("lbt123n9000-natfib", "lbt123n9000"),
            ("t2-123-0-lb", "t2-123-0"),
            ("t2-123-11-be", "t2-123-11"),
            ("t2-123-0-decap", "t2-123-0"),
            ("lbk123-tx", "lbk123"),
            ("lbk123-decap", "lbk123"),
            ("lbk123-apply-many", "lbk123"),
            ("lbtct123-busy", "lbtct123"),
            ("lbtnc123-restart", "lbtnc123"),
            ("lbtvi123-v4-Xdp", "lbtvi123"),
            ("lbidle123-syn-Tc", "lbidle123"),
            ("lbtnat123-reclaim", "lbtnat123"),
            ("lbtbw123-busy", "lbtbw123"),
            ("lbtbr123-reclaim", "lbtbr123"),
            ("lbtho123-syn-Xdp", "lbtho123"),
        ] {
            assert_eq!(
                stale_owner(name, alive),
                Some(Owner { pid: 123, lab }),
                "{name}"
            );
            // The same name of a live process is left.
            let live = name.replacen("123", "77", 1);
            assert_eq!(owner(&live).map(|o| o.pid), Some(77), "{live}");
            assert_eq!(stale_owner(&live, alive), None, "{live}");
        }
        for name in [
            // Not the tests' schemes.
            "lbd",
            "blue",
            "cni-1234-5678",
            "netns123-x",
            "t3-123-0-lb",
            "xlbt123n0-lb",
            "lbtx123-tag",
            "lbtcx123-tag",
            // The schemes' prefixes without a pid, a sequence or a tag.
            "lbt",
            "lbt-123",
            "lbtn0-lb",
            "lbt123-lb",
            "lbt123n-lb",
            "lbt123n0",
            "lbt123n0-",
            "lbt123x0-lb",
            "t2-",
            "t2-pins-123",
            "t2-123-lb",
            "t2-123-0",
            "lbk",
            "lbk-123",
            "lbk123",
            "lbk123x-tag",
            "lbtct-busy",
            "lbtnc123",
            "lbidle123_x",
            // A pid no process can have.
            "lbk99999999999-tag",
        ] {
            assert_eq!(owner(name), None, "{name}");
            assert_eq!(stale_owner(name, |_| false), None, "{name}");
        }
    }

    /// A tc that fails (here: no such namespace) is an error, not the
    /// empty listing of "no filter there".
    #[test]
    fn a_failing_tc_is_an_error_not_an_empty_listing() {
        let error = super::tc_filter_listing("lbt-no-such-netns", "eth0", "ingress")
            .expect_err("a tc that did not run lists nothing")
            .to_string();
        assert!(error.contains("tc filter show dev eth0 ingress"), "{error}");
    }

    /// A tcx query that cannot run (no such namespace) is an error, not
    /// "no programs".
    #[test]
    fn a_failing_tcx_egress_query_is_an_error_not_no_programs() {
        assert!(super::tcx_egress_ids("lbt-no-such-netns", "lo").is_err());
    }

    /// The filter ids are read from `tc filter show`'s lines of the named
    /// program only.
    #[test]
    fn cls_bpf_program_ids_reads_the_named_programs_ids() {
        let listing = "filter protocol all pref 50000 bpf chain 0 \n\
            filter protocol all pref 50000 bpf chain 0 handle 0x2 tc_hc_encap direct-action not_in_hw id 41 name tc_hc_encap tag 0 jited \n\
            filter protocol all pref 49152 bpf chain 0 handle 0x1 tc_lb direct-action not_in_hw id 7 name tc_lb tag 0 jited \n";
        assert_eq!(super::cls_bpf_program_ids(listing, "tc_hc_encap"), vec![41]);
        assert_eq!(super::cls_bpf_program_ids(listing, "tc_lb"), vec![7]);
        assert!(super::cls_bpf_program_ids("", "tc_lb").is_empty());
    }

    /// TestPins refuses a prefix the sweep would not know.
    #[test]
    fn test_pins_take_only_prefixes_the_sweep_knows() {
        let error = super::TestPins::new("lbtzz", "tag")
            .err()
            .expect("an unknown prefix is refused")
            .to_string();
        assert!(error.contains("TEST_PIN_PREFIXES"), "{error}");
    }
}
