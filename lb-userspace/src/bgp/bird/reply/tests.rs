use tokio::io::BufReader;

use super::*;

#[test]
fn lines_are_read_by_their_code_and_separator() {
    assert_eq!(
        parse_line("0003 Reconfigured"),
        Line::Final(3, "Reconfigured")
    );
    assert_eq!(
        parse_line("0002-Reading configuration from /etc/bird.conf"),
        Line::More("Reading configuration from /etc/bird.conf")
    );
    assert_eq!(parse_line(" continued"), Line::More("continued"));
    assert_eq!(parse_line("0000"), Line::Final(0, ""));
    let error = "8002 /run/lbd-bgp/vips.conf:3:9 syntax error";
    assert_eq!(
        parse_line(error),
        Line::Final(8002, "/run/lbd-bgp/vips.conf:3:9 syntax error")
    );
    assert!(!Reply {
        code: 8002,
        text: String::new()
    }
    .is_success());
    assert!(!Reply {
        code: 6,
        text: String::new()
    }
    .is_success());
    assert!(Reply {
        code: 4,
        text: String::new()
    }
    .is_success());
}

/// Whatever follows the four digits, reading a line never panics: a
/// multi-byte character there is no separator, and the line is text.
#[test]
fn a_line_with_any_character_after_the_code_is_read_without_a_panic() {
    assert_eq!(parse_line("1234é rest"), Line::More("234é rest"));
    assert_eq!(parse_line("0001é"), Line::More("001é"));
    assert_eq!(parse_line("9001 é"), Line::Final(9001, "é"));
    assert_eq!(
        parse_line("0009-lbd_vips4: disabled"),
        Line::More("lbd_vips4: disabled")
    );
    assert_eq!(parse_line("12é4 x"), Line::More("2é4 x"));
    assert_eq!(parse_line("é"), Line::More(""));
    assert_eq!(parse_line(""), Line::More(""));
}

/// An endless stream of `x` after a reply code, counting the bytes
/// read from it.
struct Endless {
    given: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    left: usize,
}

impl tokio::io::AsyncRead for Endless {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = buf.remaining().min(self.left);
        let given = self
            .given
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        let bytes: Vec<u8> = (0..n)
            .map(|i| {
                if given + i < 5 {
                    b"0001 "[given + i]
                } else {
                    b'x'
                }
            })
            .collect();
        buf.put_slice(&bytes);
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

/// A reply line with no end fails once it is longer than the cap,
/// having read at most the cap (and one buffer) of it, not all of it.
#[tokio::test]
async fn an_endless_reply_line_fails_after_reading_at_most_the_cap() {
    let given = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let endless = Endless {
        given: given.clone(),
        left: 64 << 20,
    };
    let mut reader = BufReader::new(endless);
    let error = read_reply(&mut reader).await.unwrap_err();
    assert!(
        format!("{error:#}").contains(&format!(
            "BIRD sent a line longer than {MAX_LINE_BYTES} bytes"
        )),
        "{error:#}"
    );
    let read = given.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read <= MAX_LINE_BYTES + 8192, "read {read} bytes");
}
