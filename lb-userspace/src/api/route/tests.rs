//! Tests of the API routes: every route decodes to what was encoded, and
//! bad paths, queries and bodies are answered naming what is wrong.
use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::api::schema::{BackendState, HealthSpec};

fn request(method: Method, path: &[&str], query: &[(&str, &str)], body: Value) -> Request {
    Request {
        method,
        path: path.iter().map(|s| (*s).to_owned()).collect(),
        query: query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        body,
    }
}

fn every_route() -> Vec<Route> {
    let id: VipId = "198.18.0.100:80/tcp".parse().unwrap();
    let v6: VipId = "[2001:2::100]:443/udp".parse().unwrap();
    let b: IpAddr = "198.18.0.11".parse().unwrap();
    // A backend's own health: only the keys given travel.
    let spec = BackendSpec {
        backup: true,
        address: b,
        mac: None,
        port: Some(8080),
        weight: Some(5),
        health: Some(HealthSpec {
            rise: Some(5),
            through_tunnel: Some(false),
            ..HealthSpec::default()
        }),
    };
    let plain = BackendSpec {
        health: None,
        address: "198.18.0.12".parse().unwrap(),
        ..spec.clone()
    };
    // Every health key, as the file's table.
    let health = HealthSpec {
        check: Some("http".to_owned()),
        port: Some(8080),
        path: Some("/healthz".to_owned()),
        host: Some("example.test".to_owned()),
        expect_status: Some(204),
        expect_body: Some("status: OK".to_owned()),
        tls: Some(true),
        user: Some("haproxy".to_owned()),
        database: Some("app".to_owned()),
        interval_ms: Some(1000),
        fast_interval_ms: Some(200),
        timeout_ms: Some(300),
        rise: Some(3),
        fall: Some(4),
        through_tunnel: Some(true),
    };
    vec![
        Route::Status,
        Route::ListVips,
        Route::AddVip(VipSpec {
            address: id.address,
            port: 80,
            protocol: None,
            table_size: None,
            on_all_down: None,
            drain_timeout_s: Some(300),
            forwarding: Some("nat".to_owned()),
            affinity: Some("source".to_owned()),
            slow_start_s: Some(30),
            nat_source: Some("198.18.0.50".parse().unwrap()),
            health: Some(health),
            backends: vec![spec.clone(), plain.clone()],
        }),
        Route::GetVip(v6),
        Route::RemoveVip(id),
        Route::AddBackend(id, spec),
        Route::AddBackend(id, plain),
        Route::RemoveBackend(v6, "2001:2::11".parse().unwrap()),
        Route::SetState(
            id,
            b,
            StateChange {
                state: BackendState::Draining,
                timeout_s: Some(30),
                from: None,
            },
        ),
        Route::SetState(
            id,
            b,
            StateChange {
                state: BackendState::Enabled,
                timeout_s: None,
                from: Some(BackendState::Maintenance),
            },
        ),
        Route::SetWeight(id, b, WeightChange { weight: 7 }),
        Route::Flows(id, b),
        Route::Flow(id, "198.18.1.10:40000".parse().unwrap()),
        Route::Flow(v6, "[2001:2:1::10]:40000".parse().unwrap()),
        Route::Reload,
        Route::Config,
        Route::Node,
        Route::SetNode(NodeChange {
            state: crate::bgp::NodeState::Drained,
        }),
        Route::Acl,
        Route::AddAcl(AclRule {
            scope: Scope::Vip(v6),
            action: crate::guard::Action::Allow,
            source: "2001:2:1::/48".parse().unwrap(),
        }),
        Route::RemoveAcl(AclRule {
            scope: Scope::Global,
            action: crate::guard::Action::Deny,
            source: "198.18.66.0/24".parse().unwrap(),
        }),
        Route::SetLimits(
            Scope::Vip(id),
            Limits {
                source: Some(crate::guard::RateLimit::new(5, Some(9), "source").unwrap()),
                ..Limits::default()
            },
        ),
        Route::ClearLimits(Scope::Global),
    ]
}

