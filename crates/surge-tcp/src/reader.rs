//! A connection's read side: a buffer that holds at most one frame plus one read chunk,
//! filled from the socket and decoded from the front.

use std::io;
use std::time::Duration;

use surge_protocol::constants::HEADER_SIZE_BYTES;
use surge_protocol::{Frame, FrameDecoder, FrameError};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

use crate::constants::READ_CHUNK_SIZE_BYTES;

/// Longest a closing connection keeps reading (and discarding) what the client still
/// sends, so that closing with unread bytes does not reset the connection before the
/// client read our last frame.
const CLOSE_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Most bytes read and discarded while closing.
const CLOSE_DRAIN_SIZE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The read half of a connection and its frame buffer.
pub(crate) struct FrameReader {
    read: OwnedReadHalf,
    buffer: Vec<u8>,
    /// Bytes before this index are consumed frames.
    start: usize,
    decoder: FrameDecoder,
}

impl FrameReader {
    pub fn new(read: OwnedReadHalf, decoder: FrameDecoder) -> FrameReader {
        FrameReader {
            read,
            buffer: Vec::with_capacity(READ_CHUNK_SIZE_BYTES),
            start: 0,
            decoder,
        }
    }

    /// The frame at the front of the unread bytes, if it is all there.
    pub fn decode(&self) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
        self.decoder.decode(&self.buffer[self.start..])
    }

    /// Marks `size` bytes (a decoded frame) as consumed.
    pub fn consume(&mut self, size: usize) {
        assert!(self.start + size <= self.buffer.len());
        self.start += size;
    }

    /// Reads more bytes from the socket; `Ok(0)` at end of stream. Cancel-safe: a
    /// cancelled call has read nothing. The buffer grows to at most the frame being read
    /// plus one read chunk, and only after the frame's size was checked.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        // A bad header is reported by the next `decode`; here it only sizes the read.
        let frame_size = match self.decoder.frame_size_needed(&self.buffer) {
            Ok(Some(size)) => size,
            Ok(None) | Err(_) => HEADER_SIZE_BYTES,
        };
        let missing = frame_size.saturating_sub(self.buffer.len());
        let spare = self.buffer.capacity() - self.buffer.len();
        let wanted = missing.max(READ_CHUNK_SIZE_BYTES);
        if spare < wanted {
            self.buffer.reserve_exact(wanted);
        }
        self.read.read_buf(&mut self.buffer).await
    }

    /// Reads and discards until the client closes, for a little while: see
    /// [`CLOSE_DRAIN_TIMEOUT`].
    pub async fn drain(mut self) {
        let mut discarded = 0;
        let mut chunk = vec![0; READ_CHUNK_SIZE_BYTES];
        let drain = async {
            while discarded < CLOSE_DRAIN_SIZE_BYTES_MAX {
                match self.read.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => discarded += read,
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_DRAIN_TIMEOUT, drain).await;
    }
}
