//! `cargo xtask lint`: formatting and clippy, warnings denied: the host
//! crates, and the eBPF crates (lb-ebpf, lb-decap-ebpf, lb-ebpf-frame) for their own
//! target (they cannot build for the host); formatting of the fuzz crate;
//! and the host crates' docs as their developers read them (private items
//! included), warnings denied: a link that resolves to nothing, a stray
//! HTML tag.

use crate::cmd::{command, exec};

pub fn run() -> anyhow::Result<()> {
    crate::setup::run()?;
    exec(&mut command("cargo", &["fmt", "--all", "--check"]))?;
    // The fuzz crate is a workspace of its own (nightly, sanitizers): its
    // formatting only; its checks live in lb-tests, linted below.
    exec(&mut command(
        "cargo",
        &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--check"],
    ))?;
    exec(&mut command(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--exclude",
            "lb-ebpf",
            "--exclude",
            "lb-decap-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ))?;
    exec(&mut command(
        "cargo",
        &[
            &[crate::setup::PLUS_NIGHTLY, "clippy"],
            crate::build::EBPF_CRATE_ARGS,
            &["--", "-D", "warnings"],
        ]
        .concat(),
    ))?;
    // Links to private items resolve in these docs (they are built with
    // them), so only that lint is left out.
    exec(
        command(
            "cargo",
            &[
                "doc",
                "--workspace",
                "--exclude",
                "lb-ebpf",
                "--exclude",
                "lb-decap-ebpf",
                "--no-deps",
                "--document-private-items",
            ],
        )
        .env(
            "RUSTDOCFLAGS",
            "-D warnings -A rustdoc::private_intra_doc_links",
        ),
    )
}
