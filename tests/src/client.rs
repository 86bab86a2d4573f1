//! The lab's HTTP client: bounded bursts of requests from the client
//! namespace, one new TCP connection per request, tallied by who answered.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use crate::lab::{in_netns, HTTP_PORT};

/// What a burst of requests produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Successful responses by body (each backend answers with its name).
    pub by_backend: BTreeMap<String, u64>,
    /// Requests that failed, with the first few errors.
    pub failed: u64,
    /// Up to five error messages.
    pub errors: Vec<String>,
}

impl Tally {
    /// Successful requests.
    pub fn succeeded(&self) -> u64 {
        self.by_backend.values().sum()
    }
}

/// Sends `count` GET requests for `/` to `address` from namespace `netns`,
/// each on a new connection, with a 5 s timeout each.
pub fn burst(netns: &str, address: IpAddr, count: u32) -> anyhow::Result<Tally> {
    let url = match address {
        IpAddr::V4(a) => format!("http://{a}:{HTTP_PORT}/"),
        IpAddr::V6(a) => format!("http://[{a}]:{HTTP_PORT}/"),
    };
    in_netns(netns, move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut tally = Tally::default();
        for _ in 0..count {
            // No "Connection: close": the client closes first, so its port
            // sits in TIME_WAIT and is not reused for another request of
            // the burst: one request, one connection, one 5-tuple.
            let result = agent
                .get(&url)
                .call()
                .and_then(|mut response| response.body_mut().read_to_string());
            match result {
                Ok(body) => *tally.by_backend.entry(body.trim().to_owned()).or_default() += 1,
                Err(error) => {
                    tally.failed += 1;
                    if tally.errors.len() < 5 {
                        tally.errors.push(error.to_string());
                    }
                }
            }
        }
        tally
    })
}
