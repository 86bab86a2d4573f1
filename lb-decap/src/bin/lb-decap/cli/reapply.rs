//! A re-apply after a look saw an interface change, and how it ended: a
//! failure is fatal unless the interface went away meanwhile (then it is
//! waited for).

use anyhow::Context as _;
use lb_decap::watch::Seen;
use tracing::warn;

/// How a re-apply after a change of the interface ended.
#[derive(Debug)]
pub(super) enum Reapplied<T> {
    /// Applied.
    Done(T),
    /// Failed, and the interface is not ready now (gone again since the
    /// look): waited for like any other (said in words); the snapshot stays.
    NotReady(String),
}

/// Applies again after a look saw `what` change. A failure is an error,
/// unless `look` then finds the interface not ready (it went away between
/// the look and the apply): that is logged and waited for.
pub(super) fn reapply<T>(
    what: &str,
    apply: impl FnOnce() -> anyhow::Result<T>,
    look: impl FnOnce() -> Seen,
) -> anyhow::Result<Reapplied<T>> {
    match apply() {
        Ok(done) => Ok(Reapplied::Done(done)),
        Err(e) => match look() {
            Seen::NotReady(now) => {
                warn!(
                    error = format!("{e:#}"),
                    %now,
                    "re-applying failed with the interface not ready; waiting for it"
                );
                Ok(Reapplied::NotReady(now))
            }
            Seen::Same | Seen::Changed(_) => Err(e).with_context(|| {
                format!("re-applying after a change of the interface ({what}); decapsulation may have stopped")
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reapply_failing_because_the_interface_went_away_waits_for_it() {
        let gone = || Seen::NotReady("interface eth9 is gone".into());
        let failed = || -> anyhow::Result<u32> { Err(anyhow::anyhow!("no such device")) };
        match reapply("recreated", failed, gone).expect("waited for") {
            Reapplied::NotReady(now) => assert_eq!(now, "interface eth9 is gone"),
            Reapplied::Done(_) => panic!("not applied"),
        }
        // Still there: the failure is an error.
        let error = reapply("recreated", failed, || Seen::Same).expect_err("fatal");
        assert!(format!("{error:#}").contains("no such device"), "{error:#}");
        let error =
            reapply("recreated", failed, || Seen::Changed("again".into())).expect_err("fatal");
        assert!(format!("{error:#}").contains("re-applying"), "{error:#}");
        assert!(matches!(
            reapply("recreated", || Ok(7), || panic!("not looked at")),
            Ok(Reapplied::Done(7))
        ));
    }
}
