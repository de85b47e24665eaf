//! Hand-written Avro bodies for the events on the hot path: every reading is decoded by the
//! processors and the analytics scans, and every reading's trend is encoded by the trend
//! processor. Going through apache-avro's schema-driven serde path costs more than the rest
//! of a record's handling; these write and read the same bytes directly.
//!
//! They cover the *current* schema only: a payload written with another schema id goes
//! through the codec's resolving path. `tests/codec.rs` checks, on arbitrary events, that
//! the bytes written here equal the schema-driven writer's, and that damaged bytes read here
//! as they read there (the same event, or an error).

use crate::events::{ProbeReading, TrendUpdated};

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyError {
    /// The bytes ended inside a value.
    #[error("the bytes end inside a value")]
    Truncated,
    /// A variable-length integer ran past 10 bytes.
    #[error("a variable-length integer is too long")]
    LongTooLong,
    /// A length or union index out of range.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A string was not UTF-8.
    #[error("a string is not UTF-8")]
    NotUtf8,
}

/// An event whose Avro body (current schema) is written and read by hand.
pub(crate) trait Body: Sized {
    /// Appends the body.
    fn write_body(&self, buf: &mut Vec<u8>);
    /// Reads a body off the front of `bytes` (what follows is the caller's to judge).
    fn read_body(bytes: &mut &[u8]) -> Result<Self, BodyError>;
}

fn put_long(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_long(buf, s.len() as i64);
    buf.extend_from_slice(s.as_bytes());
}

fn put_f64(buf: &mut Vec<u8>, v: f64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// `["null", "double"]`: branch 0 is null.
fn put_opt_f64(buf: &mut Vec<u8>, v: Option<f64>) {
    match v {
        None => put_long(buf, 0),
        Some(v) => {
            put_long(buf, 1);
            put_f64(buf, v);
        }
    }
}

/// Reads values off the front of a body, advancing the caller's slice.
struct Cursor<'a, 'b> {
    bytes: &'b mut &'a [u8],
}

impl<'a> Cursor<'a, '_> {
    fn long(&mut self) -> Result<i64, BodyError> {
        let all: &'a [u8] = self.bytes;
        let mut z: u64 = 0;
        for (i, &b) in all.iter().enumerate().take(10) {
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                *self.bytes = &all[i + 1..];
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(if all.len() >= 10 {
            BodyError::LongTooLong
        } else {
            BodyError::Truncated
        })
    }

    fn int(&mut self) -> Result<i32, BodyError> {
        i32::try_from(self.long()?).map_err(|_| BodyError::Invalid("int"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        let all: &'a [u8] = self.bytes;
        if all.len() < n {
            return Err(BodyError::Truncated);
        }
        let (head, rest) = all.split_at(n);
        *self.bytes = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, BodyError> {
        let len = usize::try_from(self.long()?).map_err(|_| BodyError::Invalid("length"))?;
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| BodyError::NotUtf8)
    }

    fn f64(&mut self) -> Result<f64, BodyError> {
        let raw = self.take(8)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(raw);
        Ok(f64::from_le_bytes(le))
    }

    fn opt_f64(&mut self) -> Result<Option<f64>, BodyError> {
        match self.long()? {
            0 => Ok(None),
            1 => self.f64().map(Some),
            _ => Err(BodyError::Invalid("union index")),
        }
    }
}

impl Body for ProbeReading {
    fn write_body(&self, buf: &mut Vec<u8>) {
        put_str(buf, &self.device_id);
        put_str(buf, &self.probe_id);
        put_long(buf, self.event_time);
        put_long(buf, self.received_time);
        put_opt_f64(buf, self.temperature_c);
        put_str(buf, &self.source);
    }

    fn read_body(bytes: &mut &[u8]) -> Result<Self, BodyError> {
        let mut c = Cursor { bytes };
        Ok(ProbeReading {
            device_id: c.string()?,
            probe_id: c.string()?,
            event_time: c.long()?,
            received_time: c.long()?,
            temperature_c: c.opt_f64()?,
            source: c.string()?,
        })
    }
}

impl Body for TrendUpdated {
    fn write_body(&self, buf: &mut Vec<u8>) {
        put_str(buf, &self.device_id);
        put_str(buf, &self.probe_id);
        put_long(buf, self.event_time);
        put_f64(buf, self.temperature_c);
        put_f64(buf, self.smoothed_c);
        put_opt_f64(buf, self.rate_c_per_min);
        put_f64(buf, self.min_c);
        put_f64(buf, self.max_c);
        put_long(buf, self.window_ms);
        put_long(buf, i64::from(self.samples));
        put_long(buf, self.source_offset);
    }

    fn read_body(bytes: &mut &[u8]) -> Result<Self, BodyError> {
        let mut c = Cursor { bytes };
        Ok(TrendUpdated {
            device_id: c.string()?,
            probe_id: c.string()?,
            event_time: c.long()?,
            temperature_c: c.f64()?,
            smoothed_c: c.f64()?,
            rate_c_per_min: c.opt_f64()?,
            min_c: c.f64()?,
            max_c: c.f64()?,
            window_ms: c.long()?,
            samples: c.int()?,
            source_offset: c.long()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_round_trip_at_every_width_and_overlong_ones_are_refused() {
        for v in [
            0,
            -1,
            1,
            63,
            -64,
            64,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut buf = Vec::new();
            put_long(&mut buf, v);
            let mut bytes = &buf[..];
            assert_eq!(Cursor { bytes: &mut bytes }.long(), Ok(v));
            assert!(bytes.is_empty(), "{v} left {bytes:?}");
        }
        let mut overlong = &[0xff; 11][..];
        assert_eq!(
            Cursor {
                bytes: &mut overlong
            }
            .long(),
            Err(BodyError::LongTooLong)
        );
        let mut short = &[0xff; 3][..];
        assert_eq!(
            Cursor { bytes: &mut short }.long(),
            Err(BodyError::Truncated)
        );
    }
}
