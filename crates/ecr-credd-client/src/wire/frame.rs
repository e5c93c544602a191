//! Framing: one message a line. The daemon reads with tokio and the clients
//! block, so the rules (where a frame ends, how long it may grow, what is
//! kept for the next one) live here, apart from the I/O, and both ends feed
//! their reads to a [`Framer`].

use std::io::{Read, Write};

use serde::Serialize;
use zeroize::Zeroizing;

use super::{encode, WireError};

/// Bytes a [`Framer`] holds before any grows: enough for a token's answer,
/// so the buffer holding it never reallocates and leaves a copy behind.
const INITIAL_CAPACITY: usize = 8192;

/// What a [`Framer`] has after the bytes pushed so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole frame, newline included.
    Frame(Zeroizing<Vec<u8>>),
    /// No newline yet, and room for more.
    NeedMore,
    /// `limit` bytes without a newline: the peer is not speaking this protocol.
    TooLarge,
}

/// Splits a byte stream into frames whatever sizes the reads come in,
/// keeping what follows a frame for the next (a connection may carry
/// several requests). Its buffers are zeroed when dropped: frames carry tokens.
pub struct Framer {
    buf: Zeroizing<Vec<u8>>,
    limit: usize,
    /// Bytes of `buf` known to hold no newline: each byte is looked at once,
    /// however many reads a large answer takes.
    scanned: usize,
}

impl Framer {
    /// A framer that allows frames of up to `limit` bytes, newline included.
    pub fn new(limit: usize) -> Self {
        Framer { buf: Zeroizing::new(Vec::with_capacity(INITIAL_CAPACITY.min(limit))), limit, scanned: 0 }
    }

    /// Adds bytes just read.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if the bytes pushed hold one.
    pub fn next_frame(&mut self) -> Next {
        let newline = self.buf[self.scanned..].iter().position(|&b| b == b'\n').map(|i| self.scanned + i);
        self.scanned = newline.unwrap_or(self.buf.len());
        match newline {
            Some(end) if end < self.limit => {
                let rest = Zeroizing::new(self.buf.split_off(end + 1));
                self.scanned = 0;
                Next::Frame(std::mem::replace(&mut self.buf, rest))
            }
            Some(_) => Next::TooLarge,
            None if self.buf.len() >= self.limit => Next::TooLarge,
            None => Next::NeedMore,
        }
    }

    /// What was pushed after the last whole frame: at end of stream, a last
    /// frame its sender did not end with a newline.
    pub fn take_rest(&mut self) -> Zeroizing<Vec<u8>> {
        self.scanned = 0;
        std::mem::replace(&mut self.buf, Zeroizing::new(Vec::new()))
    }
}

/// Reads one frame from a blocking stream. A stream that ends without a
/// newline yields what it sent (a peer that answers and closes at once).
pub fn read_frame(stream: &mut impl Read, framer: &mut Framer) -> Result<Zeroizing<Vec<u8>>, WireError> {
    let mut chunk = Zeroizing::new([0u8; 4096]);
    loop {
        match framer.next_frame() {
            Next::Frame(frame) => return Ok(frame),
            Next::TooLarge => return Err(WireError::TooLarge { limit: framer.limit }),
            Next::NeedMore => {}
        }
        let n = stream.read(&mut chunk[..])?;
        if n == 0 {
            let rest = framer.take_rest();
            return if rest.is_empty() { Err(WireError::Closed) } else { Ok(rest) };
        }
        framer.push(&chunk[..n]);
    }
}

/// Writes one message as a frame to a blocking stream.
pub fn write_frame<T: Serialize>(stream: &mut impl Write, msg: &T) -> std::io::Result<()> {
    stream.write_all(&encode(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pipelined_frames_and_keeps_the_rest() {
        let mut f = Framer::new(16);
        assert_eq!(f.next_frame(), Next::NeedMore);
        f.push(b"{\"a\"");
        assert_eq!(f.next_frame(), Next::NeedMore);
        f.push(b":1}\n{\"b\":2}\n{\"c");
        assert_eq!(f.next_frame(), Next::Frame(Zeroizing::new(b"{\"a\":1}\n".to_vec())));
        assert_eq!(f.next_frame(), Next::Frame(Zeroizing::new(b"{\"b\":2}\n".to_vec())));
        assert_eq!(f.next_frame(), Next::NeedMore);
        assert_eq!(&f.take_rest()[..], b"{\"c");
    }

    #[test]
    fn a_frame_at_the_limit_is_too_large_with_or_without_its_newline() {
        let mut f = Framer::new(8);
        f.push(b"1234567\n");
        assert_eq!(f.next_frame(), Next::Frame(Zeroizing::new(b"1234567\n".to_vec())));
        f.push(b"12345678");
        assert_eq!(f.next_frame(), Next::TooLarge);
        let mut f = Framer::new(8);
        f.push(b"12345678\n");
        assert_eq!(f.next_frame(), Next::TooLarge);
    }

    #[test]
    fn read_frame_returns_an_unterminated_last_frame_and_says_when_nothing_came() {
        let mut f = Framer::new(64);
        assert_eq!(&read_frame(&mut &b"{\"x\":1}"[..], &mut f).unwrap()[..], b"{\"x\":1}");
        let mut f = Framer::new(64);
        assert!(matches!(read_frame(&mut &b""[..], &mut f), Err(WireError::Closed)));
        let mut f = Framer::new(4);
        assert!(matches!(read_frame(&mut &b"123456\n"[..], &mut f), Err(WireError::TooLarge { limit: 4 })));
    }
}
