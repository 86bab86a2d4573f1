//! What the router's kernel does with the VIPs: the next hops of the
//! route BIRD installed (`ip -j route show`), and which next hop one flow
//! takes (`ip -j route get ... iif ... ipproto tcp sport ... dport ...`,
//! which runs the kernel's own multipath hash over the flow's ports).

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use serde_json::Value;

use crate::lab::{output, HTTP_PORT};

/// The next hops of the route for `vip` in `netns`'s main table (empty
/// when there is none), sorted.
pub fn next_hops(netns: &str, vip: IpAddr) -> anyhow::Result<Vec<IpAddr>> {
    let family = if vip.is_ipv4() { "-4" } else { "-6" };
    let text = output(
        "ip",
        &[
            "-n",
            netns,
            family,
            "-j",
            "route",
            "show",
            "exact",
            &vip.to_string(),
        ],
    )?;
    parse_next_hops(&text).with_context(|| format!("route of {vip} in {netns}: {text}"))
}

/// The next hops in `ip -j route show`'s output: one route's `gateway`, or
/// a multipath route's `nexthops[].gateway`.
fn parse_next_hops(text: &str) -> anyhow::Result<Vec<IpAddr>> {
    let routes: Vec<Value> = if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(text).context("parsing ip -j output")?
    };
    let mut hops = Vec::new();
    for route in &routes {
        let gateways: Vec<&Value> = match route.get("nexthops").and_then(Value::as_array) {
            Some(list) => list.iter().filter_map(|h| h.get("gateway")).collect(),
            None => route.get("gateway").into_iter().collect(),
        };
        for gateway in gateways {
            let text = gateway.as_str().context("gateway is not a string")?;
            hops.push(text.parse().with_context(|| format!("gateway {text}"))?);
        }
    }
    hops.sort();
    Ok(hops)
}

/// The next hop the router in `netns` picks for the TCP flow from
/// `client` to `vip`'s HTTP port arriving on `iif`, or None without a
/// route.
pub fn next_hop_of_flow(
    netns: &str,
    iif: &str,
    client: SocketAddr,
    vip: IpAddr,
) -> anyhow::Result<Option<IpAddr>> {
    let family = if vip.is_ipv4() { "-4" } else { "-6" };
    let out = std::process::Command::new("ip")
        .args(["-n", netns, family, "-j", "route", "get"])
        .arg(vip.to_string())
        .args(["from", &client.ip().to_string(), "iif", iif])
        .args(["ipproto", "tcp", "sport", &client.port().to_string()])
        .args(["dport", &HTTP_PORT.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .context("starting ip route get")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // No route (every node withdrawn): the kernel says unreachable.
        // Anything else is an error, not a flow without a node.
        if stderr.contains("unreachable") || stderr.contains("No route") {
            return Ok(None);
        }
        anyhow::bail!("ip route get {vip} from {client}: {}", stderr.trim());
    }
    let routes: Vec<Value> = serde_json::from_slice(&out.stdout).context("parsing ip -j")?;
    Ok(routes
        .first()
        .and_then(|r| r.get("gateway"))
        .and_then(Value::as_str)
        .and_then(|g| g.parse().ok()))
}

/// The neighbours of the sessions in state Up in `birdc show bfd
/// sessions`' output (`ADDRESS INTERFACE STATE SINCE INTERVAL TIMEOUT`),
/// sorted.
pub fn bfd_up(text: &str) -> Vec<IpAddr> {
    let mut up: Vec<IpAddr> = text
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let address = words.first()?.parse().ok()?;
            (words.get(2) == Some(&"Up")).then_some(address)
        })
        .collect();
    up.sort();
    up
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfd_sessions_up_are_read_from_birdc() {
        let text = "BIRD 2.0.12 ready.\nbfd1:\nIP address                Interface  State      Since         Interval  Timeout\n2001:2::3                 eth1       Up         17:07:55.244    0.100    0.300\n198.18.0.2                eth1       Up         17:07:55.915    0.100    0.300\n198.18.0.4                eth1       Down       17:07:54.237    1.000    0.000\n";
        assert_eq!(
            bfd_up(text),
            vec![
                "198.18.0.2".parse::<IpAddr>().expect("a"),
                "2001:2::3".parse().expect("a")
            ]
        );
    }

    #[test]
    fn single_and_multipath_routes_give_their_gateways() {
        let multipath = r#"[{"dst":"198.18.0.100","protocol":"bird","metric":32,"flags":[],"nexthops":[{"gateway":"198.18.0.3","dev":"eth1","weight":1,"flags":[]},{"gateway":"198.18.0.2","dev":"eth1","weight":1,"flags":[]}]}]"#;
        assert_eq!(
            parse_next_hops(multipath).expect("parse"),
            vec![
                "198.18.0.2".parse::<IpAddr>().expect("a"),
                "198.18.0.3".parse().expect("a")
            ]
        );
        let single = r#"[{"dst":"2001:2::100","gateway":"2001:2::4","dev":"eth1","protocol":"bird","metric":32,"flags":[],"pref":"medium"}]"#;
        assert_eq!(
            parse_next_hops(single).expect("parse"),
            vec!["2001:2::4".parse::<IpAddr>().expect("a")]
        );
        assert!(parse_next_hops("").expect("parse").is_empty());
        assert!(parse_next_hops("[]").expect("parse").is_empty());
        assert!(parse_next_hops("[{\"gateway\": 3}]").is_err());
    }
}
