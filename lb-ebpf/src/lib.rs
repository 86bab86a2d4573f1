//! Empty on purpose: this library target only lets lb-userspace depend on
//! this crate at build time, so cargo rebuilds the XDP object when it
//! changes. The program itself is `main.rs`, built for bpfel-unknown-none.
#![no_std]
