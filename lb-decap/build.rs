//! Builds the decap object (lb-decap-ebpf) for bpfel-unknown-none and puts
//! it in OUT_DIR for `object.rs` to embed (see lb-build).

fn main() {
    // The version the binaries say (`--version`): the commit's too.
    if let Err(message) = lb_build::emit_version() {
        eprintln!("error: reading the package's version:\n{message}");
        std::process::exit(1);
    }
    if let Err(message) = lb_build::build_ebpf("lb-decap-ebpf") {
        eprintln!("error: building the decap object failed:\n{message}");
        std::process::exit(1);
    }
}
