//! The fixed 32-byte frame header, little-endian:
//!
//! ```text
//!  0       4       6    7    8                16        20        24   25   26    28      32
//!  +-------+-------+----+----+----------------+---------+---------+----+----+-----+-------+
//!  | magic |version|kind|flag| request_id     |body_size|checksum | op |stat| code| count |
//!  |"SRGP" |  u16  | u8 | u8 | u64            |  u32    | u32     | u8 | u8 | u16 |  u32  |
//!  +-------+-------+----+----+----------------+---------+---------+----+----+-----+-------+
//! ```
//!
//! `checksum` is the crc32c of the 32 header bytes with the checksum field zeroed, followed
//! by the body. `op`, `stat`, `code` and `count` are used by some kinds and zero in others
//! (see `docs/PROTOCOL.md`); `flag` is always zero in version 1.

use crate::constants::{HEADER_SIZE_BYTES, MAGIC, PROTOCOL_VERSION};
use crate::le::{u16_at, u32_at, u64_at};

/// Byte offsets of the header fields.
pub(crate) mod offset {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 6;
    pub const FLAGS: usize = 7;
    pub const REQUEST_ID: usize = 8;
    pub const BODY_SIZE: usize = 16;
    pub const CHECKSUM: usize = 20;
    pub const OPERATION: usize = 24;
    pub const STATUS: usize = 25;
    pub const CODE: usize = 26;
    pub const COUNT: usize = 28;
}

const _: () = assert!(offset::COUNT + 4 == HEADER_SIZE_BYTES);

/// The kind of a frame: the byte at offset 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Client → server, first frame: client id and token.
    Hello = 1,
    /// Server → client: the handshake succeeded; granted scopes and limits.
    Welcome = 2,
    /// Server → client: the handshake failed; the server closes.
    HandshakeError = 3,
    /// Client → server: a batch of commands of one operation.
    Request = 4,
    /// Server → client: the outcome of one request.
    Reply = 5,
    /// Server → client: a connection-level error; the server closes.
    Error = 6,
    /// Either way: a liveness probe; answered by `Pong` with the same request id.
    Ping = 7,
    /// The answer to `Ping`.
    Pong = 8,
    /// Client → server: ids of one kind of record to read.
    Lookup = 9,
    /// Server → client: the records a `Lookup` found.
    LookupReply = 10,
}

impl FrameKind {
    /// The kind for a byte, if it is one.
    pub const fn from_u8(value: u8) -> Option<FrameKind> {
        match value {
            1 => Some(FrameKind::Hello),
            2 => Some(FrameKind::Welcome),
            3 => Some(FrameKind::HandshakeError),
            4 => Some(FrameKind::Request),
            5 => Some(FrameKind::Reply),
            6 => Some(FrameKind::Error),
            7 => Some(FrameKind::Ping),
            8 => Some(FrameKind::Pong),
            9 => Some(FrameKind::Lookup),
            10 => Some(FrameKind::LookupReply),
            _ => None,
        }
    }
}

/// The header fields after magic and version, as numbers (not yet validated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: u8,
    pub flags: u8,
    pub request_id: u64,
    pub body_size: u32,
    pub checksum: u32,
    pub operation: u8,
    pub status: u8,
    pub code: u16,
    pub count: u32,
}

impl Header {
    /// Reads the fields of a header whose magic and version the caller checked.
    pub fn read(bytes: &[u8; HEADER_SIZE_BYTES]) -> Header {
        Header {
            kind: bytes[offset::KIND],
            flags: bytes[offset::FLAGS],
            request_id: u64_at(bytes, offset::REQUEST_ID),
            body_size: u32_at(bytes, offset::BODY_SIZE),
            checksum: u32_at(bytes, offset::CHECKSUM),
            operation: bytes[offset::OPERATION],
            status: bytes[offset::STATUS],
            code: u16_at(bytes, offset::CODE),
            count: u32_at(bytes, offset::COUNT),
        }
    }

    /// The header's bytes, magic and current version included.
    pub fn write(&self) -> [u8; HEADER_SIZE_BYTES] {
        let mut bytes = [0; HEADER_SIZE_BYTES];
        bytes[offset::MAGIC..offset::MAGIC + 4].copy_from_slice(&MAGIC);
        bytes[offset::VERSION..offset::VERSION + 2]
            .copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        bytes[offset::KIND] = self.kind;
        bytes[offset::FLAGS] = self.flags;
        bytes[offset::REQUEST_ID..offset::REQUEST_ID + 8]
            .copy_from_slice(&self.request_id.to_le_bytes());
        bytes[offset::BODY_SIZE..offset::BODY_SIZE + 4]
            .copy_from_slice(&self.body_size.to_le_bytes());
        bytes[offset::CHECKSUM..offset::CHECKSUM + 4].copy_from_slice(&self.checksum.to_le_bytes());
        bytes[offset::OPERATION] = self.operation;
        bytes[offset::STATUS] = self.status;
        bytes[offset::CODE..offset::CODE + 2].copy_from_slice(&self.code.to_le_bytes());
        bytes[offset::COUNT..offset::COUNT + 4].copy_from_slice(&self.count.to_le_bytes());
        bytes
    }
}

/// The crc32c of `header` with its checksum field zeroed, followed by `body`.
pub(crate) fn checksum(header: &[u8; HEADER_SIZE_BYTES], body: &[u8]) -> u32 {
    let mut zeroed = *header;
    zeroed[offset::CHECKSUM..offset::CHECKSUM + 4].fill(0);
    crc32c::crc32c_append(crc32c::crc32c(&zeroed), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header {
            kind: 4,
            flags: 0,
            request_id: 0x0102_0304_0506_0708,
            body_size: 128,
            checksum: 0xDEAD_BEEF,
            operation: 2,
            status: 0,
            code: 0,
            count: 1,
        };
        let bytes = header.write();
        assert_eq!(&bytes[0..4], b"SRGP");
        assert_eq!(&bytes[4..6], &[1, 0]);
        assert_eq!(bytes[8], 0x08);
        assert_eq!(Header::read(&bytes), header);
    }
}
