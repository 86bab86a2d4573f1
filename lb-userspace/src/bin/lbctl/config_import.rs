//! `lbctl config import FILE...`: an existing keepalived + HAProxy or
//! nginx setup written as lbd.toml (see `lb_userspace::import`). The
//! result is loaded as lbd would load it before anything is written, so a
//! refused import leaves no file behind. Notes on what could not be
//! carried over are written to stderr, one a line (`file:line: text`), as
//! well as NOTE comments in the configuration, and after them lbd's own
//! warnings on the result (as `lbctl config check` prints them). `-o FILE` replaces an
//! existing file only with `--force` (it may hold the edits README asks
//! for after an import), never one of the inputs, and writes through a
//! temporary file renamed into place, so a failed write leaves no half
//! file.

use std::{
    fs,
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use lb_userspace::{
    api::client::ClientError,
    import::{self, Format, Options, Source, VipArg},
};

use crate::Failure;

/// Arguments of `lbctl config import`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The files of one node's setup: haproxy.cfg, keepalived.conf,
    /// nginx.conf (the format of each is recognised from its content).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Read every file as this format.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// A VIP for a service whose sources name no address (a wildcard bind
    /// without keepalived) or no port (an nginx upstream alone):
    /// ADDRESS[:PORT][/PROTOCOL]; repeat for several.
    #[arg(long = "vip", value_name = "ADDRESS:PORT/PROTOCOL")]
    vips: Vec<VipArg>,
    /// The interface lbd serves on (default: keepalived's `interface`).
    #[arg(long, value_name = "NAME")]
    interface: Option<String>,
    /// Forwarding mode of every VIP: dsr-l2, nat, ipip or gue (default:
    /// IPVS's lb_kind; for proxies dsr-l2 when the backends listen on the
    /// VIP's port, else nat).
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    forwarding: Option<lb_common::Mode>,
    /// NAT address of NAT-mode VIPs (`[nat] source_ipv4`/`source_ipv6`);
    /// give it twice, one of each family, for IPv4 and IPv6 VIPs.
    #[arg(long, value_name = "ADDRESS")]
    nat_source: Vec<IpAddr>,
    /// keepalived's config id (its `-i`/`--config-id`, by default the host
    /// name): which conditional lines (`@ID ...`, `@^ID ...`) of a shared
    /// keepalived.conf apply to this node. Without it such lines are
    /// refused.
    #[arg(long, value_name = "ID")]
    config_id: Option<String>,
    /// Write the configuration to FILE instead of standard output. An
    /// existing FILE is not replaced without --force, and FILE may not be
    /// one of the files imported.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace FILE of -o when it exists (edits made to it since an
    /// earlier import are lost).
    #[arg(long, requires = "output")]
    force: bool,
}

fn parse_mode(text: &str) -> Result<lb_common::Mode, String> {
    lb_common::Mode::ALL
        .into_iter()
        .find(|m| m.name() == text)
        .ok_or_else(|| format!("{text:?} is not one of dsr-l2, nat, ipip, gue"))
}

/// Runs the import.
pub(crate) fn run(args: &Args) -> Result<(), Failure> {
    // Refused before anything is read or written.
    if let Some(output) = &args.output {
        check_output(output, &args.files, args.force)?;
    }
    let mut sources = Vec::new();
    for path in &args.files {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        sources.push(Source {
            name: path.display().to_string(),
            text,
        });
    }
    let options = Options {
        format: args.format,
        vips: args.vips.clone(),
        interface: args.interface.clone(),
        forwarding: args.forwarding,
        nat_source: args.nat_source.clone(),
    };
    let imported = import::import_with_config_id(&sources, &options, args.config_id.as_deref())
        .map_err(|e| Failure::new(ClientError::EXIT_USAGE, e.to_string()))?;
    match &args.output {
        Some(path) => {
            write_output(path, &imported.text)?;
            eprintln!(
                "lbctl: wrote {} ({} VIP(s), {} VRRP instance(s))",
                path.display(),
                imported.config.vips.len(),
                imported.config.vrrp.len()
            );
        }
        None => out!("{}", imported.text),
    }
    eprint!("{}", notes_report(&imported.notes));
    eprint!(
        "{}",
        warnings_report(&lb_userspace::config::warnings(&imported.config))
    );
    Ok(())
}

/// lbd's own warnings on the configuration written (those `lbctl config
/// check` prints and lbd logs at start-up: a VIP whose backends all have
/// weight 0 drops every new flow), one a line: the import's notes say
/// what the sources lose, these what the result does, which the operator
/// otherwise learned only from the next check.
fn warnings_report(warnings: &[lb_userspace::config::Warning]) -> String {
    warnings
        .iter()
        .map(|w| format!("lbctl: warning: {}\n", one_line(&w.to_string())))
        .collect()
}

