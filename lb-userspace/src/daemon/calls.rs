//! API requests on their way to the engine's loop: the handler the admin
//! API serves through, the reads of flow counts that wait for a census,
//! and the answers given when the loop stops before answering.

use tokio::sync::{mpsc, oneshot};

use super::{
    engine::{flow_census::Census, Engine},
    http, routes,
};
use crate::api::{code, Handler, Request, Response};

/// An API request on its way to the engine, with where the answer goes.
pub(super) type Call = (Request, oneshot::Sender<Response>);

/// A read of flow counts, waiting for a census to answer it.
pub(super) enum CountRead {
    /// An API request (status, the VIPs, one VIP, a backend's flows).
    Call(Call),
    /// A metrics scrape.
    Scrape(http::Scrape),
}

/// Answers `read` with `census` lent to its handler.
pub(super) async fn answer_count_read(
    engine: &mut Engine,
    census: std::sync::Arc<Census>,
    read: CountRead,
) {
    match read {
        CountRead::Call((request, reply)) => {
            engine.lend_census(Some(census));
            let response = routes::handle(engine, request).await;
            engine.lend_census(None);
            let _ = reply.send(response);
        }
        CountRead::Scrape(reply) => {
            engine.lend_census(Some(census));
            let text = engine.render_metrics();
            engine.lend_census(None);
            let _ = reply.send(text);
        }
    }
}

/// Answers the requests still queued for the engine's loop, which reads
/// no more, and refuses further ones: otherwise each waits for an answer
/// that never comes and the API server's drain waits them out.
pub(super) fn refuse_queued(calls: &mut mpsc::Receiver<Call>) {
    calls.close();
    while let Ok((_, reply)) = calls.try_recv() {
        let _ = reply.send(Response::error(
            503,
            code::INTERNAL,
            "lbd is shutting down; nothing was changed",
        ));
    }
}

/// The API server's handler: hands each request to the engine's loop.
pub(super) struct ToEngine(pub(super) mpsc::Sender<Call>);

impl Handler for ToEngine {
    async fn handle(&self, request: Request) -> Response {
        let change = may_change(&request);
        let (reply, answer) = oneshot::channel();
        if self.0.send((request, reply)).await.is_err() {
            return Response::error(503, code::INTERNAL, "lbd is shutting down");
        }
        answer.await.unwrap_or_else(|_| dropped_reply(change))
    }
}

/// Whether `request` may change something when carried out: not a read
/// (`GET`) and not a dry run. A malformed `dry_run` (refused before
/// anything is done) counts as a change: the answer that claims least.
pub(super) fn may_change(request: &Request) -> bool {
    request.method != crate::api::Method::Get
        && !matches!(
            request.query.get("dry_run").map(String::as_str),
            Some("true" | "1")
        )
}

/// The answer to a request whose reply was dropped unanswered: the engine
/// task ended while carrying it out (a normal stop answers the requests
/// it queued, see `refuse_queued`). A change may be applied, in part or
/// whole, so it is a failure (500) with its own code (`maybe_applied`:
/// lbctl's exit 8), never "nothing was done" (503: lbctl would say try
/// again) nor a plain failure; a read or dry run changed nothing.
fn dropped_reply(change: bool) -> Response {
    if change {
        Response::error(
            500,
            code::MAYBE_APPLIED,
            "lbd's engine stopped while carrying out the change, before answering: it may be applied, in whole or in part; check `lbctl status` before trying again",
        )
    } else {
        Response::error(503, code::INTERNAL, "lbd is shutting down")
    }
}

#[cfg(test)]
mod shutdown_tests {
    use super::*;

    #[tokio::test]
    async fn requests_queued_at_a_stop_are_answered_at_once() {
        let (tx, mut calls) = mpsc::channel::<Call>(4);
        let handler = ToEngine(tx);
        let request = || Request {
            method: crate::api::Method::Post,
            path: vec!["reload".to_owned()],
            query: Default::default(),
            body: serde_json::Value::Null,
        };
        let queued = tokio::spawn(async move {
            let first = handler.handle(request()).await;
            let later = handler.handle(request()).await;
            (first, later)
        });
        // The first request waits in the queue, unread.
        while calls.is_empty() {
            tokio::task::yield_now().await;
        }
        refuse_queued(&mut calls);
        let (first, later) = tokio::time::timeout(std::time::Duration::from_secs(1), queued)
            .await
            .expect("answered at once")
            .expect("task");
        assert_eq!(first.status, 503);
        assert_eq!(later.status, 503);
    }

    /// An engine that drops a request's reply unanswered (its task ended
    /// mid-request): a change may be applied (500, saying so), not "lbd
    /// is shutting down" (503, which lbctl reads as nothing was done); a
    /// read or a dry run changed nothing and stays 503.
    #[tokio::test]
    async fn a_change_whose_reply_is_dropped_may_be_applied() {
        let (tx, mut calls) = mpsc::channel::<Call>(4);
        let engine = tokio::spawn(async move {
            while let Some((_, reply)) = calls.recv().await {
                drop(reply);
            }
        });
        let handler = ToEngine(tx);
        let request = |method, path: &str, query: &[(&str, &str)]| Request {
            method,
            path: vec![path.to_owned()],
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: serde_json::Value::Null,
        };
        use crate::api::Method;
        let change = handler.handle(request(Method::Post, "reload", &[])).await;
        assert_eq!(change.status, 500, "{:?}", change.body);
        let message = change.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("may be applied") && !message.contains("shutting down"),
            "{message}"
        );
        // Its own code, which lbctl maps to its "may be applied" exit
        // status (8), apart from a 500 that changed nothing.
        let code = change.body["error"]["code"].as_str().unwrap_or_default();
        assert_eq!(code, "maybe_applied", "{:?}", change.body);
        let error = crate::api::client::ClientError::Api(crate::api::ApiError {
            status: change.status,
            code: code.to_owned(),
            message: message.to_owned(),
        });
        assert_eq!(
            error.exit_code(),
            crate::api::client::ClientError::EXIT_CHANGE_UNANSWERED
        );
        let not_dry = handler
            .handle(request(Method::Post, "reload", &[("dry_run", "false")]))
            .await;
        assert_eq!(not_dry.status, 500);
        for (method, path, query) in [
            (Method::Get, "status", &[][..]),
            (Method::Post, "reload", &[("dry_run", "true")][..]),
            (Method::Post, "reload", &[("dry_run", "1")][..]),
        ] {
            let answer = handler.handle(request(method, path, query)).await;
            assert_eq!(answer.status, 503, "{method} {path} {query:?}");
        }
        drop(handler);
        engine.await.expect("engine task");
    }
}
