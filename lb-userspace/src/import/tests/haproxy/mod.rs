//! HAProxy, alone and with keepalived: one module per concern, the guide's
//! files (shared with the other formats' tests) here.

mod balance;
mod binds;
mod forwarding;
mod grammar;
mod guide;
mod health;
mod health_body;
mod health_rules;
mod health_tls;
mod proxies;
mod servers;
mod slow_start;
mod tls;

use super::*;

/// The keepalived + HAProxy pair of the usual guide: node A's files.
pub(super) const HAPROXY: &str = "global
    log /dev/log local0
    maxconn 4096
    daemon

defaults
    mode http
    option httplog
    timeout connect 1s
    timeout client 50s

frontend http_front
    bind *:80
    default_backend web_servers

backend web_servers
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    server web1 198.18.0.11:80 check inter 2s rise 2 fall 3
    server web2 198.18.0.12:80 check inter 2s rise 2 fall 3 weight 2
    server web3 198.18.0.13:80 check inter 500ms fall 2 backup
";

pub(super) const KEEPALIVED: &str = "! Configuration File for keepalived
global_defs {
   router_id LB1
}

vrrp_script chk_haproxy {
    script \"killall -0 haproxy\"
    interval 2
    weight 2
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 101
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass 1111
    }
    virtual_ipaddress {
        198.18.0.100/24 dev eth0
    }
    track_script {
        chk_haproxy
    }
}
";
