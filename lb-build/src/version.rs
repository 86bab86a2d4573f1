//! The version a build calls itself: the crate's version and, built from
//! this workspace's git checkout, the commit (`0.1.0+git20261128134449.b832494abcde`),
//! so two builds of one crate version can be told apart (`lbd --version`,
//! `lbctl status`, `lbd_build_info`) and ordered (the .deb's `Version:`).
//!
//! The commit's part is its committer date (UTC, to the second) then its
//! abbreviated hash: Debian compares the digits after `+git` as a number,
//! so a later commit is a newer version (a day alone would leave two
//! commits of one day in hash order), and anything after the crate's
//! version sorts above the bare version older packages had. Built outside
//! git (a source tarball), or where git cannot answer, the version is the
//! crate's alone: asking git never fails a build.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The environment variable the build scripts set (`cargo:rustc-env`) to
/// [`version`]; read with `env!("LB_BUILD_VERSION")`.
pub const ENV: &str = "LB_BUILD_VERSION";

/// The version of a build of `workspace` (this repository's root) whose
/// crates say `package_version`: see the module's documentation.
pub fn version(workspace: &Path, package_version: &str) -> String {
    match commit_of(workspace) {
        Some(commit) => format!("{package_version}+git{commit}"),
        None => package_version.to_owned(),
    }
}

/// `<committer date, UTC, YYYYMMDDHHMMSS>.<abbreviated hash>` of HEAD, if
/// `workspace` is the top of a git work tree git can read.
fn commit_of(workspace: &Path) -> Option<String> {
    let top = git(workspace, &["rev-parse", "--show-toplevel"])?;
    // A tarball unpacked inside another repository is not that commit.
    if std::fs::canonicalize(top).ok()? != std::fs::canonicalize(workspace).ok()? {
        return None;
    }
    let said = git(
        workspace,
        &[
            "show",
            "-s",
            "--no-show-signature",
            "--abbrev=12",
            "--date=format-local:%Y%m%d%H%M%S",
            "--format=%cd.%h",
            "HEAD",
        ],
    )?;
    let (date, hash) = said.split_once('.')?;
    let well_formed = date.len() == 14
        && date.bytes().all(|b| b.is_ascii_digit())
        && !hash.is_empty()
        && hash.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then_some(said)
}

/// What `git args` (in `dir`, dates in UTC) printed, trimmed; None when
/// git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// For a build script of a crate of `workspace`: sets [`ENV`] to the
/// build's version, and has cargo run the script again when HEAD moves
/// (a commit, a checkout).
pub fn emit(workspace: &Path, package_version: &str) {
    for file in git_files(workspace) {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!(
        "cargo:rustc-env={ENV}={}",
        version(workspace, package_version)
    );
}

/// The files of the git directory that change when HEAD moves: HEAD,
/// the branch it names and the packed refs (none outside git).
fn git_files(workspace: &Path) -> Vec<PathBuf> {
    let Some(dir) = git(workspace, &["rev-parse", "--absolute-git-dir"]) else {
        return Vec::new();
    };
    let dir = PathBuf::from(dir);
    let mut files = vec![dir.join("HEAD"), dir.join("packed-refs")];
    if let Some(branch) = git(workspace, &["symbolic-ref", "-q", "HEAD"]) {
        files.push(dir.join(branch));
    }
    files.into_iter().filter(|f| f.exists()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built from this checkout the version names the commit, its date
    /// first; built outside git it is the crate's.
    #[test]
    fn a_build_in_git_names_its_commit_and_one_outside_does_not() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace");
        let version = version(workspace, "0.1.0");
        if git(workspace, &["rev-parse", "HEAD"]).is_some() {
            let commit = version.strip_prefix("0.1.0+git").expect(&version);
            let (date, hash) = commit.split_once('.').expect(&version);
            assert_eq!(date.len(), 14, "{version}");
            assert!(date.starts_with("20"), "{version}");
            assert_eq!(hash.len(), 12, "{version}");
        }
        let outside = std::env::temp_dir().join(format!("lb-build-version-{}", std::process::id()));
        std::fs::create_dir_all(&outside).expect("a directory");
        let plain = super::version(&outside, "0.1.0");
        let _ = std::fs::remove_dir_all(&outside);
        assert_eq!(plain, "0.1.0");
    }

    /// Debian orders the versions by commit date, and each above the bare
    /// crate version earlier packages had.
    #[test]
    fn debian_orders_the_versions_by_commit_date() {
        let older = "0.1.0+git20261128095959.ffffffffffff";
        let newer = "0.1.0+git20261128100000.000000000000";
        let ordered = [("0.1.0", older), (older, newer)];
        for (lower, higher) in ordered {
            let Ok(status) = Command::new("dpkg")
                .args(["--compare-versions", lower, "lt", higher])
                .status()
            else {
                println!("dpkg is not installed: skipped");
                return;
            };
            assert!(status.success(), "{lower} < {higher}");
        }
    }
}
