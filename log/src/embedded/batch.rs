//! The stored form of an appended batch.
//!
//! `count: u32`, then per record `timestamp_ms: i64`, `key_len: u32`, `key`, `value_len: u32`,
//! `value`; all integers little-endian. Decoding checks every length against the bytes left,
//! so a damaged value is reported, never read past.

use crate::NewRecord;

/// Encodes records into one stored value.
pub(super) fn encode<'a>(records: impl ExactSizeIterator<Item = &'a NewRecord>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + records.len() * 64);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        out.extend_from_slice(&r.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.key);
        out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.value);
    }
    out
}

/// Decodes a stored value back into records.
pub(super) fn decode(mut bytes: &[u8]) -> Result<Vec<NewRecord>, String> {
    let count = take_u32(&mut bytes)? as usize;
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
    take_u32(&mut bytes)
}

/// The oldest and newest record times in a stored value, without copying keys or values;
/// `None` for an empty batch.
pub(super) fn time_range(mut bytes: &[u8]) -> Result<Option<(i64, i64)>, String> {
    let count = take_u32(&mut bytes)?;
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
        assert_eq!(decode(&bytes).as_ref(), Ok(&records));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
    }
}