/// Refuses `-o output` when it is one of the `inputs` (even with
/// `--force`: writing it destroys what is imported) or, without `force`,
/// when it exists (it may hold the edits made since an earlier import).
fn check_output(output: &Path, inputs: &[PathBuf], force: bool) -> Result<(), Failure> {
    let usage = |message: String| Failure::new(ClientError::EXIT_USAGE, message);
    if let Some(input) = inputs.iter().find(|input| same_file(output, input)) {
        return Err(usage(format!(
            "-o {} is the input file {}: writing it would destroy what is imported, even with --force; write to another file",
            output.display(),
            input.display()
        )));
    }
    if !force && fs::symlink_metadata(output).is_ok() {
        return Err(usage(format!(
            "{} exists: not replaced (it may hold edits made since an earlier import); pass --force to replace it, or write to another file",
            output.display()
        )));
    }
    Ok(())
}

/// Whether `a` and `b` name one file: the same inode (through links and
/// `./` alike), or, for an `a` not yet created, the same canonical path.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    if let (Ok(a), Ok(b)) = (fs::metadata(a), fs::metadata(b)) {
        return (a.dev(), a.ino()) == (b.dev(), b.ino());
    }
    match (canonical(a), canonical(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `path` made absolute with its directory's links resolved, whether or
/// not the file itself exists.
fn canonical(path: &Path) -> Option<PathBuf> {
    if let Ok(path) = fs::canonicalize(path) {
        return Some(path);
    }
    let name = path.file_name()?;
    let dir = parent_dir(path);
    Some(fs::canonicalize(dir).ok()?.join(name))
}

/// The directory `path` is in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `text` to `path` through a temporary file beside it, renamed
/// over it once whole and synced, so a failed write (a full disk) leaves
/// the file as it was and no half file. A file `path` links to is the one
/// replaced (as a plain write would), and a replaced file keeps its
/// permissions; whether it may be replaced is [`check_output`]'s.
fn write_output(path: &Path, text: &str) -> anyhow::Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?
        }
        _ => path.to_path_buf(),
    };
    let name = target
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let temporary = parent_dir(&target).join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> anyhow::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        if let Ok(meta) = fs::metadata(&target) {
            // The owner before the mode: a chown may clear set-id bits.
            keep_owner(&file, &meta)
                .with_context(|| format!("setting the owner of {}", temporary.display()))?;
            file.set_permissions(meta.permissions())
                .with_context(|| format!("setting the permissions of {}", temporary.display()))?;
        }
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", temporary.display()))?;
        fs::rename(&temporary, &target).with_context(|| format!("writing {}", target.display()))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Gives `file` the owner and group of the file it replaces (`replaced`),
/// as far as this user may: all of it as root (root replacing
/// `root:lbadmin 0640` keeps the admin group able to read it), the group
/// alone for a group the user is in, else neither (`EPERM` is no error:
/// the file is the user's own, as a plain write would leave it).
fn keep_owner(file: &fs::File, replaced: &fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::{fchown, MetadataExt as _};
    let refused = |e: &std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
    match fchown(file, Some(replaced.uid()), Some(replaced.gid())) {
        Err(e) if refused(&e) => match fchown(file, None, Some(replaced.gid())) {
            Err(e) if refused(&e) => Ok(()),
            other => other,
        },
        other => other,
    }
}

/// The notes as the terminal shows them: a count, then each note on a
/// line of its own (nothing when there are none), so an operator reads
/// what stayed behind without opening the file.
fn notes_report(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "lbctl: {} note(s) on what could not be carried over (also NOTE comments in the file):\n",
        notes.len()
    );
    for note in notes {
        out.push_str("  ");
        out.push_str(&one_line(note));
        out.push('\n');
    }
    out
}

