//! The backend's service in the decap lab: a TCP listener on every
//! address (so on the VIPs on `lo`) that answers each line with the
//! address it was reached on and the peer it saw, so a test can tell the
//! client's address was preserved through the tunnel.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};

/// Sends one line and reads the answer line.
pub fn ask(stream: &mut TcpStream) -> anyhow::Result<String> {
    stream.write_all(b"hello\n")?;
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    reader.read_line(&mut line).context("reading the answer")?;
    if line.is_empty() {
        bail!("connection closed without an answer");
    }
    Ok(line.trim().to_owned())
}

/// Accepts until `stop`, one thread per connection.
pub(super) fn serve(listeners: &[TcpListener], stop: &Arc<AtomicBool>) {
    let mut handlers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let mut accepted = false;
        for listener in listeners {
            if let Ok((stream, peer)) = listener.accept() {
                accepted = true;
                let stop = stop.clone();
                handlers.push(std::thread::spawn(move || answer(stream, peer, &stop)));
            }
        }
        if !accepted {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for handler in handlers {
        let _ = handler.join();
    }
}

/// Answers every line with the peer address the service saw.
fn answer(mut stream: TcpStream, peer: SocketAddr, stop: &AtomicBool) {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .is_err()
    {
        return;
    }
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {
                if stream
                    .write_all(
                        format!(
                            "served {} for {}\n",
                            stream
                                .local_addr()
                                .map(|a| a.ip().to_string())
                                .unwrap_or_default(),
                            peer.ip()
                        )
                        .as_bytes(),
                    )
                    .is_err()
                {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}
