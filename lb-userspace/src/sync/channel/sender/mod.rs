//! The master's side: a `Sender` keeps a connection to one backup
//! (reconnecting with backoff) and streams the batches it is given through
//! its queue. It offers the highest protocol version it speaks, and the
//! version a backup of an earlier release answers with after that one
//! refused it ([`Offer`]). Closed ([`Sender::close`], or dropped), it
//! hands the peer everything written before the connection goes.
//!
//! Its files: the [`Sender`] handle the daemon holds (`handle`), how the
//! batches it is given enter its queue (`enqueue`), the state it shares
//! with its task (`shared`), and the task: its reconnect loop (`task`),
//! one connection attempt (`attempt`), the TCP connect and handshake
//! (`connect`), the version it offers (`offer`) and its reconnect delay
//! (`backoff`).

mod attempt;
mod backoff;
mod connect;
mod enqueue;
mod handle;
mod offer;
mod shared;
mod task;

pub(super) use backoff::Backoff;
pub(crate) use enqueue::{Dump, Read};
pub use handle::{Closed, Sender};
pub(super) use offer::Offer;
