//! The signals that came while lb-decap started, before `run` applies
//! anything (blocked from `main`'s first line): a stop is honoured, a
//! SIGHUP absorbed.

use lb_decap::signals::{Request, Signals};

/// Takes the signals that came while lb-decap started (they are blocked
/// from the first line of `main`); returns whether one asked it to stop.
/// A SIGHUP among them needs no reload: the first apply reads the file.
pub(super) fn stop_requested_before_start(signals: &Signals) -> anyhow::Result<bool> {
    let mut stop = false;
    while let Some(request) = signals.next_within(std::time::Duration::ZERO)? {
        stop |= request == Request::Stop;
    }
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signals that came while lb-decap started, before `run` applies:
    /// a stop ends it with nothing touched (as the default action did),
    /// a SIGHUP is taken (the first apply reads the file anyway).
    #[test]
    fn a_stop_before_the_first_apply_is_seen_and_a_reload_absorbed() {
        let signals = Signals::block().unwrap();
        assert!(!stop_requested_before_start(&signals).unwrap());
        // SAFETY: raise(3) on this thread, where the signals are blocked:
        // they stay pending for the waits below.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        assert!(!stop_requested_before_start(&signals).unwrap());
        assert_eq!(
            signals.next_within(std::time::Duration::ZERO).unwrap(),
            None
        );
        for stop in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: as above.
            assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
            assert_eq!(unsafe { libc::raise(stop) }, 0);
            assert!(stop_requested_before_start(&signals).unwrap(), "{stop}");
            assert_eq!(
                signals.next_within(std::time::Duration::ZERO).unwrap(),
                None
            );
        }
    }
}
