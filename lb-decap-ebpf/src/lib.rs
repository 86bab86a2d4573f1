//! Empty on purpose: this library target only lets lb-decap depend on this
//! crate at build time, so cargo rebuilds the decap object when it changes.
//! The programs are `main.rs`, built for bpfel-unknown-none.
#![no_std]
