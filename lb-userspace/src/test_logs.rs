//! What a piece of code logs, for unit tests that check a warning is
//! given (or given once): one capture, shared by every module's tests.

/// Everything `f` logs on this thread (INFO and up), as plain text.
pub(crate) fn logs_of(f: impl FnOnce()) -> String {
    logs_at(tracing::Level::INFO, f).1
}

/// What `f` returns, and what it logs on this thread at `level` and
/// above, as plain text.
pub(crate) fn logs_at<T>(level: tracing::Level, f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().unwrap().clone();
    (out, String::from_utf8_lossy(&bytes).into_owned())
}
