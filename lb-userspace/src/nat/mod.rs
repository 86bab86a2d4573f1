//! NAT mode's side in lbd (docs/design/nat.md): the maps it reads and
//! writes (`maps`: the flow table in place as `table`, the VIPs' NAT
//! sources, the redirect targets), the reaper that frees quiet flows'
//! source ports (`reaper`), what lbd does about the data plane's routed
//! events (`events`), whether the node holds its NAT addresses (`held`),
//! and carrying flows over from a table this lbd does not adopt as it
//! is: an older release's, or one of another size (`legacy`).

pub mod events;
pub(crate) mod held;
pub(crate) mod legacy;

pub use legacy::{RESIZED_AGAIN_PIN, RESIZED_PIN};
pub mod maps;
pub mod reaper;
pub mod table;
