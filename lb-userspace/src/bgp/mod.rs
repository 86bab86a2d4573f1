//! Active-active announcement through BIRD: lbd keeps the routes BIRD
//! announces over BGP equal to the VIP addresses this node can serve
//! ([`announce`] decides, [`announcer`] drives), by rewriting a file BIRD
//! includes ([`routes_file`]) and asking BIRD to re-read its config over
//! its control socket ([`bird`]), which also says which BGP sessions are
//! Established and export lbd's routes ([`sessions`]). A stop that withdrew forwards on while
//! the routers move the node's flows ([`converge`]). Sessions, timers,
//! BFD and policy stay BIRD's, configured by the operator.

pub mod announce;
pub mod announcer;
pub(crate) mod bird;
pub(crate) mod converge;
pub(crate) mod routes_file;
pub mod sessions;

pub use announce::{NodeState, Opened, Withheld};
pub use announcer::{AddressExports, BgpStatus, StartupStatus, WithheldAddress};
pub use sessions::BgpSession;
