//! Pairs and groups of nodes: keepalived and lbd's VRRP configs, links
//! going down, who holds the VIP, Prometheus scraping a node.

use super::*;

impl Lab {
    /// An lbd config for `node` in a VRRP pair: the IPv4 VIP with
    /// `backends`, one VRRP instance (VRID 51, 100 ms adverts) with this
    /// `priority` and `preempt`, and connection-table sync to `peer`.
    ///
    /// The VIP's HTTP checks give a backend 500 ms to answer and take it
    /// out after 3 failures in a row: no HA test measures how fast a check
    /// finds a backend gone (a closed port is still out within a second),
    /// and a loaded 2-core machine that delays two 100 ms probes must not
    /// take a healthy backend out, moving kept-alive flows or, with the
    /// VIP's last backend, lowering the node's priority by
    /// `track_no_backend` and moving the VIP.
    pub fn ha_config(
        &self,
        node: &Host,
        peer: &Host,
        backends: &[&str],
        priority: u8,
        preempt: bool,
    ) -> anyhow::Result<String> {
        let key = self.dir.join("sync.key");
        if !key.exists() {
            fs::write(&key, "lab-sync-key-0123456789abcdef\n")?;
        }
        let mut config = format!(
            "interface = \"eth0\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n\n[[vip]]\naddress = \"{VIP4}\"\nport = {HTTP_PORT}\n\
             [vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 1\nfall = 3\n",
            self.admin_socket_of(node).display()
        );
        for name in backends {
            if let Some(host) = self.backends.iter().find(|b| b.name == *name) {
                config.push_str(&format!(
                    "  [[vip.backend]]\n  address = \"{}\"\n",
                    host.ipv4
                ));
            }
        }
        config.push_str(&format!(
            "\n[[vrrp]]\nvrid = 51\npriority = {priority}\nadvert_interval_ms = 100\npreempt = {preempt}\n\
             announce_count = 3\n\
             sync_listen = \"{}:7540\"\nsync_peer = \"{}:7540\"\nsync_key_file = \"{}\"\n",
            node.ipv4,
            peer.ipv4,
            key.display()
        ));
        Ok(config)
    }

    /// Starts keepalived (VRRPv3, VRID 51, 100 ms adverts, the lab's IPv4
    /// VIP) on `node` as process `name`.
    pub fn start_keepalived(
        &mut self,
        node: &Host,
        name: &str,
        priority: u8,
        preempt: bool,
    ) -> anyhow::Result<u32> {
        self.start_keepalived_every(node, name, priority, preempt, "0.1")
    }

    /// `start_keepalived` with `advert_int` (seconds, as keepalived writes it).
    pub fn start_keepalived_every(
        &mut self,
        node: &Host,
        name: &str,
        priority: u8,
        preempt: bool,
        advert_int: &str,
    ) -> anyhow::Result<u32> {
        let config = format!(
            "global_defs {{\n  vrrp_version 3\n  router_id {name}\n  enable_script_security\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  \
             advert_int {advert_int}\n{}  virtual_ipaddress {{\n    {VIP4}/32\n  }}\n}}\n",
            if preempt { "" } else { "  nopreempt\n" }
        );
        self.start_keepalived_with(node, name, &config)
    }

    /// keepalived (VRRP only) on `node` as process `name`, reading
    /// `config` (written to its own directory of the lab).
    pub fn start_keepalived_with(
        &mut self,
        node: &Host,
        name: &str,
        config: &str,
    ) -> anyhow::Result<u32> {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir)?;
        let path = dir.join("keepalived.conf");
        fs::write(&path, config)?;
        let d = dir.display().to_string();
        self.spawn(
            name,
            &node.netns.clone(),
            "keepalived",
            &[
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "--vrrp",
                "--use-file",
                &path.to_string_lossy(),
                "--pid",
                &format!("{d}/keepalived.pid"),
                "--vrrp_pid",
                &format!("{d}/vrrp.pid"),
                "--checkers_pid",
                &format!("{d}/checkers.pid"),
            ],
        )
    }

    /// Takes `node`'s interface down or up (a node failure, as the segment
    /// sees it).
    pub fn set_link(&self, node: &Host, up: bool) -> anyhow::Result<()> {
        ip(
            &node.netns,
            &["link", "set", "eth0", if up { "up" } else { "down" }],
        )
    }

    /// Starts a Prometheus server on `node` scraping lbd's metrics there
    /// (127.0.0.1:9641) every second; its API listens on 127.0.0.1:9090 of
    /// that namespace. Returns once it is ready.
    pub fn start_prometheus(&mut self, node: &Host) -> anyhow::Result<()> {
        let dir = self.dir.join("prometheus");
        fs::create_dir_all(dir.join("data"))?;
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: lbd\n    static_configs:\n      - targets: ['127.0.0.1:9641']\n",
        )?;
        let netns = node.netns.clone();
        self.spawn(
            "prometheus",
            &netns,
            "prometheus",
            &[
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", dir.join("data").display()),
                "--web.listen-address=127.0.0.1:9090",
            ],
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_get(&netns, "http://127.0.0.1:9090/-/ready")
                .is_ok_and(|(status, _)| status == 200)
            {
                return Ok(());
            }
            if !self.is_running("prometheus") || Instant::now() > deadline {
                bail!(
                    "prometheus did not become ready:\n{}",
                    self.log("prometheus")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether `node` holds the lab's IPv4 VIP on its interface.
    pub fn holds_vip(&self, node: &Host) -> anyhow::Result<bool> {
        Ok(self.addresses_of(node)?.contains(&format!("{VIP4}/32")))
    }

    /// Runs lbctl against lbd on `node`.
    pub fn lbctl_on(&self, node: &Host, args: &[&str]) -> anyhow::Result<std::process::Output> {
        lbctl_at(&self.admin_socket_of(node), args)
    }

    /// The addresses on `eth0` of `node` (to see who holds a VIP).
    pub fn addresses_of(&self, node: &Host) -> anyhow::Result<String> {
        output(
            "ip",
            &["-n", &node.netns, "-br", "addr", "show", "dev", "eth0"],
        )
    }
}
