//! How projection values are laid out in ScyllaDB cells.
//!
//! Structs are postcard-encoded into a `value blob` column, exactly as the embedded store
//! encodes them, so [`dump`](crate::ProjectionStore::dump) can hand back the same bytes.
//! History points use typed columns (`received_time bigint`, `temperature_c double`) and are
//! re-encoded for `dump`; postcard is deterministic, so the bytes match too.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{LatestProbe, ProjectionError};

/// Length of the ordering prefix of a `latest.value` cell.
const OFFSET_KEY_LEN: usize = 10;

/// Milliseconds per history partition (one UTC day).
const DAY_MS: i64 = 86_400_000;

/// The history partition (`day` column) of an event time: whole UTC days since the epoch.
pub(super) fn day_of(event_time_ms: i64) -> i64 {
    event_time_ms.div_euclid(DAY_MS)
}

/// Write timestamp of a latest value: its event time in microseconds.
///
/// Saturates for event times past the year 292 000 (and stays clear of `i64::MIN`, which the
/// protocol reserves for "no timestamp"); such values lose their order among each other only.
pub(super) fn latest_write_timestamp(event_time_ms: i64) -> i64 {
    event_time_ms.saturating_mul(1_000).max(i64::MIN + 1)
}

/// `offset` as ten big-endian 7-bit digits: byte-wise order equals numeric order whether the
/// server compares bytes as signed (older Cassandra) or unsigned (ScyllaDB).
fn offset_key(offset: u64) -> [u8; OFFSET_KEY_LEN] {
    let mut key = [0u8; OFFSET_KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        let shift = 7 * (OFFSET_KEY_LEN - 1 - i);
        *byte = ((offset >> shift) & 0x7f) as u8;
    }
    key
}

/// The `latest.value` cell: the source offset's ordering prefix, then the postcard value.
///
/// Two writes of one probe with the same event time carry the same write timestamp; the
/// server then keeps the greater cell value, which the prefix makes the greater offset.
pub(super) fn encode_latest(value: &LatestProbe) -> Result<Vec<u8>, ProjectionError> {
    let mut out = offset_key(value.source_offset).to_vec();
    let body = encode("latest", value)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// The postcard bytes of a `latest.value` cell (what the embedded store keeps), checked
/// against its prefix.
pub(super) fn latest_body(cell: &[u8]) -> Result<(&[u8], LatestProbe), ProjectionError> {
    let corrupt = |reason: String| ProjectionError::Corrupt {
        table: "latest",
        reason,
    };
    if cell.len() < OFFSET_KEY_LEN {
        return Err(corrupt(format!("value of {} bytes", cell.len())));
    }
    let (prefix, body) = cell.split_at(OFFSET_KEY_LEN);
    let value: LatestProbe = decode("latest", body)?;
    if prefix != offset_key(value.source_offset) {
        return Err(corrupt(format!(
            "ordering prefix does not match source offset {}",
            value.source_offset
        )));
    }
    Ok((body, value))
}

/// Decodes a `latest.value` cell.
pub(super) fn decode_latest(cell: &[u8]) -> Result<LatestProbe, ProjectionError> {
    latest_body(cell).map(|(_, value)| value)
}

/// Postcard bytes of a value stored in `table`.
pub(super) fn encode<T: Serialize>(
    table: &'static str,
    value: &T,
) -> Result<Vec<u8>, ProjectionError> {
    postcard::to_allocvec(value).map_err(|e| ProjectionError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

/// A postcard value read from `table`.
pub(super) fn decode<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, ProjectionError> {
    postcard::from_bytes(bytes).map_err(|e| ProjectionError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

/// The embedded store's history value, `(received time, temperature)`, for `dump`.
pub(super) fn history_value(
    received_time: i64,
    temperature_c: Option<f64>,
) -> Result<Vec<u8>, ProjectionError> {
    encode("history", &(received_time, temperature_c))
}

/// A log offset in a `bigint` column: the same 64 bits (offsets never reach 2^63).
pub(super) fn offset_to_cql(offset: u64) -> i64 {
    offset as i64
}

/// Inverse of [`offset_to_cql`].
pub(super) fn offset_from_cql(value: i64) -> u64 {
    value as u64
}

/// A partition number in an `int` column: the same 32 bits.
pub(super) fn partition_to_cql(partition: u32) -> i32 {
    partition as i32
}

/// Inverse of [`partition_to_cql`].
pub(super) fn partition_from_cql(value: i32) -> u32 {
    value as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(event_time: i64, offset: u64) -> LatestProbe {
        LatestProbe {
            device_id: "d".into(),
            probe_id: "p".into(),
            event_time,
            received_time: event_time + 5,
            temperature_c: Some(60.0),
            source: "test".into(),
            trend: None,
            source_partition: 0,
            source_offset: offset,
        }
    }

    #[test]
    fn offset_keys_order_like_offsets_signed_or_unsigned() {
        let offsets = [
            0,
            1,
            127,
            128,
            200,
            255,
            256,
            1 << 20,
            u64::MAX / 2,
            u64::MAX,
        ];
        for pair in offsets.windows(2) {
            let (a, b) = (offset_key(pair[0]), offset_key(pair[1]));
            assert!(a < b, "{} vs {}", pair[0], pair[1]);
            let signed = |k: [u8; OFFSET_KEY_LEN]| k.map(|x| x as i8);
            assert!(signed(a) < signed(b), "signed {} vs {}", pair[0], pair[1]);
            assert!(a.iter().all(|&x| x < 0x80));
        }
    }

    #[test]
    fn latest_cells_order_by_offset_and_keep_the_embedded_bytes() {
        let (a, b) = (probe(2_000, 2), probe(2_000, 3));
        let (ca, cb) = (
            encode_latest(&a).expect("encode"),
            encode_latest(&b).expect("encode"),
        );
        assert!(ca < cb);
        let (body, decoded) = latest_body(&cb).expect("decode");
        assert_eq!(decoded, b);
        assert_eq!(
            body,
            postcard::to_allocvec(&b).expect("postcard").as_slice()
        );
        let mut wrong = cb.clone();
        wrong[OFFSET_KEY_LEN - 1] ^= 1;
        assert!(decode_latest(&wrong).is_err());
        assert!(decode_latest(&[1, 2]).is_err());
    }

    #[test]
    fn write_timestamps_follow_event_time() {
        assert!(latest_write_timestamp(500) < latest_write_timestamp(2_000));
        assert_eq!(latest_write_timestamp(2_000), 2_000_000);
        assert_eq!(latest_write_timestamp(i64::MIN), i64::MIN + 1);
        assert_eq!(latest_write_timestamp(i64::MAX), i64::MAX);
    }

    #[test]
    fn days_are_utc_days_also_before_the_epoch() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
        assert_eq!(day_of(-1), -1);
    }

    #[test]
    fn positions_round_trip() {
        for offset in [0, 1, i64::MAX as u64, u64::MAX] {
            assert_eq!(offset_from_cql(offset_to_cql(offset)), offset);
        }
        for partition in [0, 7, u32::MAX] {
            assert_eq!(partition_from_cql(partition_to_cql(partition)), partition);
        }
    }
}