/// A note as one terminal line: control characters a source's words can
/// hold (an HAProxy `\r\n`) written as escapes, as in the file's comments.
fn one_line(note: &str) -> String {
    note.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_scratch::ScratchDir;

    /// `-o` replaces a file only with `--force`, never an input (however
    /// named), and writes through a rename that keeps the replaced file's
    /// permissions and a link to it, leaving no temporary file.
    #[test]
    fn the_output_replaces_only_with_force_never_an_input_and_through_a_rename() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = ScratchDir::new("lbctl-import-output");
        fs::create_dir_all(dir.join("sub")).expect("temp dir");
        let input = dir.join("haproxy.cfg");
        let out = dir.join("lbd.toml");
        fs::write(&input, "listen l\n").expect("input");
        fs::write(&out, "# edited\n").expect("output");
        fs::set_permissions(&out, fs::Permissions::from_mode(0o640)).expect("mode");
        std::os::unix::fs::symlink(&input, dir.join("link.cfg")).expect("symlink");
        std::os::unix::fs::symlink(&out, dir.join("link.toml")).expect("symlink");
        let inputs = [input.clone()];
        let refused = |output: &Path, force: bool| {
            check_output(output, &inputs, force)
                .err()
                .map(|f| (f.code, f.message))
        };
        let exists = refused(&out, false);
        let replaced = refused(&out, true);
        let new = refused(&dir.join("new.toml"), false);
        let by_other_names: Vec<_> = [
            input.clone(),
            dir.join("sub/../haproxy.cfg"),
            dir.join("link.cfg"),
        ]
        .iter()
        .map(|o| refused(o, true))
        .collect();
        // A group the file had (kept when the user may set it: as root).
        let group = 12_345;
        let regrouped = std::os::unix::fs::chown(&out, None, Some(group)).is_ok();
        write_output(&dir.join("link.toml"), "# imported\n").expect("write");
        let gid = std::os::unix::fs::MetadataExt::gid(&fs::metadata(&out).expect("meta"));
        let written = fs::read_to_string(&out).expect("read");
        let mode = fs::metadata(&out).expect("meta").permissions().mode() & 0o777;
        let still_link = fs::symlink_metadata(dir.join("link.toml"))
            .expect("link")
            .file_type()
            .is_symlink();
        let mut left: Vec<String> = fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            exists,
            Some((
                2,
                format!("{} exists: not replaced (it may hold edits made since an earlier import); pass --force to replace it, or write to another file", out.display())
            ))
        );
        assert_eq!((replaced, new), (None, None));
        for refusal in by_other_names {
            let (code, message) = refusal.expect("an input is refused");
            assert_eq!(code, 2);
            assert!(message.contains(" is the input file "), "{message}");
        }
        assert_eq!(
            (written.as_str(), mode, still_link),
            ("# imported\n", 0o640, true)
        );
        if regrouped {
            assert_eq!(gid, group, "the replaced file's group is kept");
        }
        assert_eq!(
            left,
            ["haproxy.cfg", "lbd.toml", "link.cfg", "link.toml", "sub"]
        );
    }

    /// lbd's warnings on the written configuration are printed too: a
    /// VIP whose servers were all disabled dropped every new flow, and
    /// the import said nothing of it.
    #[test]
    fn lbds_own_warnings_on_the_result_are_printed() {
        let sources = [Source {
            name: "haproxy.cfg".to_owned(),
            text: "listen web\n  mode tcp\n  bind 198.18.0.100:80\n  server a 198.18.0.11:80 disabled\n".to_owned(),
        }];
        let options = Options {
            interface: Some("eth0".to_owned()),
            ..Options::default()
        };
        let imported = import::import(&sources, &options).expect("imports");
        assert_eq!(
            warnings_report(&lb_userspace::config::warnings(&imported.config)),
            "lbctl: warning: vip[0]: every backend of VIP 198.18.0.100:80/tcp has weight 0: it drops every new flow\n"
        );
        assert_eq!(warnings_report(&[]), "");
    }

    /// `--config-id` picks the conditional lines of a keepalived.conf
    /// shared by the nodes; without it the import is refused (exit 2)
    /// and nothing is written.
    #[test]
    fn config_id_picks_a_shared_keepalived_confs_lines() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let dir = ScratchDir::new("lbctl-import-config-id");
        let input = dir.join("keepalived.conf");
        fs::write(
            &input,
            "vrrp_instance V {\n  interface eth0\n  virtual_router_id 5\n  @lb1 priority 150\n  @lb2 priority 90\n  virtual_ipaddress {\n    198.18.0.100\n  }\n}\n",
        )
        .expect("input");
        let import = |output: &str, id: Option<&str>| {
            let out = dir.join(output);
            let mut argv = vec![
                "import".to_owned(),
                input.display().to_string(),
                "-o".to_owned(),
                out.display().to_string(),
            ];
            if let Some(id) = id {
                argv.extend(["--config-id".to_owned(), id.to_owned()]);
            }
            let cli = Cli::try_parse_from(argv).expect("arguments");
            (run(&cli.args).map_err(|f| (f.code, f.message)), out)
        };
        let (done, out) = import("lb2.toml", Some("lb2"));
        assert!(done.is_ok(), "{done:?}");
        let written = fs::read_to_string(&out).expect("written");
        assert!(written.contains("priority = 90"), "{written}");
        let (refused, out) = import("none.toml", None);
        let (code, message) = refused.expect_err("refused without a config id");
        assert_eq!(code, ClientError::EXIT_USAGE);
        assert!(message.contains("--config-id"), "{message}");
        assert!(!out.exists(), "nothing written");
    }

    #[test]
    fn every_note_is_printed_on_its_own_line() {
        assert_eq!(notes_report(&[]), "");
        let report = notes_report(&[
            "h.cfg:3: balance source: client persistence".to_owned(),
            "h.cfg:9: tcp-check send PING\r\n: not carried over".to_owned(),
        ]);
        assert_eq!(
            report,
            "lbctl: 2 note(s) on what could not be carried over (also NOTE comments in the file):\n  h.cfg:3: balance source: client persistence\n  h.cfg:9: tcp-check send PING\\r\\n: not carried over\n"
        );
    }
}
