//! The `api_request` target: raw HTTP into the admin API's request
//! reading, routing and body checks.

use super::*;

/// An admin API request as lbctl sends it, raw: the input of `api_request`.
pub fn http_request(method: &str, target: &str, body: Option<&str>) -> Vec<u8> {
    let mut out =
        format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\naccept: application/json\r\n");
    if let Some(body) = body {
        out.push_str("content-type: application/json\r\n");
        out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    } else {
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// The head (as hyper would hand it to the server) and body of a raw
/// HTTP/1.1 request; None for what hyper itself would refuse or wait on.
fn split_http(data: &[u8]) -> Option<(hyper::http::request::Parts, &[u8])> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = parsed.parse(data).ok()? else {
        return None;
    };
    let mut builder = hyper::Request::builder()
        .method(parsed.method?)
        .uri(parsed.path?);
    let mut content_length = None;
    for header in parsed.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                std::str::from_utf8(header.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()?,
            );
        }
        builder = builder.header(header.name, header.value);
    }
    let parts = builder.body(()).ok()?.into_parts().0;
    let rest = data.get(head_len..)?;
    let body = match content_length {
        Some(len) => rest.get(..len.min(rest.len()))?,
        None => rest,
    };
    Some((parts, body))
}

/// Asserts `answer` is an error answer with the standard body.
fn assert_error_answer(answer: &Response, allowed: &[u16]) {
    assert!(
        allowed.contains(&answer.status),
        "status {} for a bad request: {}",
        answer.status,
        answer.body
    );
    assert!(
        answer.body["error"]["code"].is_string() && answer.body["error"]["message"].is_string(),
        "not an error body: {}",
        answer.body
    );
}

/// The admin API on arbitrary HTTP requests: [`parse_request`] (what the
/// server answers with) either decodes a request whose path survives
/// re-encoding, or gives an error answer (400, 404, 405, 413, 415) with the
/// standard body; [`Call::decode`] either names an endpoint whose VIP and
/// backend arguments print and parse back the same, or answers 400, 404 or 405;
/// every schema type read from any body is the value or a 400; never a
/// panic.
pub fn api_request(data: &[u8]) {
    let Some((head, body)) = split_http(data) else {
        return;
    };
    let request = match parse_request(&head, body) {
        Ok(request) => request,
        Err(answer) => {
            assert_error_answer(&answer, &[400, 404, 405, 413, 415]);
            return;
        }
    };
    // The path as the server shows it decodes to the same segments.
    let shown = request.display_path();
    let again = hyper::Request::builder()
        .method(head.method.clone())
        .uri(&shown)
        .body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|e| panic!("the shown path {shown:?} is no URI: {e}"));
    match parse_request(&again, b"") {
        Ok(r) => assert_eq!(r.path, request.path, "path shown as {shown:?}"),
        Err(answer) => panic!("the shown path {shown:?} is refused: {}", answer.body),
    }

    // Every body shape, whatever the path.
    check_body::<VipSpec>(&request);
    check_body::<BackendSpec>(&request);
    check_body::<StateChange>(&request);
    check_body::<WeightChange>(&request);
    check_body::<NodeChange>(&request);

    let reparsed = |id: &VipId| {
        let shown = id.to_string();
        assert_eq!(vip_id(&shown).ok(), Some(*id), "VIP shown as {shown}");
    };
    match Call::decode(&request).map(|call| call.route) {
        Err(answer) => assert_error_answer(&answer, &[400, 404, 405]),
        Ok(Route::AddVip(spec)) => match VipConfig::try_from(&spec) {
            Ok(vip) => {
                reparsed(&VipId::of(&vip));
                assert_vip_config(&vip);
            }
            Err(error) => assert_error_answer(&Response::from(error), &[400]),
        },
        Ok(Route::AddBackend(id, spec)) => {
            reparsed(&id);
            for mode in lb_common::Mode::ALL {
                let mut vip = VipConfig::new(id.address, id.port, id.protocol);
                vip.forwarding = mode;
                match convert::backend_config(&vip, &spec) {
                    Ok(backend) => assert_eq!(backend.address, spec.address),
                    Err(error) => assert_error_answer(&Response::from(error), &[400]),
                }
            }
        }
        Ok(
            Route::GetVip(id)
            | Route::RemoveVip(id)
            | Route::RemoveBackend(id, _)
            | Route::SetState(id, _, _)
            | Route::SetWeight(id, _, _)
            | Route::Flows(id, _),
        ) => reparsed(&id),
        Ok(Route::Flow(id, client)) => {
            reparsed(&id);
            assert!(
                client.port() != 0 && client.is_ipv4() == id.address.is_ipv4(),
                "flow {client} of {id} accepted"
            );
            assert_eq!(
                client.to_string().parse(),
                Ok(client),
                "client shown as {client}"
            );
        }
        Ok(Route::SetNode(change)) => {
            let name = change.state.name();
            assert_eq!(NodeState::from_name(name), Some(change.state), "{name}");
        }
        Ok(Route::AddAcl(rule) | Route::RemoveAcl(rule)) => {
            // An accepted rule reads back from its own words (what the
            // path and `lbctl acl list` show).
            assert_eq!(rule.scope.to_string().parse().ok(), Some(rule.scope));
            assert_eq!(rule.action.to_string().parse().ok(), Some(rule.action));
            assert_eq!(rule.source.to_string().parse().ok(), Some(rule.source));
        }
        Ok(Route::SetLimits(scope, _) | Route::ClearLimits(scope)) => {
            assert_eq!(scope.to_string().parse().ok(), Some(scope));
        }
        Ok(
            Route::Status
            | Route::ListVips
            | Route::Reload
            | Route::Config
            | Route::Node
            | Route::Acl,
        ) => {}
    }
}

fn check_body<T: serde::de::DeserializeOwned>(request: &Request) {
    if let Err(answer) = request.body_as::<T>() {
        assert_eq!(answer.status, 400);
        assert_eq!(answer.body["error"]["code"], code::BAD_REQUEST);
    }
}

/// A VIP accepted from the API is one the config file accepts too: dumped
/// into a file, it loads back the same.
fn assert_vip_config(vip: &VipConfig) {
    let mut file = Config::from_toml_str("interface = \"lo\"\n", "fuzz").expect("minimal config");
    file.vips.push(vip.clone());
    let text = config::to_toml(&file);
    match Config::from_toml_str(&text, "dump") {
        Ok(again) => assert_eq!(again, file, "dumped as:\n{text}"),
        Err(e) => panic!("a VIP the API accepts does not load from its dump: {e}\n{text}"),
    }
}