#[test]
fn bad_guard_arguments_are_refused_naming_what_is_wrong() {
    let r = |m, p: &[&str], body| refused(m, p, &[], body);
    let (status, message) = r(
        Method::Delete,
        &["acl", "global", "deny", "198.18.66.1/24"],
        Value::Null,
    );
    assert_eq!(status, 400);
    assert!(message.contains("host bits set"), "{message}");
    let (status, message) = r(
        Method::Delete,
        &["acl", "198.18.0.100", "deny", "198.18.66.0/24"],
        Value::Null,
    );
    assert_eq!(status, 400);
    assert!(message.contains("global"), "{message}");
    let (status, message) = r(
        Method::Post,
        &["acl"],
        json!({"scope": "global", "action": "deny", "source": "nope"}),
    );
    assert_eq!(status, 400);
    assert!(message.contains("is not a CIDR prefix"), "{message}");
    let (status, message) = r(
        Method::Post,
        &["acl"],
        json!({"scope": "global", "action": "block", "source": "198.18.66.0/24"}),
    );
    assert_eq!(status, 400);
    assert!(message.contains("block"), "{message}");
    let (status, message) = r(
        Method::Put,
        &["limits", "global"],
        json!({"source": {"per_s": 1, "burst": 0}}),
    );
    assert_eq!(status, 400);
    assert!(
        message.contains("source.burst: 0 is out of range"),
        "{message}"
    );
}

#[test]
fn every_route_decodes_to_what_was_encoded() {
    for route in every_route() {
        let encoded = route.encode().unwrap();
        let segments: Vec<&str> = encoded.segments.iter().map(String::as_str).collect();
        let query: &[(&str, &str)] = if route.is_change() {
            &[("dry_run", "true")]
        } else {
            &[]
        };
        let request = request(
            encoded.method,
            &segments,
            query,
            encoded.body.unwrap_or(Value::Null),
        );
        let call = Call::decode(&request).unwrap_or_else(|r| panic!("{route:?}: {r:?}"));
        assert_eq!(call.route, route);
        assert_eq!(call.dry_run, route.is_change());
    }
}

#[test]
fn dry_run_takes_only_plain_booleans() {
    let r = |query: &[(&str, &str)]| {
        Call::decode(&request(Method::Post, &["reload"], query, Value::Null))
            .map(|c| c.dry_run)
            .map_err(|r| r.status)
    };
    assert_eq!(r(&[]), Ok(false));
    assert_eq!(r(&[("dry_run", "true")]), Ok(true));
    assert_eq!(r(&[("dry_run", "1")]), Ok(true));
    assert_eq!(r(&[("dry_run", "false")]), Ok(false));
    assert_eq!(r(&[("dry_run", "0")]), Ok(false));
    for bad in ["TRUE", "on", "yes", "", "tru"] {
        assert_eq!(r(&[("dry_run", bad)]), Err(400), "dry_run={bad:?}");
    }
    assert_eq!(r(&[("dryrun", "true")]), Err(400));
    assert_eq!(r(&[("dry_run", "true"), ("x", "1")]), Err(400));
}

#[test]
fn reads_take_no_query_and_no_body() {
    let status = |query: &[(&str, &str)], body| {
        Call::decode(&request(Method::Get, &["status"], query, body))
            .err()
            .map(|r| r.status)
    };
    assert_eq!(status(&[], Value::Null), None);
    assert_eq!(status(&[("dry_run", "true")], Value::Null), Some(400));
    assert_eq!(status(&[], json!({"x": 1})), Some(400));
}

#[test]
fn bad_paths_and_bodies_are_answered_not_panicked_on() {
    let r = |m, p: &[&str], body| {
        Call::decode(&request(m, p, &[], body))
            .err()
            .map_or(200, |r| r.status)
    };
    assert_eq!(r(Method::Get, &["nope"], Value::Null), 404);
    assert_eq!(r(Method::Post, &["status"], Value::Null), 405);
    assert_eq!(r(Method::Get, &["vips", "x"], Value::Null), 400);
    assert_eq!(
        r(Method::Get, &["vips", "198.18.0.100:0"], Value::Null),
        400
    );
    assert_eq!(r(Method::Post, &["vips"], json!({"port": 80})), 400);
    let state = [
        "vips",
        "198.18.0.100:80",
        "backends",
        "198.18.0.11",
        "state",
    ];
    assert_eq!(r(Method::Put, &state, json!({"state": 1})), 400);
    let bad_backend = ["vips", "198.18.0.100:80", "backends", "nope", "state"];
    assert_eq!(
        r(Method::Put, &bad_backend, json!({"state": "enabled"})),
        400
    );
}

