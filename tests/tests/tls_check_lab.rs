//! Health checks over TLS (`tls = true`) against real nginx serving TLS
//! (a self-signed certificate, as TLS-passthrough backends have: lbd does
//! not verify it): the backends are up by an HTTPS GET of their health
//! page; one whose TLS server stops goes down; one that answers plain
//! HTTP on the TLS port stays down by the reason `tls` (a TCP check would
//! call it up); its TLS server back, it comes up.

use std::{fs, net::IpAddr, process::Command, time::Duration};

use lb_tests::{
    lab::{http_get, Host, Lab, HTTP_PORT, VIP4},
    support::{lbctl_ok, vip_status, wait_every_backend_up, wait_until},
};
use lb_userspace::api::schema::{BackendStatus, HealthStatus};

/// The port each backend serves TLS on (beside the lab's plain port).
const TLS_PORT: u16 = 8443;

/// Fast HTTP checks over TLS of `/health` on [`TLS_PORT`].
fn checks() -> String {
    format!(
        "[vip.health]\ncheck = \"http\"\ntls = true\nport = {TLS_PORT}\npath = \"/health\"\nexpect_body = \"tls ok\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 2\nfall = 2\n"
    )
}

/// A self-signed certificate and key for `name` in `dir` (`cert.pem`,
/// `key.pem`), by the openssl command line.
fn self_signed(dir: &std::path::Path, name: &str) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("running openssl");
    assert!(out.status.success(), "openssl: {out:?}");
}

/// Starts nginx in `backend`'s namespace on [`TLS_PORT`] as process
/// `tls-<name>`: with TLS (`tls`), answering `/health` with `tls ok`, or
/// plain HTTP on the same port (a server that is not what the check
/// expects).
fn start_tls_nginx(lab: &mut Lab, backend: &Host, tls: bool) {
    let dir = lab.dir.join(format!("tls-{}", backend.name));
    fs::create_dir_all(&dir).expect("dir");
    if tls && !dir.join("cert.pem").exists() {
        self_signed(&dir, &format!("{}.backend.example", backend.name));
    }
    let d = dir.display();
    let listen = if tls {
        format!("listen {TLS_PORT} ssl;\n    ssl_certificate {d}/cert.pem;\n    ssl_certificate_key {d}/key.pem;")
    } else {
        format!("listen {TLS_PORT};")
    };
    let config = format!(
        "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         server {{\n    {listen}\n    \
         location = /health {{ default_type text/plain; return 200 \"tls ok\\n\"; }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, config).expect("nginx.conf");
    let name = format!("tls-{}", backend.name);
    lab.spawn(
        &name,
        &backend.netns,
        "nginx",
        &["-c", &path.to_string_lossy(), "-p", &dir.to_string_lossy()],
    )
    .expect("nginx");
}

/// Backend `backend` of the lab's VIP in the status.
fn backend_status(lab: &Lab, backend: &Host) -> BackendStatus {
    let status = lab.status().expect("status");
    vip_status(&status, IpAddr::V4(VIP4))
        .backends
        .iter()
        .find(|b| b.address == IpAddr::V4(backend.ipv4))
        .cloned()
        .expect("backend in the status")
}

#[test]
fn checks_over_tls_follow_the_backends_tls_servers() {
    let mut lab = Lab::start(2).expect("lab");
    let [b1, b2] = [0, 1].map(|i| lab.backends[i].clone());
    for b in [&b1, &b2] {
        start_tls_nginx(&mut lab, b, true);
    }
    let config = lab.lbd_config_for(&["b1", "b2"], &checks());
    lab.start_lbd(&config).expect("lbd");
    let vip = IpAddr::V4(VIP4);
    wait_every_backend_up(&lab, vip);
    let (code, _) = http_get(&lab.client.netns, &format!("http://{VIP4}:{HTTP_PORT}/"))
        .expect("a request through the VIP");
    assert_eq!(code, 200);

    // b2's TLS server stops: down.
    lab.terminate("tls-b2").expect("stopping b2's TLS nginx");
    wait_until("b2 down", Duration::from_secs(10), || {
        backend_status(&lab, &b2).health == HealthStatus::Down
    });
    // Plain HTTP on its TLS port: it accepts connections and answers,
    // but no TLS: still down, by the handshake.
    start_tls_nginx(&mut lab, &b2, false);
    wait_until(
        "b2's checks failing by TLS",
        Duration::from_secs(10),
        || {
            let b = backend_status(&lab, &b2);
            b.check.as_ref().and_then(|c| c.last_label.as_deref()) == Some("tls")
        },
    );
    let b = backend_status(&lab, &b2);
    assert_eq!(b.health, HealthStatus::Down, "{b:?}");
    assert!(
        b.check
            .as_ref()
            .and_then(|c| c.last.as_deref())
            .is_some_and(|l| l.starts_with("TLS")),
        "{b:?}"
    );
    let text = lbctl_ok(&lab, &["status"]);
    assert!(text.contains("tls"), "{text}");
    assert_eq!(backend_status(&lab, &b1).health, HealthStatus::Up);

    // TLS back: up.
    lab.terminate("tls-b2").expect("stopping b2's plain nginx");
    start_tls_nginx(&mut lab, &b2, true);
    wait_until("b2 up again", Duration::from_secs(10), || {
        backend_status(&lab, &b2).health == HealthStatus::Up
    });
}
