//! `cargo xtask package`: the Debian package (`target/package/lbd_VERSION_ARCH.deb`,
//! or under `$CARGO_TARGET_DIR`)
//! with lbd, lbctl and lb-decap, their units, example configs, man pages,
//! completions, the Grafana dashboard and the alert rules; `--check` also
//! installs it on this machine, checks it and removes it again.
//!
//! Built with dpkg-deb from a staging tree rather than with cargo-deb:
//! half the files are generated (man pages, completions, units with the
//! package's paths), which cargo-deb would need staged by a step like this
//! one anyway; dpkg-deb is on every Debian machine while cargo-deb takes
//! minutes to build; and the file list stays a table with unit tests
//! (layout.rs).

mod check;
mod layout;
mod scripts;

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{anyhow, bail, Context as _};
use layout::{Entry, Source, CONFFILES, FILES, MAN_DIR, MAN_GENERATORS};

use crate::cmd::{command, exec, root, target_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Then install the package on this machine with dpkg, check the
    /// binaries, man pages and units, and remove and purge it, checking
    /// nothing is left (needs root; refuses if lbd is on this machine
    /// already, packaged or by hand: its units, /etc/lbd, /var/lib/lbd,
    /// pins or a running lbd).
    #[arg(long)]
    check: bool,
}

/// The package's name, as dpkg knows it.
const PACKAGE: &str = "lbd";

pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.check {
        crate::cmd::require_root("`cargo xtask package --check` (dpkg -i)")?;
    }
    crate::build::build_release()?;
    let deb = build_deb()?;
    println!("{}", deb.display());
    if args.check {
        check::run(&deb)?;
    }
    Ok(())
}

/// Stages the files under `package/root` of the target directory (where
/// the release build just before put the binaries) and builds the .deb
/// next to it; returns its path.
fn build_deb() -> anyhow::Result<PathBuf> {
    let root = root();
    let target = target_dir();
    let out = target.join("package");
    let stage = out.join("root");
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let release = target.join("release");
    for entry in FILES {
        stage_entry(&root, &release, &stage, entry)?;
    }
    stage_man_pages(&release, &stage.join(MAN_DIR), &out.join("man"))?;
    let version = package_version();
    let version = version.as_str();
    let architecture = trimmed_output(&mut command("dpkg", &["--print-architecture"]))?;
    let binaries: Vec<PathBuf> = FILES
        .iter()
        .filter(|e| matches!(e.source, Source::Binary(_)))
        .map(|e| stage.join(e.path))
        .collect();
    let control = scripts::Control {
        version,
        architecture: &architecture,
        depends: &shared_library_depends(&out, &binaries)?,
        installed_kib: tree_size(&stage)?.div_ceil(1024),
    };
    let debian = stage.join("DEBIAN");
    write(&debian.join("md5sums"), md5sums(&stage)?.as_bytes(), 0o644)?;
    write(&debian.join("control"), control.render().as_bytes(), 0o644)?;
    let conffiles: String = CONFFILES.iter().map(|c| format!("/{c}\n")).collect();
    write(&debian.join("conffiles"), conffiles.as_bytes(), 0o644)?;
    write(
        &debian.join("postinst"),
        scripts::POSTINST.as_bytes(),
        0o755,
    )?;
    write(&debian.join("prerm"), scripts::PRERM.as_bytes(), 0o755)?;
    write(&debian.join("postrm"), scripts::POSTRM.as_bytes(), 0o755)?;
    open_directories(&stage)?;
    let deb = out.join(format!("{PACKAGE}_{version}_{architecture}.deb"));
    let stage_arg = stage.to_string_lossy();
    let deb_arg = deb.to_string_lossy();
    exec(&mut command(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "-Zxz",
            "--build",
            &stage_arg,
            &deb_arg,
        ],
    ))?;
    Ok(deb)
}

/// The package's version: the crate's and the commit built (see
/// `lb_build::version`), the one the binaries just built say, so dpkg and
/// apt order builds by commit date and each .deb has a name of its own.
pub(crate) fn package_version() -> String {
    lb_build::version::version(&root(), env!("CARGO_PKG_VERSION"))
}

fn stage_entry(root: &Path, release: &Path, stage: &Path, entry: &Entry) -> anyhow::Result<()> {
    let dest = stage.join(entry.path);
    match entry.source {
        Source::Binary(name) => {
            let built = release.join(name);
            write(&dest, &layout::read_source(release, name)?, entry.mode)?;
            // Debug info is most of a release binary; the eBPF objects are
            // data and stay.
            let dest_arg = dest.to_string_lossy();
            exec(&mut command("strip", &["--strip-unneeded", &dest_arg]))
                .with_context(|| format!("stripping the copy of {}", built.display()))
        }
        Source::File(file) => write(&dest, &layout::read_source(root, file)?, entry.mode),
        Source::Adapted(file) => {
            let text = String::from_utf8(layout::read_source(root, file)?)
                .with_context(|| format!("{file} is not UTF-8"))?;
            write(
                &dest,
                layout::packaged_text(file, &text)?.as_bytes(),
                entry.mode,
            )
        }
        Source::Completion(shell) => {
            let lbctl = release.join("lbctl");
            let script = stdout_of(Command::new(&lbctl).args(["completions", shell]))?;
            write(&dest, script.as_bytes(), entry.mode)
        }
        Source::Copyright => write(
            &dest,
            layout::copyright(env!("CARGO_PKG_LICENSE")).as_bytes(),
            entry.mode,
        ),
    }
}

