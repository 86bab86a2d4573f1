//! `lb-decap check` as an operator runs it: a valid file is described in
//! the words `status` uses (ports in host order, names not numbers), a bad
//! one is refused naming the field, and nothing is touched either way (no
//! root needed: the loopback interface is always there).

use std::{path::PathBuf, process::Command};

/// A config file of `text` in a fresh directory of this test process.
fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-decap-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("config file");
    path
}

/// Runs `lb-decap check` on `path`: exit success, stdout, stderr.
fn check(path: &PathBuf) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lb-decap"))
        .arg("check")
        .arg("--config")
        .arg(path)
        // Never looked at by check; a directory that cannot exist.
        .args(["--pin-dir", "/nonexistent/lb-decap-check"])
        .output()
        .expect("lb-decap runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_valid_file_is_described_as_status_shows_it() {
    let path = config_file(
        "valid.toml",
        "interface = \"lo\"\naddresses = [\"198.19.2.11\", \"2001:2:0:2::11\"]\n\
         vips = [\"198.18.0.100:80/tcp\", \"[2001:2::100]:53/udp\"]\ngue_port = 7000\n",
    );
    let (ok, stdout, stderr) = check(&path);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "{}: valid; interface lo, attach xdp (xdp mode auto)\n\
             ipip: on\ngue: on, port 7000\n\
             address: 198.19.2.11\naddress: 2001:2:0:2::11\n\
             sources: any (not checked)\n\
             vip: 198.18.0.100:80/tcp\nvip: [2001:2::100]:53/udp\n",
            path.display()
        )
    );
    assert!(
        stderr.contains("sources not set: tunnel packets from ANY sender are unwrapped"),
        "no warning about any sender: {stderr}"
    );
    let sourced = config_file(
        "sources.toml",
        "interface = \"lo\"\naddresses = [\"198.19.2.11\"]\n\
         sources = [\"2001:2:0:f0::/64\", \"198.19.200.0/24\"]\n\
         vips = [\"198.18.0.100:80/tcp\"]\n",
    );
    let (ok, stdout, stderr) = check(&sourced);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "address: 198.19.2.11\nsource: 198.19.200.0/24\nsource: 2001:2:0:f0::/64\nvip:"
        ),
        "{stdout}"
    );
    assert!(!stderr.contains("ANY sender"), "{stderr}");
    let tc = config_file(
        "tc.toml",
        "interface = \"lo\"\nattach = \"tc\"\naddresses = [\"198.19.2.11\"]\n\
         vips = [\"198.18.0.100:80/tcp\"]\ngue = false\n",
    );
    let (ok, stdout, stderr) = check(&tc);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "{}: valid; interface lo, attach tc\nipip: on\ngue: off\n",
            tc.display()
        )),
        "{stdout}"
    );
}

#[test]
fn a_source_prefix_with_host_bits_is_refused_naming_the_field() {
    let path = config_file(
        "bad-source.toml",
        "interface = \"lo\"\naddresses = [\"198.19.2.11\"]\n\
         sources = [\"198.19.200.7/24\"]\nvips = [\"198.18.0.100:80/tcp\"]\n",
    );
    let (ok, stdout, stderr) = check(&path);
    assert!(!ok);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(
            "sources: \"198.19.200.7/24\" has host bits set (did you mean 198.19.200.0/24?)"
        ),
        "{stderr}"
    );
}

#[test]
fn a_bad_file_is_refused_naming_the_field() {
    let path = config_file(
        "bad.toml",
        "interface = \"lo\"\nvips = [\"198.18.0.100:80/tcp\"]\ngue_port = 0\n",
    );
    let (ok, stdout, stderr) = check(&path);
    assert!(!ok);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("gue_port: 0 (GUE needs a port; set gue = false to turn it off)"),
        "{stderr}"
    );
}

/// Generic XDP would unwrap without fixing the skb's hardware checksum:
/// `check` refuses it, saying why and what to use instead (before, the
/// file was valid and `apply` attached generic XDP).
#[test]
fn generic_xdp_is_refused_saying_why_and_what_instead() {
    let path = config_file(
        "generic.toml",
        "interface = \"lo\"\nxdp_mode = \"generic\"\naddresses = [\"198.19.2.11\"]\n\
         vips = [\"198.18.0.100:80/tcp\"]\n",
    );
    let (ok, stdout, stderr) = check(&path);
    assert!(!ok);
    assert_eq!(stdout, "");
    for words in [
        "xdp_mode = \"generic\" is refused",
        "CHECKSUM_COMPLETE",
        "Use xdp_mode = \"auto\" (native XDP, else the tc hook) or attach = \"tc\"",
    ] {
        assert!(stderr.contains(words), "{words:?} not in {stderr}");
    }
}
