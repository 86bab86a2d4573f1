//! Backend states and check kinds keep their wire names.
use super::*;

#[test]
fn states_and_kinds_keep_their_wire_names() {
    for (health, name) in [
        (Health::Unknown, "unknown"),
        (Health::Up, "up"),
        (Health::Down, "down"),
        (Health::Full, "full"),
    ] {
        assert_eq!(HealthStatus::from(health).as_str(), name);
        assert_eq!(health.to_string(), name);
    }
    for status in HealthStatus::ALL {
        assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
    }
    assert_eq!(
        serde_json::to_value(CheckKind::from(&health::CheckKind::Tcp)).unwrap(),
        "tcp"
    );
    let pgsql = health::CheckKind::Pgsql {
        user: "haproxy".into(),
        database: None,
    };
    assert_eq!(
        serde_json::to_value(CheckKind::from(&pgsql)).unwrap(),
        "pgsql"
    );
    assert_eq!(CheckKind::from(&pgsql).to_string(), "pgsql");
    assert_eq!(serde_json::to_value(AllDown::KeepLast).unwrap(), "keep");
    assert_eq!(serde_json::to_value(AllDown::Drop).unwrap(), "drop");
}