/// Runs each binary's man-page generator into `scratch`, then gzips the
/// pages into `man_dir` (as Debian ships them: `gzip -9n`, no timestamp).
fn stage_man_pages(release: &Path, man_dir: &Path, scratch: &Path) -> anyhow::Result<()> {
    if scratch.exists() {
        fs::remove_dir_all(scratch).with_context(|| format!("removing {}", scratch.display()))?;
    }
    fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    fs::create_dir_all(man_dir).with_context(|| format!("creating {}", man_dir.display()))?;
    for (binary, generator) in MAN_GENERATORS {
        stdout_of(
            Command::new(release.join(binary))
                .args(*generator)
                .arg(scratch),
        )?;
    }
    let mut pages: Vec<PathBuf> = fs::read_dir(scratch)
        .with_context(|| format!("reading {}", scratch.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", scratch.display()))?;
    pages.sort();
    if pages.is_empty() {
        bail!(
            "the man-page generators wrote nothing into {}",
            scratch.display()
        );
    }
    for page in pages {
        let name = page
            .file_name()
            .ok_or_else(|| anyhow!("{} has no file name", page.display()))?;
        let gz = stdout_bytes(Command::new("gzip").args(["-9n", "-c"]).arg(&page))?;
        let mut dest = man_dir.join(name).into_os_string();
        dest.push(".gz");
        write(Path::new(&dest), &gz, 0o644)?;
    }
    Ok(())
}

/// The Depends line for the binaries' shared libraries, from
/// dpkg-shlibdeps (which wants a debian/control: a minimal one in `out`).
fn shared_library_depends(out: &Path, binaries: &[PathBuf]) -> anyhow::Result<String> {
    let debian = out.join("debian");
    write(
        &debian.join("control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n").as_bytes(),
        0o644,
    )?;
    let mut cmd = Command::new("dpkg-shlibdeps");
    cmd.current_dir(out).arg("-O");
    for binary in binaries {
        cmd.arg(format!("-e{}", binary.display()));
    }
    let substvars = stdout_of(&mut cmd)?;
    substvars
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("dpkg-shlibdeps printed no shlibs:Depends: {substvars:?}"))
}

/// DEBIAN/md5sums: every regular file of the staged tree.
fn md5sums(stage: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    regular_files(stage, &mut files)?;
    files.sort();
    let relative: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(stage)
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect::<Result<_, _>>()
        .context("a staged file outside the stage")?;
    let mut cmd = Command::new("md5sum");
    cmd.current_dir(stage).args(&relative);
    stdout_of(&mut cmd)
}

fn tree_size(dir: &Path) -> anyhow::Result<u64> {
    let mut files = Vec::new();
    regular_files(dir, &mut files)?;
    files.iter().try_fold(0, |sum, f| {
        Ok(sum
            + fs::metadata(f)
                .with_context(|| format!("reading {}", f.display()))?
                .len())
    })
}

/// Every directory of the tree 0755, whatever the umask was (dpkg creates
/// the package's new directories with these modes).
fn open_directories(dir: &Path) -> anyhow::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", dir.display()))?;
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.is_dir() {
            open_directories(&path)?;
        }
    }
    Ok(())
}

fn regular_files(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.is_dir() {
            regular_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` with `mode`, creating its parents.
fn write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn stdout_bytes(cmd: &mut Command) -> anyhow::Result<Vec<u8>> {
    let output = crate::cmd::captured(cmd)?;
    if !output.status.success() {
        bail!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

fn stdout_of(cmd: &mut Command) -> anyhow::Result<String> {
    let bytes = stdout_bytes(cmd)?;
    String::from_utf8(bytes).context("output is not UTF-8")
}

fn trimmed_output(cmd: &mut Command) -> anyhow::Result<String> {
    Ok(stdout_of(cmd)?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    /// Built from git, the package's version names the commit (what the
    /// binaries' `--version` says), so it is not the bare crate version
    /// every build had.
    #[test]
    fn the_package_version_names_the_commit() {
        let version = super::package_version();
        assert!(version.starts_with(env!("CARGO_PKG_VERSION")), "{version}");
        let in_git = std::process::Command::new("git")
            .args(["-C", &super::root().to_string_lossy(), "rev-parse", "HEAD"])
            .output()
            .is_ok_and(|out| out.status.success());
        if in_git {
            assert_ne!(version, env!("CARGO_PKG_VERSION"));
            assert!(version.contains("+git"), "{version}");
        }
    }
}
