//! What `backend drain --wait` and `node drain --wait` do when a look at
//! lbd fails after the drain was made. The drain is in force then (and
//! kept across a restart of lbd), so lbd being unavailable for a while
//! (restarting: no socket, nothing listening on it, 503 while it shuts
//! down; too busy; a slow answer past `--api-timeout`) is waited through,
//! as `status --watch` does, within the wait's own bound. It is never
//! exit 5 ("nothing was done; try again later"): a script that tried the
//! drain again would push its deadline further out each time.

use std::time::{Duration, Instant};

use lb_userspace::api::client::ClientError;

/// How often a `drain --wait` (backend or node) asks lbd: twice a second,
/// quick enough to end soon after the last flow, cheap for lbd.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What a `--wait` does with a look at lbd that failed, its drain made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterPollError {
    /// lbd is unavailable for now: look again.
    KeepWaiting,
    /// lbd is unavailable, and the wait's own bound has passed: end as
    /// that bound says.
    OutOfTime,
    /// A failure looking again would not mend (no permission, not a
    /// socket, an answer lbctl does not understand, another error from
    /// lbd): end the wait, the drain made (exit 1).
    GiveUp,
}

/// Whether `error` says lbd is unavailable for now, as across a restart,
/// rather than something looking again would not change: a socket that
/// is missing or that nobody listens on (lbd stopped, not yet started
/// again), 503 (shutting down, or out of connections), a connection lbd
/// closed without answering (it crashed or stopped mid-request), a full
/// listen backlog, no answer within `--api-timeout`, another connect
/// failure. Not a permission or a path that is no socket, or that no
/// socket can have (lbd replaces its socket with the same mode and
/// group, atomically), nor a garbled answer (a newer lbd this lbctl does
/// not understand answers the same each time).
fn lbd_unavailable(error: &ClientError) -> bool {
    match error {
        ClientError::NotRunning { .. }
        | ClientError::NotListening { .. }
        | ClientError::Busy { .. }
        | ClientError::Timeout { .. }
        | ClientError::Dropped { .. }
        | ClientError::Connect { .. } => true,
        ClientError::Api(api) => api.status == 503,
        ClientError::NotASocket { .. }
        | ClientError::BadSocketPath { .. }
        | ClientError::PermissionDenied { .. }
        | ClientError::ChangeTimeout { .. }
        | ClientError::ChangeCutOff { .. }
        | ClientError::Protocol(_) => false,
    }
}

/// What a `--wait` whose drain was made does after a look at lbd failed
/// with `error` at `now`: lbd unavailable is waited for until
/// `give_up_at` (None: the wait has no bound of its own); any other
/// failure ends the wait.
pub(crate) fn after_poll_error(
    error: &ClientError,
    now: Instant,
    give_up_at: Option<Instant>,
) -> AfterPollError {
    if !lbd_unavailable(error) {
        return AfterPollError::GiveUp;
    }
    if give_up_at.is_some_and(|at| now >= at) {
        return AfterPollError::OutOfTime;
    }
    AfterPollError::KeepWaiting
}

/// Says once per outage, on stderr (stdout may be NDJSON), that lbd
/// stopped answering and the wait goes on; `since` remembers the outage
/// (the caller clears it once lbd answers).
pub(crate) fn note_unanswered(error: &ClientError, since: &mut Option<Instant>, what: &str) {
    if begins_outage(since) {
        eprintln!("lbctl: lbd is not answering ({error}); {what} stays in force: still waiting");
    }
}

