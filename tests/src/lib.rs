//! Test support for the load balancer: crafted packets, a BPF_PROG_TEST_RUN
//! bed around the real XDP object, and a lab of network namespaces with
//! real nginx backends that cleans up after itself; the checks behind the
//! fuzz targets and the reference parser that judges the data plane; the
//! helpers the integration tests share (HTTP over plain sockets reading
//! what nginx saw, the tunnel lab's lb-decap and lbd configs); PostgreSQL,
//! PgBouncer and pgbench for the database scenario; BIRD and the
//! active-active lab (a BIRD router with ECMP in front of lbd nodes that
//! each run BIRD).
pub mod bench;
pub mod bgplab;
pub mod bird;
pub mod client;
pub mod corpus;
pub mod craft;
pub mod decapbed;
pub mod decaplab;
pub mod floodrun;
pub mod fuzz;
pub mod http;
pub mod lab;
pub mod lbd_maps;
#[cfg(test)]
mod maglev_oracle;
pub mod natbed;
pub mod oracle;
pub mod packet;
pub mod packet_socket;
pub mod postgres;
pub mod router_swap;
pub mod shares;
pub mod support;
pub mod synflood;
pub mod testbed;
pub mod topology;
pub mod tunnel;
pub mod tunnelbed;
