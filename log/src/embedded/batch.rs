//! The stored form of an appended batch.
//!
//! Plain: `count: u32`, then per record `timestamp_ms: i64`, `key_len: u32`, `key`,
//! `value_len: u32`, `value`; all integers little-endian.
//!
//! Compressed (written when it is smaller): `count | COMPRESSED: u32`, `plain_len: u32`, then
//! the records part of the plain form (everything after `count`) as an LZ4 block. A batch of
//! readings repeats its keys, schema ids, device and probe names and nearby timestamps, so
//! LZ4 roughly halves it; a single small record stays plain. Both forms are read, so logs
//! written before compression existed read unchanged.
//!
//! Decoding checks every length against the bytes left and the claimed plain length against
//! what LZ4 can expand to, so a damaged value is reported, never read past nor allowed to
//! allocate without bound.

use std::borrow::Cow;

use crate::NewRecord;

/// Set in the stored count when the records part is LZ4-compressed. No batch holds 2^31
/// records, so a plain count never has it.
const COMPRESSED: u32 = 1 << 31;

/// Below this the records part is stored plain: LZ4 cannot win much on a record or two.
const COMPRESS_FROM: usize = 128;

/// LZ4 expands at most about 255:1; a claimed plain length beyond this is damage.
const MAX_RATIO: usize = 256;

/// The plain form of records.
fn plain<'a>(records: impl ExactSizeIterator<Item = &'a NewRecord>) -> Vec<u8> {
    let mut plain = Vec::with_capacity(4 + records.len() * 64);
    plain.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        plain.extend_from_slice(&r.timestamp_ms.to_le_bytes());
        plain.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
        plain.extend_from_slice(&r.key);
        plain.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        plain.extend_from_slice(&r.value);
    }
    plain
}

/// Encodes records into one stored value: compressed when that is smaller, else plain.
pub(super) fn encode<'a>(records: impl ExactSizeIterator<Item = &'a NewRecord>) -> Vec<u8> {
    let count = records.len() as u32;
    let plain = plain(records);
    let body = &plain[4..];
    if body.len() < COMPRESS_FROM || u32::try_from(body.len()).is_err() {
        return plain;
    }
    let packed = lz4_flex::block::compress(body);
    if packed.len() + 4 >= body.len() {
        return plain;
    }
    let mut out = Vec::with_capacity(8 + packed.len());
    out.extend_from_slice(&(count | COMPRESSED).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&packed);
    out
}

/// The record count and the records part in plain form.
fn records_part(mut bytes: &[u8]) -> Result<(usize, Cow<'_, [u8]>), String> {
    let stored = take_u32(&mut bytes)?;
    if stored & COMPRESSED == 0 {
        return Ok((stored as usize, Cow::Borrowed(bytes)));
    }
    let plain_len = take_u32(&mut bytes)? as usize;
    if plain_len > bytes.len().saturating_mul(MAX_RATIO) {
        return Err(format!(
            "a plain length of {plain_len} bytes from {} compressed",
            bytes.len()
        ));
    }
    let plain = lz4_flex::block::decompress(bytes, plain_len)
        .map_err(|e| format!("compressed records: {e}"))?;
    if plain.len() != plain_len {
        return Err(format!(
            "compressed records expand to {} bytes, not {plain_len}",
            plain.len()
        ));
    }
    Ok(((stored & !COMPRESSED) as usize, Cow::Owned(plain)))
}