/// Whether a look lbd did not answer begins an outage (`since`, None
/// while lbd answers; set to now when it does begin one): the look that
/// says so, once an outage rather than once a look.
pub(crate) fn begins_outage(since: &mut Option<Instant>) -> bool {
    if since.is_some() {
        return false;
    }
    *since = Some(Instant::now());
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{path::PathBuf, time::Duration};

    use lb_userspace::api::ApiError;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::test_scratch::ScratchDir;

    fn api(status: u16) -> ClientError {
        ClientError::Api(ApiError {
            status,
            code: "internal".to_owned(),
            message: "lbd is shutting down".to_owned(),
        })
    }

    /// A restarting lbd (503, then no socket or nobody listening on it),
    /// a busy or slow one are waited for until the wait's bound; anything
    /// else ends the wait at once.
    #[test]
    fn only_an_unavailable_lbd_is_waited_for_and_only_within_the_bound() {
        let path = PathBuf::from("/run/lbd/lbd.sock");
        let after = Duration::from_secs(10);
        let unavailable = [
            api(503),
            ClientError::NotRunning { path: path.clone() },
            ClientError::NotListening { path: path.clone() },
            ClientError::Busy {
                path: path.clone(),
                after,
            },
            ClientError::Timeout {
                path: path.clone(),
                after,
            },
            ClientError::Connect {
                path: path.clone(),
                source: std::io::Error::other("reset"),
            },
            ClientError::Dropped {
                path: path.clone(),
                why: "connection closed before message completed".to_owned(),
            },
        ];
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        for error in &unavailable {
            // What the same error meant before: exit 5, "nothing was done".
            assert_eq!(error.exit_code(), ClientError::EXIT_UNAVAILABLE, "{error}");
            assert_eq!(
                after_poll_error(error, now, None),
                AfterPollError::KeepWaiting,
                "{error}"
            );
            assert_eq!(
                after_poll_error(error, now, Some(later)),
                AfterPollError::KeepWaiting,
                "{error}"
            );
            assert_eq!(
                after_poll_error(error, later, Some(later)),
                AfterPollError::OutOfTime,
                "{error}"
            );
        }
        let others = [
            api(500),
            api(400),
            ClientError::PermissionDenied { path: path.clone() },
            ClientError::NotASocket {
                path: path.clone(),
                what: "a directory",
            },
            ClientError::Protocol("the answer is not JSON".to_owned()),
            ClientError::BadSocketPath {
                path: path.clone(),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            },
        ];
        for error in &others {
            assert_eq!(
                after_poll_error(error, now, None),
                AfterPollError::GiveUp,
                "{error}"
            );
            assert_eq!(
                after_poll_error(error, now, Some(later)),
                AfterPollError::GiveUp,
                "{error}"
            );
        }
    }

    /// One answer of [`FakeLbd`].
    #[derive(Debug, Clone)]
    pub(crate) enum Answer {
        /// 200 with this JSON body.
        Ok(String),
        /// This status with lbd's error body.
        Error(u16),
        /// Reads the request and answers nothing for this long.
        Stall(Duration),
        /// This status with this body (an error body of lbd's own making).
        Body(u16, String),
        /// Reads the request and closes the connection without an answer,
        /// as an lbd that crashes (or stops) mid-request does.
        Close,
    }

    /// An lbd that answers each request on its socket with the next of
    /// `answers` (the last one again once they run out), whatever it asks.
    pub(crate) struct FakeLbd {
        /// Its socket.
        pub(crate) path: PathBuf,
        /// Its directory, removed when dropped.
        _dir: ScratchDir,
        /// How many requests it took.
        asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        /// The requests it read (head and what came of the body with
        /// it), in the order they came, for tests of what lbctl sends.
        requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl FakeLbd {
        pub(crate) fn start(tag: &str, answers: Vec<Answer>) -> Self {
            let dir = ScratchDir::new(&format!("lbctl-fake-{tag}"));
            let path = dir.join("lbd.sock");
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let count = asked.clone();
            let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let read = requests.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        return;
                    };
                    let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let answer = answers[n.min(answers.len() - 1)].clone();
                    let read = read.clone();
                    tokio::spawn(async move {
                        let mut request = Vec::new();
                        let mut buffer = [0u8; 4096];
                        // The head, then as much body as it announces.
                        let whole = |request: &[u8]| {
                            let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n")
                            else {
                                return false;
                            };
                            let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|line| line.strip_prefix("content-length:"))
                                .and_then(|n| n.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            request.len() >= end + 4 + length
                        };
                        while !whole(&request) {
                            match stream.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => request.extend_from_slice(&buffer[..n]),
                            }
                        }
                        read.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&request).into_owned());
                        let (status, body) = match answer {
                            Answer::Ok(body) => (200, body),
                            Answer::Error(status) => (
                                status,
                                r#"{"error":{"code":"internal","message":"lbd is shutting down"}}"#
                                    .to_owned(),
                            ),
                            Answer::Stall(time) => {
                                tokio::time::sleep(time).await;
                                return;
                            }
                            Answer::Body(status, body) => (status, body),
                            Answer::Close => return,
                        };
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    });
                }
            });
            Self {
                path,
                _dir: dir,
                asked,
                requests,
            }
        }

        /// The requests it read so far, as text.
        pub(crate) fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }

        /// How many requests it took so far.
        pub(crate) fn asked(&self) -> usize {
            self.asked.load(std::sync::atomic::Ordering::SeqCst)
        }
    }
}
