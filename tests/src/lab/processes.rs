//! The lab's processes: nginx on the backends, and whatever a test
//! spawns in a namespace (lbd, keepalived, ...), by name: logs, signals,
//! waits; all of them stopped with the lab.

use super::*;

impl Lab {
    /// Starts backend `name`'s nginx again after a test stopped it
    /// (`terminate("nginx-<name>")`).
    pub fn restart_nginx(&mut self, name: &str) -> anyhow::Result<()> {
        let process = format!("nginx-{name}");
        if self.is_running(&process) {
            bail!("{process} is still running");
        }
        self.processes.retain(|(n, _)| *n != process);
        let backend = self
            .backends
            .iter()
            .find(|b| b.name == name)
            .cloned()
            .ok_or_else(|| anyhow!("no backend {name}"))?;
        self.start_nginx(&backend)
    }

    pub(super) fn start_nginx(&mut self, backend: &Host) -> anyhow::Result<()> {
        let name = &backend.name;
        let port = self.backend_port();
        let dir = self.dir.join(format!("nginx-{name}"));
        fs::create_dir_all(&dir)?;
        let d = dir.display();
        // /slow streams 24 KiB at 4 KiB/s (a long-lived response).
        // X-Client: the peer nginx sees (NAT mode: the LB's NAT address).
        fs::write(dir.join("slow.bin"), vec![b'x'; 24 * 1024])?;
        let config = format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             server {{\n    listen {port} backlog=4096;\n    listen [::]:{port} backlog=4096;\n    \
             add_header X-Backend {name} always;\n    \
             add_header X-Client \"$remote_addr $remote_port\" always;\n    \
             location = /health {{ default_type text/plain; return 200 \"ok\\n\"; }}\n    \
             location = /slow {{ alias {d}/slow.bin; default_type application/octet-stream; limit_rate 4k; }}\n    \
             location / {{ default_type text/plain; return 200 \"{name}\\n\"; }}\n  }}\n}}\n"
        );
        let config_path = dir.join("nginx.conf");
        fs::write(&config_path, config)?;
        let config_path = config_path.to_string_lossy().into_owned();
        self.spawn(
            &format!("nginx-{name}"),
            &backend.netns,
            "nginx",
            &["-c", &config_path, "-p", &dir.to_string_lossy()],
        )?;
        Ok(())
    }

    /// Starts `program args` inside `netns`, output to `<dir>/<name>.log`;
    /// it is stopped when the lab drops. Returns its pid. A process of
    /// that name that has exited (a test stopped it) is forgotten, so the
    /// name stands for the new one.
    pub fn spawn(
        &mut self,
        name: &str,
        netns: &str,
        program: &str,
        args: &[&str],
    ) -> anyhow::Result<u32> {
        self.processes
            .retain_mut(|(n, child)| n != name || matches!(child.try_wait(), Ok(None)));
        let log = File::create(self.dir.join(format!("{name}.log")))?;
        let mut command = Command::new("ip");
        crate::support::with_signals_unblocked(&mut command);
        let child = command
            .args(["netns", "exec", netns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {program} in {netns}"))?;
        let pid = child.id();
        self.processes.push((name.to_owned(), child));
        Ok(pid)
    }

    /// The log of a process started with `spawn`.
    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Whether the process `name` is still running.
    pub fn is_running(&mut self, name: &str) -> bool {
        self.processes
            .iter_mut()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, child)| matches!(child.try_wait(), Ok(None)))
    }

    /// Names of the BPF programs process `name` holds loaded (its file
    /// descriptors' `prog_id` in /proc, named by bpftool), sorted: what a
    /// start verified, e.g. only its hook's balancer.
    pub fn programs_held_by(&mut self, name: &str) -> anyhow::Result<Vec<String>> {
        let pid = self.child(name)?.id();
        let fdinfo = format!("/proc/{pid}/fdinfo");
        let mut ids = Vec::new();
        for entry in fs::read_dir(&fdinfo).with_context(|| format!("reading {fdinfo}"))? {
            // A descriptor closed since the listing has no fdinfo left.
            let Ok(text) = fs::read_to_string(entry?.path()) else {
                continue;
            };
            ids.extend(
                text.lines()
                    .filter_map(|line| line.strip_prefix("prog_id:"))
                    .filter_map(|id| id.trim().parse::<u64>().ok()),
            );
        }
        let listing = output("bpftool", &["prog", "show", "--json"])?;
        let programs: serde_json::Value =
            serde_json::from_str(&listing).context("bpftool prog show --json")?;
        let mut names: Vec<String> = programs
            .as_array()
            .ok_or_else(|| anyhow!("bpftool prog show: not a list"))?
            .iter()
            .filter(|program| program["id"].as_u64().is_some_and(|id| ids.contains(&id)))
            .filter_map(|program| program["name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Sends SIGTERM to process `name` and waits up to 10 s for it to exit;
    /// returns its exit status.
    pub fn terminate(&mut self, name: &str) -> anyhow::Result<std::process::ExitStatus> {
        self.stop_with(name, libc::SIGTERM, "SIGTERM")
    }

    /// Sends `signal` to process `name` and waits up to 10 s for it to exit.
    fn stop_with(
        &mut self,
        name: &str,
        signal: i32,
        signal_name: &str,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.child(name)?;
        let pid = i32::try_from(child.id())?;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid, signal) };
        wait_exit(child, Duration::from_secs(10))
            .with_context(|| format!("{name} did not exit on {signal_name}"))
    }

    /// Sends SIGINT to process `name` (lbd: stop for good, detach, hand
    /// VRRP over) and waits up to 10 s for it to exit.
    pub fn interrupt(&mut self, name: &str) -> anyhow::Result<std::process::ExitStatus> {
        self.stop_with(name, libc::SIGINT, "SIGINT")
    }

    /// Kills process `name` with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let child = self.child(name)?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Waits up to `timeout` for process `name` to exit by itself.
    pub fn wait_exit(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        wait_exit(self.child(name)?, timeout)
    }

    fn child(&mut self, name: &str) -> anyhow::Result<&mut Child> {
        self.processes
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
            .ok_or_else(|| anyhow!("no process named {name}"))
    }

    /// Sends a signal to process `name`.
    pub fn signal(&mut self, name: &str, signal: i32) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child(name)?.id())?;
        // SAFETY: plain kill(2) on our own child.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("kill {pid}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Kills (SIGKILL) every process in `node`'s namespace: the node's
    /// software crashes at once.
    pub fn kill_all_in(&self, node: &Host) -> anyhow::Result<()> {
        let pids: Vec<i32> = output("ip", &["netns", "pids", &node.netns])?
            .lines()
            .filter_map(|p| p.trim().parse::<i32>().ok())
            .collect();
        // Stop them all first, so none runs between the kills (keepalived's
        // VRRP child gets SIGTERM when its parent dies and would otherwise
        // step down gracefully before its own SIGKILL arrives).
        for signal in [libc::SIGSTOP, libc::SIGKILL] {
            for pid in &pids {
                // SAFETY: plain kill(2) on a process of the lab's namespace.
                unsafe { libc::kill(*pid, signal) };
            }
        }
        Ok(())
    }
}
