//! The Confluent wire format: magic byte `0`, a 4-byte big-endian schema id, the Avro body.

use crate::CodecError;

/// The magic byte that opens every Confluent-framed payload.
pub const MAGIC: u8 = 0;
/// Length of the header before the Avro body.
pub const HEADER_LEN: usize = 5;

/// Splits a framed payload into its schema id and Avro body.
pub fn split(payload: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    if payload.len() < HEADER_LEN {
        return Err(CodecError::Truncated { len: payload.len() });
    }
    if payload[0] != MAGIC {
        return Err(CodecError::BadMagic { found: payload[0] });
    }
    let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    Ok((id, &payload[HEADER_LEN..]))
}

/// Writes the header for `id` into an empty buffer, ready for the body to follow.
pub fn start_frame(id: u32, buf: &mut Vec<u8>) {
    buf.push(MAGIC);
    buf.extend_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_short_or_foreign_bytes() {
        let mut buf = Vec::new();
        start_frame(0x0102_0304, &mut buf);
        buf.push(9);
        assert_eq!(split(&buf).ok(), Some((0x0102_0304, &[9u8][..])));
        assert!(matches!(
            split(&buf[..4]),
            Err(CodecError::Truncated { len: 4 })
        ));
        buf[0] = 1;
        assert!(matches!(
            split(&buf),
            Err(CodecError::BadMagic { found: 1 })
        ));
    }
}
