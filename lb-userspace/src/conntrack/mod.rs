//! The connection table as lbd sees it: which design backs it (`kind`),
//! the bucket tables mapped into this process and shared with the data
//! plane (`bucket_map`, also under the half-open and NAT tables), the
//! connection table's own operations on it (`table`), and the upgrade
//! from the kernel-map table of releases before it (`legacy`).

pub mod bucket_map;
pub mod kind;
pub mod legacy;
pub mod table;
