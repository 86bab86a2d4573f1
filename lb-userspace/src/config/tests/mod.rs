//! Tests of config parsing and validation, one file per part of the
//! document; the sample documents and error helpers they share live here.
use super::*;

mod addresses;
mod admin_socket;
mod backends;
mod dump_round_trip;
mod health_body;
mod health_tables;
mod health_tls;
mod load_file;
mod log_settings;
mod node_settings;
mod replication;
mod toml_errors;
mod valid_documents;
mod vips;
mod vrrp_instances;

const EXAMPLE: &str = r#"# Interface the XDP program attaches to (required).
interface = "eth0"
# "auto" (default): native (driver) mode, falling back to generic with a warning; "native"; "generic".
xdp_mode = "auto"
# Connection table size (flows), default 262144, range 1024..=16777216.
conntrack_size = 262144

[[vip]]
address = "198.18.0.100"        # IPv4 or IPv6 (required)
port = 80                       # 1..=65535 (required)
protocol = "tcp"                # "tcp" (default) or "udp"
table_size = 65537              # Maglev table size, a prime, 3..=65537, default 65537

  [[vip.backend]]
  address = "198.18.0.11"       # required; same family as the VIP
  mac = "02:00:00:00:00:11"     # optional; when absent lbd resolves it from the neighbour table
  weight = 100                  # 0..=10000, default 100 (0 = takes no new flows)
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "lbd.toml")
}

/// The error text for `text`, failing the test if it parses.
fn error(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `text` fails with a message starting with `prefix` and containing `detail`.
fn assert_error(text: &str, prefix: &str, detail: &str) {
    let message = error(text);
    assert!(
        message.starts_with(prefix),
        "error {message:?} does not start with {prefix:?}"
    );
    assert!(
        message.contains(detail),
        "error {message:?} does not contain {detail:?}"
    );
}

/// A valid document with one IPv4 VIP; `vip_extra` and `backend_extra` are
/// appended to the VIP (line 4) and backend (line 8) tables.
fn doc(vip_extra: &str, backend_extra: &str) -> String {
    format!(
        "interface = \"eth0\"\n\
         [[vip]]\n\
         address = \"198.18.0.100\"\n\
         port = 80\n\
         {vip_extra}\n\
         [[vip.backend]]\n\
         address = \"198.18.0.11\"\n\
         {backend_extra}\n"
    )
}

/// Two VIPs of each family, one NAT VIP (NAT address 198.18.0.50) and
/// its backends, for the VRRP rules; `extra` is appended (from line 22).
fn vrrp_doc(extra: &str) -> String {
    format!(
        "interface = \"eth0\"\n\
         [nat]\n\
         source_ipv4 = \"198.18.0.50\"\n\
         [[vip]]\n\
         address = \"198.18.0.100\"\n\
         port = 80\n\
         forwarding = \"nat\"\n\
         [[vip.backend]]\n\
         address = \"198.18.1.11\"\n\
         [[vip]]\n\
         address = \"198.18.0.101\"\n\
         port = 80\n\
         [[vip.backend]]\n\
         address = \"198.18.0.12\"\n\
         [[vip]]\n\
         address = \"2001:2::100\"\n\
         port = 80\n\
         [[vip.backend]]\n\
         address = \"2001:2::12\"\n\
         \n\
         \n\
         {extra}"
    )
}
