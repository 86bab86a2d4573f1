use super::*;

#[test]
fn labels_and_display() {
    let cases = [
        (FailureReason::Timeout, "timeout", "timeout"),
        (FailureReason::Refused, "refused", "connection refused"),
        (FailureReason::Unreachable, "unreachable", "unreachable"),
        (
            FailureReason::Io("broken pipe".into()),
            "io",
            "I/O error: broken pipe",
        ),
        (
            FailureReason::HttpStatus {
                got: 503,
                expected: 200,
            },
            "http_status",
            "HTTP status 503, expected 200",
        ),
        (
            FailureReason::HttpBody {
                expected: "OK".into(),
            },
            "http_body",
            "HTTP body lacks \"OK\" (first 16 KiB read)",
        ),
        (FailureReason::Http("bad".into()), "http", "HTTP error: bad"),
        (
            FailureReason::Tls("TLS handshake: received corrupt message".into()),
            "tls",
            "TLS handshake: received corrupt message",
        ),
        (
            FailureReason::Pgsql("bad".into()),
            "pgsql",
            "PostgreSQL protocol: bad",
        ),
        (
            FailureReason::InterfaceDown {
                interface: "eth0".into(),
                failure: Box::new(FailureReason::Timeout),
            },
            "interface_down",
            "not counted, interface eth0 is down: timeout",
        ),
    ];
    for (reason, label, text) in cases {
        assert_eq!(reason.label(), label);
        assert_eq!(reason.to_string(), text);
    }
    assert_eq!(Outcome::Success.to_string(), "success");
    assert!(Outcome::Success.is_success());
    assert!(!Outcome::Failure(FailureReason::Refused).is_success());
}
