use super::*;

#[test]
fn scopes_and_actions_read_back_what_they_write() {
    for text in ["global", "198.18.0.100:80/tcp", "[2001:2::100]:53/udp"] {
        assert_eq!(text.parse::<Scope>().unwrap().to_string(), text);
    }
    assert!("198.18.0.100"
        .parse::<Scope>()
        .unwrap_err()
        .to_string()
        .contains("global"));
    assert_eq!("allow".parse::<Action>(), Ok(Action::Allow));
    assert!("drop".parse::<Action>().is_err());
}