/// The status and message of the answer refusing a request.
fn refused(method: Method, path: &[&str], query: &[(&str, &str)], body: Value) -> (u16, String) {
    match Call::decode(&request(method, path, query, body)) {
        Ok(call) => panic!("{method} {path:?} was accepted as {call:?}"),
        Err(answer) => (
            answer.status,
            answer.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
    }
}

#[test]
fn a_known_path_names_the_methods_it_takes() {
    use Method::{Delete, Get, Post, Put};
    let backend = ["vips", "198.18.0.100:80", "backends", "198.18.0.11"];
    for (path, methods) in [
        (&["status"][..], &[Get][..]),
        (&["reload"], &[Post]),
        (&["vips"], &[Get, Post]),
        (&["vips", "198.18.0.100:80"], &[Get, Delete]),
        // The shape decides, not whether the arguments parse.
        (&["vips", "x"], &[Get, Delete]),
        (&backend, &[Delete]),
        (&["limits", "global"], &[Put, Delete]),
        (&["acl"], &[Get, Post]),
        (&["nope"], &[]),
        (&[], &[]),
        (&["status", "x"], &[]),
    ] {
        assert_eq!(allowed_methods(path), methods, "{path:?}");
    }
    for (method, path, allow) in [
        (Get, &["reload"][..], "POST"),
        (Post, &["status"], "GET"),
        (Put, &["vips"], "GET, POST"),
        (Get, &backend, "DELETE"),
    ] {
        let (status, message) = refused(method, path, &[], Value::Null);
        assert_eq!(status, 405, "{method} {path:?}");
        assert!(message.ends_with(&format!("use {allow}")), "{message}");
    }
    assert_eq!(allow_header(&Method::ALL), "GET, POST, PUT, DELETE");
}

#[test]
fn the_path_is_checked_before_the_query_and_the_query_before_the_body() {
    let (status, message) = refused(Method::Get, &["nope"], &[("dry_run", "1")], Value::Null);
    assert_eq!(status, 404, "{message}");
    assert!(
        message.starts_with("no such endpoint: GET /v1/nope"),
        "{message}"
    );
    let (status, _) = refused(Method::Get, &["reload"], &[("dry_run", "1")], Value::Null);
    assert_eq!(status, 405);
    // A bad VIP in the path before a bad query.
    let (status, message) = refused(
        Method::Post,
        &["vips", "x", "backends"],
        &[("x", "1")],
        json!({"address": 1}),
    );
    assert_eq!(status, 400);
    assert!(!message.contains("query"), "{message}");
    // A bad query before a bad body.
    let (status, message) = refused(Method::Post, &["vips"], &[("x", "1")], json!({"port": 80}));
    assert_eq!(status, 400);
    assert!(
        message.contains("unknown query parameter \"x\""),
        "{message}"
    );
    let (_, message) = refused(
        Method::Delete,
        &["vips", "198.18.0.100:80"],
        &[("x", "1")],
        json!({"a": 1}),
    );
    assert!(message.contains("unknown query parameter"), "{message}");
}

#[test]
fn a_timeout_goes_only_with_a_drain() {
    let state = [
        "vips",
        "198.18.0.100:80",
        "backends",
        "198.18.0.11",
        "state",
    ];
    for other in ["enabled", "maintenance"] {
        let (status, message) = refused(
            Method::Put,
            &state,
            &[],
            json!({"state": other, "timeout_s": 30}),
        );
        assert_eq!(status, 400);
        assert!(
            message.contains("timeout_s: only with state \"draining\""),
            "{message}"
        );
    }
    for body in [
        json!({"state": "draining", "timeout_s": 30}),
        json!({"state": "draining", "timeout_s": 0}),
        json!({"state": "maintenance"}),
    ] {
        assert!(
            Call::decode(&request(Method::Put, &state, &[], body.clone())).is_ok(),
            "{body}"
        );
    }
}

#[test]
fn body_type_errors_name_the_json_path() {
    let backend = ["vips", "198.18.0.100:80", "backends", "198.18.0.11"];
    let state = [&backend[..], &["state"]].concat();
    let weight = [&backend[..], &["weight"]].concat();
    let vip = |extra: Value| {
        let mut body = json!({"address": "198.18.0.100", "port": 80});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let backends = json!([{"address": "198.18.0.11"}, {"address": "198.18.0.12"},
                          {"address": "198.18.0.13"}, {"address": "x"}]);
    for (method, path, body, expected) in [
        (
            Method::Post,
            &["vips"][..],
            json!({"address": "198.18.0.100", "port": "80"}),
            "invalid request body: port: invalid type: string \"80\"",
        ),
        (
            Method::Post,
            &["vips"],
            json!({"address": "198.18.0.100", "port": 18_446_744_073_709_551_615_u64}),
            "invalid request body: port: invalid value: integer `18446744073709551615`",
        ),
        (
            Method::Post,
            &["vips"],
            vip(json!({"backends": backends})),
            "invalid request body: backends[3].address: invalid IP address syntax",
        ),
        (
            Method::Post,
            &["vips"],
            json!({"port": 80}),
            "invalid request body: missing field `address`",
        ),
        (
            Method::Post,
            &["vips", "198.18.0.100:80", "backends"],
            json!({"address": "198.18.0.11", "weight": "5"}),
            "invalid request body: weight: invalid type: string \"5\"",
        ),
        (
            Method::Put,
            &state,
            json!({"state": "draining", "timeout_s": -1}),
            "invalid request body: timeout_s: invalid value: integer `-1`",
        ),
        (
            Method::Put,
            &weight,
            json!({"weight": 10_001}),
            "invalid request body: weight: 10001 is out of range 0..=10000",
        ),
        (
            Method::Put,
            &["limits", "global"],
            json!({"source": {"per_s": 20}, "prefix_v4": 300}),
            "prefix_v4: 300 is out of range 1..=32",
        ),
        (
            Method::Put,
            &["limits", "global"],
            json!({"source": {"per_s": 20}, "prefix_v6": 0}),
            "prefix_v6: 0 is out of range 1..=128",
        ),
        (
            Method::Put,
            &["limits", "global"],
            json!({"source": {"per_s": 0}}),
            "source.per_s: 0 is out of range 1..=1000000",
        ),
        (
            Method::Put,
            &["limits", "global"],
            json!({"prefix": {"per_s": 5, "burst": 1_000_001}}),
            "prefix.burst: 1000001 is out of range 1..=1000000",
        ),
        (
            Method::Put,
            &["limits", "global"],
            json!({"source": {"per_s": "5"}}),
            "invalid request body: source.per_s: invalid type: string \"5\"",
        ),
        (
            Method::Put,
            &["limits", "global"],
            json!({"source": {"per_s": 5, "brust": 1}}),
            "invalid request body: source.brust: unknown field `brust`",
        ),
        (
            Method::Post,
            &["acl"],
            json!({"scope": "global", "action": "deny", "source": "nope"}),
            "invalid request body: source: ",
        ),
    ] {
        let (status, message) = refused(method, path, &[], body.clone());
        assert_eq!(status, 400, "{body}: {message}");
        assert!(message.starts_with(expected), "{body}: {message:?}");
    }
}

#[test]
fn a_limit_burst_left_out_is_the_rate_as_in_the_file() {
    let call = Call::decode(&request(
        Method::Put,
        &["limits", "global"],
        &[],
        json!({"source": {"per_s": 20}, "prefix": {"per_s": 200, "burst": 400}}),
    ))
    .unwrap();
    let Route::SetLimits(Scope::Global, limits) = call.route else {
        panic!("{call:?}");
    };
    assert_eq!(
        limits,
        Limits {
            source: Some(crate::guard::RateLimit::new(20, Some(20), "source").unwrap()),
            prefix: Some(crate::guard::RateLimit::new(200, Some(400), "prefix").unwrap()),
            ..Limits::default()
        }
    );
    // As the file gives the same [[limit]].
    let file = crate::config::Config::from_toml_str(
        "interface = \"eth0\"\n[[limit]]\nsource_rate = 20\nprefix_rate = 200\nprefix_burst = 400\n",
        "test.toml",
    )
    .unwrap();
    assert_eq!(file.guard.limits.get(&Scope::Global), Some(&limits));
}
