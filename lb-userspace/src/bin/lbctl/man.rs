//! `lbctl man DIR`: lbctl's man pages (lbctl.8 and one per subcommand,
//! lbctl-vip-add.8, ...), rendered from the same clap definitions as
//! `--help`; the Debian package ships them, and a by-hand install can
//! write them into /usr/local/share/man/man8.

use clap::CommandFactory as _;

/// Arguments of `lbctl man`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory to write the pages into (must exist).
    dir: std::path::PathBuf,
}

/// Writes the pages and lists them on stdout.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    for path in lb_manpage::write_pages(super::Cli::command(), &args.dir)? {
        outln!("{}", path.display());
    }
    Ok(())
}
