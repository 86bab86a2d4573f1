//! lb-manpage: man pages (section 8) rendered from the binaries' clap definitions, so
//! the pages the Debian package ships never drift from `--help`: one page
//! for the command and one per visible subcommand, at every level
//! (`lbctl.8`, `lbctl-vip.8`, `lbctl-vip-add.8`, ...), named the way the
//! pages' SUBCOMMANDS sections refer to them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The manual section: system administration commands and daemons.
const SECTION: &str = "8";

/// Writes the page of `command` and of each of its visible subcommands into
/// `dir` (which must exist); returns the files written. For the binaries'
/// man-page generators (`lbd --generate-man DIR`, `lbctl man DIR`,
/// `lb-decap --generate-man DIR`) that `cargo xtask package` runs.
pub fn write_pages(command: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    // Building fills in each subcommand's display name ("lbctl-vip-add")
    // and usage ("lbctl vip add"); clap's implicit `help` subcommand gets
    // no page.
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let mut written = Vec::new();
    write_tree(&command, dir, &mut written)?;
    Ok(written)
}

fn write_tree(
    command: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let page = clap_mangen::Man::new(command.clone()).section(SECTION);
    let path = page.generate_to(dir).with_context(|| {
        format!(
            "writing the man page of {} into {}",
            command.get_name(),
            dir.display()
        )
    })?;
    written.push(path);
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_tree(sub, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> clap::Command {
        clap::Command::new("tool")
            .version("1.2.3")
            .about("Does things.")
            .arg(clap::Arg::new("socket").long("socket").global(true))
            .subcommand(
                clap::Command::new("vip")
                    .about("VIPs.")
                    .subcommand(clap::Command::new("add").about("Add a VIP.")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-manpage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn one_page_per_visible_command_named_like_the_references() {
        let dir = scratch("names");
        let written = write_pages(sample(), &dir).unwrap();
        let mut names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["tool-vip-add.8", "tool-vip.8", "tool.8"]);
        let top = std::fs::read_to_string(dir.join("tool.8")).unwrap();
        assert!(top.starts_with(".ie"), "{top}");
        assert!(top.contains(".TH tool 8"), "{top}");
        assert!(top.contains("tool\\-vip(8)"), "{top}");
        assert!(!top.contains("secret"), "{top}");
        // A subcommand's page shows how to type it and the global options.
        let add = std::fs::read_to_string(dir.join("tool-vip-add.8")).unwrap();
        assert!(add.contains("tool vip add"), "{add}");
        assert!(add.contains("socket"), "{add}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("lb-manpage-missing-{}", std::process::id()));
        let error = write_pages(sample(), &dir).unwrap_err();
        assert!(
            format!("{error:#}").contains(&dir.display().to_string()),
            "{error:#}"
        );
    }
}
