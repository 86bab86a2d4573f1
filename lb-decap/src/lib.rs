//! lb-decap, the backend side of tunnelled direct server return: a
//! configuration file (`config`) becomes the decap program's maps
//! (`maps`), the program is attached to the backend's interfaces and
//! pinned (`dataplane`, `pins`) so it keeps unwrapping across lb-decap's
//! own restarts (`owner` keeps a second lb-decap off a running one's
//! interfaces), and `status` reads it all back; `local` and `gro` check
//! the host for what would lose unwrapped packets. The binary (`main.rs`) is a
//! thin CLI over this library; the tests drive the same functions.

pub mod config;
pub mod dataplane;
pub mod gro;
pub mod interface;
pub mod link;
pub mod local;
mod lock;
pub mod maps;
pub mod object;
pub mod owner;
pub mod pins;
pub mod signals;
pub mod sources;
pub mod status;
pub mod watch;
