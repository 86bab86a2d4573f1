//! For unit tests that need a network of their own (root only): a
//! thread in a network namespace it alone is in, gone with it, so nothing
//! is configured outside it, and `ip` run there.

/// Whether the tests run as root (the namespace tests skip, saying so,
/// otherwise).
pub(crate) fn is_root() -> bool {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// Runs `test` on a thread of its own in a new network namespace and
/// waits for it; its panic fails the caller.
pub(crate) fn in_own_netns(test: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread (and the processes it
        // starts).
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        test();
    })
    .join()
    .expect("the test's thread (see its panic above)");
}

/// `ip` in this thread's network namespace; panics if it fails.
pub(crate) fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("running ip");
    assert!(status.success(), "ip {args:?}");
}
