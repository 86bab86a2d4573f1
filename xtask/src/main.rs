//! `cargo xtask`: everything beyond plain cargo, one file per subcommand.

mod bench;
mod build;
mod cmd;
mod demo;
mod fuzz;
mod lint;
mod package;
mod run;
mod setup;
mod signals;
mod test;

use clap::{Parser, Subcommand};

/// Project tasks for the XDP load balancer.
#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent, quick when done):
    /// nightly rust-src, bpf-linker, Debian packages.
    Setup,
    /// Build the eBPF objects lbd and lb-decap embed (lb-ebpf, lb-decap-ebpf;
    /// as their build scripts do, in target/ebpf) and print their paths.
    BuildEbpf,
    /// Build lbd, lbctl and lb-decap (release), with their eBPF objects embedded.
    Build,
    /// Build and run lbd on this node: `cargo xtask run -- --config FILE`.
    Run(run::Args),
    /// Set up, build, and run the demo lab: a client, lbd and three nginx
    /// backends in network namespaces.
    Demo(demo::Args),
    /// Set up, then run the whole test suite (needs root).
    Test(test::Args),
    /// Run the benchmarks and regenerate BENCHMARKS.md (needs root).
    Bench(bench::Args),
    /// rustfmt check and clippy with warnings denied.
    Lint,
    /// Build the Debian package (target/package/lbd_VERSION_ARCH.deb, under
    /// $CARGO_TARGET_DIR when that is set);
    /// `--check` also installs, checks and purges it here (needs root).
    Package(package::Args),
    /// Run the cargo-fuzz targets for a bounded time each (needs root for
    /// the `packet` target); fails on any crash.
    Fuzz(fuzz::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::BuildEbpf => build::build_ebpf().map(|paths| {
            for path in paths {
                println!("{}", path.display());
            }
        }),
        Task::Build => build::build_release(),
        Task::Run(args) => run::run(&args),
        Task::Demo(args) => demo::run(&args),
        Task::Test(args) => test::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Lint => lint::run(),
        Task::Fuzz(args) => fuzz::run(&args),
        Task::Package(args) => package::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            error.downcast_ref::<signals::Interrupted>().map_or(
                std::process::ExitCode::FAILURE,
                signals::Interrupted::exit_code,
            )
        }
    }
}
