//! keepalived: VRRP instances and IPVS virtual servers, one module per
//! concern; the setups shared by several of them here.

mod checkers;
mod files;
mod forwarding;
mod guide;
mod persistence;
mod preemption;
mod schedulers;
mod tracking;
mod virtual_servers;
mod vrrp;

use super::*;

/// An IPVS setup as the keepalived guides write it: a DR service with TCP
/// checks, a NAT one with HTTP checks, and the VRRP instance moving both.
pub(super) const IPVS: &str = "vrrp_instance VI_1 {
    state BACKUP
    interface eth1
    virtual_router_id 60
    priority 90
    advert_int 0.1
    nopreempt
    preempt_delay 30
    unicast_src_ip 198.18.0.2
    unicast_peer {
        198.18.0.3
    }
    virtual_ipaddress {
        198.18.0.100
        198.18.0.101
    }
    track_interface {
        eth1 weight -30
        eth2
    }
    notify /etc/keepalived/notify.sh
}

virtual_server 198.18.0.100 80 {
    delay_loop 6
    lb_algo wrr
    lb_kind DR
    persistence_timeout 50
    protocol TCP

    real_server 198.18.0.11 80 {
        weight 3
        TCP_CHECK {
            connect_timeout 3
            retry 2
            delay_before_retry 1
        }
    }
    real_server 198.18.0.12 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 3
        }
    }
}

virtual_server 198.18.0.101 53 {
    lb_kind TUN
    protocol UDP
    real_server 198.18.0.21 53 {
        weight 0
    }
}

virtual_server 198.18.0.100 8080 {
    delay_loop 10
    lb_kind NAT
    protocol TCP
    real_server 198.19.2.11 80 {
        HTTP_GET {
            url {
                path /status
                status_code 204
            }
            connect_timeout 2
            nb_get_retry 4
        }
    }
}
";

/// A VRRP instance moving 198.18.0.100 and .101, for the IPVS tests.
const INSTANCE: &str = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    198.18.0.100\n    198.18.0.101\n  }\n}\n";

/// Imports `files` as the keepalived of config id `config_id`.
fn as_node(files: &[(&str, &str)], config_id: Option<&str>) -> Result<Imported, ImportError> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(name, text)| Source {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        })
        .collect();
    super::super::import_with_config_id(&sources, &on_eth0(), config_id)
}