/// Decodes a stored value back into records.
pub(super) fn decode(bytes: &[u8]) -> Result<Vec<NewRecord>, String> {
    let (count, part) = records_part(bytes)?;
    let mut bytes = &part[..];
    // Each record needs at least 16 bytes; do not trust a count the bytes cannot hold.
    if count > bytes.len() / 16 + 1 {
        return Err(format!(
            "count {count} exceeds what {} bytes can hold",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let timestamp_ms = i64::from_le_bytes(take::<8>(&mut bytes)?);
        let key_len = take_u32(&mut bytes)? as usize;
        let key = take_slice(&mut bytes, key_len)?.to_vec();
        let value_len = take_u32(&mut bytes)? as usize;
        let value = take_slice(&mut bytes, value_len)?.to_vec();
        out.push(NewRecord {
            key,
            value,
            timestamp_ms,
        });
    }
    if !bytes.is_empty() {
        return Err(format!("{} trailing bytes", bytes.len()));
    }
    Ok(out)
}

/// The number of records in a stored value.
pub(super) fn count(mut bytes: &[u8]) -> Result<u32, String> {
    take_u32(&mut bytes).map(|stored| stored & !COMPRESSED)
}

/// The oldest and newest record times in a stored value, without copying keys or values;
/// `None` for an empty batch.
pub(super) fn time_range(bytes: &[u8]) -> Result<Option<(i64, i64)>, String> {
    let (count, part) = records_part(bytes)?;
    let mut bytes = &part[..];
    let mut range: Option<(i64, i64)> = None;
    for _ in 0..count {
        let t = i64::from_le_bytes(take::<8>(&mut bytes)?);
        let key_len = take_u32(&mut bytes)? as usize;
        take_slice(&mut bytes, key_len)?;
        let value_len = take_u32(&mut bytes)? as usize;
        take_slice(&mut bytes, value_len)?;
        range = Some(match range {
            Some((lo, hi)) => (lo.min(t), hi.max(t)),
            None => (t, t),
        });
    }
    Ok(range)
}

fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], String> {
    let head = take_slice(bytes, N)?;
    let mut out = [0u8; N];
    out.copy_from_slice(head);
    Ok(out)
}

fn take_u32(bytes: &mut &[u8]) -> Result<u32, String> {
    Ok(u32::from_le_bytes(take::<4>(bytes)?))
}

fn take_slice<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if bytes.len() < n {
        return Err(format!("needed {n} bytes, {} left", bytes.len()));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_every_truncation() {
        let records = vec![
            NewRecord {
                key: b"dev".to_vec(),
                value: vec![1, 2, 3],
                timestamp_ms: -5,
            },
            NewRecord {
                key: Vec::new(),
                value: Vec::new(),
                timestamp_ms: i64::MAX,
            },
        ];
        let bytes = encode(records.iter());
        assert_eq!(count(&bytes), Ok(2));
        assert_eq!(decode(&bytes).as_ref(), Ok(&records));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
    }

    /// A tick of readings from 50 grills: repetitive, as a real batch is.
    fn readings() -> Vec<NewRecord> {
        (0..200)
            .map(|i| {
                let device = format!("grill-{:02}", i / 4);
                let mut value = vec![0, 0, 0, 0, 1];
                value.extend_from_slice(device.as_bytes());
                value.extend_from_slice(format!("probe-{}", i % 4).as_bytes());
                value.extend_from_slice(&(70.0 + f64::from(i) * 0.37).to_le_bytes());
                NewRecord {
                    key: device.into_bytes(),
                    value,
                    timestamp_ms: 1_800_000_000_000 + i64::from(i / 4) * 3,
                }
            })
            .collect()
    }

    #[test]
    fn a_repetitive_batch_is_stored_compressed_and_reads_back_whole() {
        let records = readings();
        let bytes = encode(records.iter());
        let plain_len: usize = 4 + records
            .iter()
            .map(|r| 16 + r.key.len() + r.value.len())
            .sum::<usize>();
        assert!(
            bytes.len() * 2 < plain_len,
            "{} bytes stored for {plain_len} plain",
            bytes.len()
        );
        assert_eq!(count(&bytes), Ok(200));
        assert_eq!(decode(&bytes).as_ref(), Ok(&records));
        assert_eq!(
            time_range(&bytes),
            Ok(Some((1_800_000_000_000, 1_800_000_000_000 + 49 * 3)))
        );
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn damaged_compressed_batches_are_errors_and_claims_beyond_lz4s_reach_allocate_nothing() {
        let bytes = encode(readings().iter());
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x5a;
            // Damage may still decode (a changed temperature byte), but never panics.
            let _ = decode(&damaged);
            let _ = time_range(&damaged);
        }
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = decode(&huge).expect_err("a 4 GiB claim");
        assert!(err.contains("plain length"), "{err}");
    }

    #[test]
    fn batches_written_plain_before_compression_still_read() {
        // The plain form, as every batch was written before: no flag in the count.
        let records = readings();
        let plain = plain(records.iter());
        assert_eq!(decode(&plain).as_ref(), Ok(&records));
        assert_eq!(count(&plain), Ok(200));
    }
}
