//! What the engine shows: the status view (model, maps and checks
//! together), a backend's flows, the running config, and where one flow
//! goes. Reads only.
//!
//! Each view the API asks for has a file of its own: `status` (and the
//! NAT table's part of it, `nat_status`), `vip_and_backend` (one VIP's
//! mode and config, one backend's state and flows), `config_dump` and
//! `explain_flow`.

mod config_dump;
mod explain_flow;
mod nat_status;
mod status;
mod vip_and_backend;
