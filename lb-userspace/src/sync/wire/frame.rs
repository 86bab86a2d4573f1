//! Framing: a big-endian `u32` body length, then the body; a length out
//! of range is refused before anything is read into memory.

use super::{Reader, WireError, FRAME_HEADER_LEN, MAX_FRAME_LEN};

/// The body length a frame header announces, checked against the limits
/// before anything is allocated for it.
pub(crate) fn frame_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, WireError> {
    frame_len_within(header, MAX_FRAME_LEN)
}

/// [`frame_len`] with a limit of `max` (at most [`MAX_FRAME_LEN`]): a
/// handshake's frames are read with [`MAX_HANDSHAKE_FRAME_LEN`], so a
/// client without the key cannot make a node allocate a session frame's
/// worth for each connection.
///
/// [`MAX_HANDSHAKE_FRAME_LEN`]: super::MAX_HANDSHAKE_FRAME_LEN
pub(crate) fn frame_len_within(
    header: [u8; FRAME_HEADER_LEN],
    max: usize,
) -> Result<usize, WireError> {
    let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    let max = max.min(MAX_FRAME_LEN);
    if len == 0 || len > max {
        return Err(WireError::FrameLength { len, max });
    }
    Ok(len)
}

fn check_frame_len(len: usize) -> Result<(), WireError> {
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(WireError::FrameLength {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(())
}

/// Wraps a body in a frame (length prefix). Used for the handshake
/// messages; sealed frames come framed from [`Sealer`](super::Sealer).
pub fn encode_frame(body: &[u8]) -> Result<Vec<u8>, WireError> {
    let header = frame_header(body.len())?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    Ok(out)
}

pub(super) fn frame_header(len: usize) -> Result<[u8; FRAME_HEADER_LEN], WireError> {
    check_frame_len(len)?;
    let len = u32::try_from(len).map_err(|_| WireError::FrameLength {
        len,
        max: MAX_FRAME_LEN,
    })?;
    Ok(len.to_be_bytes())
}

/// Takes one whole frame off the front of `bytes`: its body and what
/// follows. An incomplete frame is [`WireError::Truncated`].
pub fn split_frame(bytes: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let mut r = Reader::new(bytes);
    let len = frame_len(r.array::<FRAME_HEADER_LEN>("frame header")?)?;
    let body = r.take(len, "frame body")?;
    Ok((body, r.rest()))
}
