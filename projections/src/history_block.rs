//! History blocks: the points of one probe within one bucket of event time, as one compact
//! value.
//!
//! The embedded store keeps a probe's history as one value per [`BUCKET_MS`] of event time
//! instead of one key per reading: a round of readings rewrites one value per probe, and a
//! point costs a few bytes instead of a key with the device and probe ids in it.
//!
//! A block is a pure function of the points it holds (sorted by event time, one per event
//! time): the same points give the same bytes whatever order they arrived in, so a rebuilt
//! store equals the live one byte for byte.
//!
//! Layout, version 1 (integers are LEB128 varints; signed ones zigzag-encoded first):
//!
//! * `1` (the version), the number of points, the temperature scale (one byte: `0..=4`
//!   stores temperatures as integers of 10^-scale °C, `0xFF` as IEEE 754 bits);
//! * per point, in event-time order: the event time (the first point in full, the second as
//!   the delta to the first, the others as the change of delta — regular readings cost one
//!   byte); the change of (receive time − event time) from the previous point; the
//!   temperature: scaled, `0` for none or 1 + the zigzagged change from the previous
//!   temperature; raw, a byte `0` for none or `1` and the 8 bytes of the value.
//!
//! A scale is used only when every temperature of the block comes back bit for bit, so the
//! codec is lossless: sensors that report tenths of a degree cost a byte per temperature,
//! anything else (a conversion from Fahrenheit, `-0.0`, NaN) is stored raw.

/// Length of a block's bucket of event time: one minute.
pub const BUCKET_MS: i64 = 60_000;

/// The layout written by [`encode`].
const VERSION: u8 = 1;
/// Scale byte of a block whose temperatures are stored as raw bits.
const RAW: u8 = 0xFF;
/// Largest decimal scale tried (10^-4 °C).
const MAX_SCALE: u8 = 4;
/// Largest scaled temperature: integers up to 2^53 are exact in an f64.
const MAX_SCALED: f64 = (1u64 << 53) as f64;

/// One point of a probe's history.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Event time, epoch ms.
    pub event_time: i64,
    /// Receive time, epoch ms.
    pub received_time: i64,
    /// Temperature, Celsius; `None` when unplugged.
    pub temperature_c: Option<f64>,
}

/// Why a stored block could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    /// The block ends inside a value.
    #[error("history block truncated")]
    Truncated,
    /// The block was written in a layout this version does not know.
    #[error("history block version {0} is unknown")]
    Version(u8),
    /// The block's temperature scale is none of the known ones.
    #[error("history block scale {0} is unknown")]
    Scale(u8),
    /// The block says it holds more points than its bytes can.
    #[error("history block claims {0} points in {1} bytes")]
    Count(u64, usize),
    /// Bytes are left over after the last point.
    #[error("history block has {0} bytes after its last point")]
    Trailing(usize),
}

/// The start of the bucket that holds `event_time`.
pub fn bucket_of(event_time: i64) -> i64 {
    event_time.saturating_sub(event_time.rem_euclid(BUCKET_MS))
}

/// Adds `new` points, in the order they were applied, to `points` (sorted, one per event
/// time): a later point replaces an earlier one of the same event time.
pub fn merge(points: &mut Vec<Point>, new: impl IntoIterator<Item = Point>) {
    for p in new {
        match points.last() {
            Some(last) if last.event_time >= p.event_time => {
                match points.binary_search_by_key(&p.event_time, |q| q.event_time) {
                    Ok(i) => points[i] = p,
                    Err(i) => points.insert(i, p),
                }
            }
            _ => points.push(p),
        }
    }
}

/// The block of `points` (sorted by event time, one per event time).
pub fn encode(points: &[Point]) -> Vec<u8> {
    let scale = scale_of(points);
    let mut out = Vec::with_capacity(4 + points.len() * 4);
    out.push(VERSION);
    put_varint(&mut out, points.len() as u64);
    out.push(scale.map_or(RAW, |(s, _)| s));
    let (mut prev_time, mut prev_delta, mut prev_lag, mut prev_scaled) = (0i64, 0i64, 0i64, 0i64);
    for (i, p) in points.iter().enumerate() {
        let delta = p.event_time.wrapping_sub(prev_time);
        match i {
            0 => put_signed(&mut out, p.event_time),
            1 => put_signed(&mut out, delta),
            _ => put_signed(&mut out, delta.wrapping_sub(prev_delta)),
        }
        (prev_time, prev_delta) = (p.event_time, delta);
        let lag = p.received_time.wrapping_sub(p.event_time);
        put_signed(&mut out, lag.wrapping_sub(prev_lag));
        prev_lag = lag;
        match (scale, p.temperature_c) {
            (_, None) => out.push(0),
            (Some((_, factor)), Some(t)) => {
                let scaled = (t * factor).round() as i64;
                put_varint(&mut out, zigzag(scaled.wrapping_sub(prev_scaled)) + 1);
                prev_scaled = scaled;
            }
            (None, Some(t)) => {
                out.push(1);
                out.extend_from_slice(&t.to_bits().to_le_bytes());
            }
        }
    }
    out
}

/// The points of a block written by [`encode`].
pub fn decode(block: &[u8]) -> Result<Vec<Point>, BlockError> {
    let mut r = Reader { bytes: block };
    let version = r.byte()?;
    if version != VERSION {
        return Err(BlockError::Version(version));
    }
    let count = r.varint()?;
    // Every point takes at least three bytes: a block cannot make us allocate more.
    if count > (block.len() / 3) as u64 {
        return Err(BlockError::Count(count, block.len()));
    }
    let scale = match r.byte()? {
        RAW => None,
        s if s <= MAX_SCALE => Some(10f64.powi(i32::from(s))),
        s => return Err(BlockError::Scale(s)),
    };
    let mut points = Vec::with_capacity(count as usize);
    let (mut prev_time, mut prev_delta, mut prev_lag, mut prev_scaled) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..count {
        let v = r.signed()?;
        let (time, delta) = match i {
            0 => (v, v),
            1 => (prev_time.wrapping_add(v), v),
            _ => {
                let d = prev_delta.wrapping_add(v);
                (prev_time.wrapping_add(d), d)
            }
        };
        (prev_time, prev_delta) = (time, delta);
        let lag = prev_lag.wrapping_add(r.signed()?);
        prev_lag = lag;
        let temperature_c = match scale {
            Some(factor) => match r.varint()? {
                0 => None,
                v => {
                    prev_scaled = prev_scaled.wrapping_add(unzigzag(v - 1));
                    Some(prev_scaled as f64 / factor)
                }
            },
            None => match r.byte()? {
                0 => None,
                _ => Some(f64::from_bits(u64::from_le_bytes(r.array()?))),
            },
        };
        points.push(Point {
            event_time: time,
            received_time: time.wrapping_add(lag),
            temperature_c,
        });
    }
    if !r.bytes.is_empty() {
        return Err(BlockError::Trailing(r.bytes.len()));
    }
    Ok(points)
}

/// The number of points in a block, read from its header.
pub fn count(block: &[u8]) -> Result<u64, BlockError> {
    let mut r = Reader { bytes: block };
    match r.byte()? {
        VERSION => r.varint(),
        v => Err(BlockError::Version(v)),
    }
}

/// The smallest decimal scale (and its factor) at which every temperature of `points`
/// comes back bit for bit, or `None` when none does.
fn scale_of(points: &[Point]) -> Option<(u8, f64)> {
    (0..=MAX_SCALE).find_map(|s| {
        let factor = 10f64.powi(i32::from(s));
        let exact = points.iter().filter_map(|p| p.temperature_c).all(|t| {
            let scaled = (t * factor).round();
            scaled.abs() < MAX_SCALED && (scaled / factor).to_bits() == t.to_bits()
        });
        exact.then_some((s, factor))
    })
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_signed(out: &mut Vec<u8>, v: i64) {
    put_varint(out, zigzag(v));
}

/// Reads a block front to back.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, BlockError> {
        let (&b, rest) = self.bytes.split_first().ok_or(BlockError::Truncated)?;
        self.bytes = rest;
        Ok(b)
    }

    fn array(&mut self) -> Result<[u8; 8], BlockError> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<8>()
            .ok_or(BlockError::Truncated)?;
        self.bytes = rest;
        Ok(*head)
    }

    fn varint(&mut self) -> Result<u64, BlockError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(BlockError::Truncated)
    }

    fn signed(&mut self) -> Result<i64, BlockError> {
        self.varint().map(unzigzag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: i64, lag: i64, temp: Option<f64>) -> Point {
        Point {
            event_time: t,
            received_time: t + lag,
            temperature_c: temp,
        }
    }

    /// A small deterministic generator (xorshift), so failures repeat.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn same_bits(a: &[Point], b: &[Point]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.event_time == y.event_time
                    && x.received_time == y.received_time
                    && x.temperature_c.map(f64::to_bits) == y.temperature_c.map(f64::to_bits)
            })
    }

    #[test]
    fn a_minute_of_readings_in_tenths_costs_about_three_bytes_a_point() {
        let points: Vec<_> = (0..60)
            .map(|i| {
                let temp = (200 + i / 3) as f64 / 10.0;
                point(1_790_000_000_000 + i * 1_000, 40 + i % 3, Some(temp))
            })
            .collect();
        let block = encode(&points);
        assert!(same_bits(&decode(&block).expect("decode"), &points));
        assert!(block.len() <= 60 * 3 + 12, "{} bytes", block.len());
        assert_eq!(block[2], 1, "tenths of a degree: scale 1");
        assert_eq!(count(&block), Ok(60));
    }

    #[test]
    fn every_value_comes_back_bit_for_bit() {
        let odd = [
            f64::NAN,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            1e300,
            (203.0 - 32.0) * 5.0 / 9.0,
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..500 {
            let n = (rng.next() % 50) as usize;
            let mut t = (rng.next() as i64) >> (rng.next() % 64);
            let mut points = Vec::new();
            for _ in 0..n {
                t = t.wrapping_add((rng.next() % 5_000) as i64 + 1);
                let lag = (rng.next() as i64) >> (rng.next() % 64);
                let temp = match rng.next() % 8 {
                    0 => None,
                    1 if round % 3 == 0 => Some(odd[(rng.next() % odd.len() as u64) as usize]),
                    2 => Some(f64::from_bits(rng.next())),
                    _ => Some((rng.next() % 4_000) as f64 / 10.0 - 100.0),
                };
                points.push(point(t, lag, temp));
            }
            points.sort_by_key(|p| p.event_time);
            points.dedup_by_key(|p| p.event_time);
            let block = encode(&points);
            let back = decode(&block).expect("decode");
            assert!(
                same_bits(&back, &points),
                "round {round}: {points:?} → {back:?}"
            );
        }
    }

    #[test]
    fn arrival_order_does_not_change_the_block() {
        let points: Vec<_> = (0..40)
            .map(|i| point(i * 250, 5, Some(20.0 + i as f64 / 4.0)))
            .collect();
        let mut in_order = Vec::new();
        merge(&mut in_order, points.iter().copied());
        let mut shuffled = Vec::new();
        let mut rng = Rng(7);
        let mut rest = points.clone();
        while !rest.is_empty() {
            let i = (rng.next() % rest.len() as u64) as usize;
            merge(&mut shuffled, [rest.swap_remove(i)]);
        }
        assert_eq!(encode(&in_order), encode(&shuffled));
        // A later point of the same event time replaces the earlier one.
        merge(&mut shuffled, [point(250, 9, None)]);
        assert_eq!(shuffled.len(), 40);
        assert_eq!(shuffled[1], point(250, 9, None));
    }

    #[test]
    fn damaged_blocks_are_errors_not_panics() {
        let points: Vec<_> = (0..20)
            .map(|i| point(i * 1_000, 3, Some(f64::from(i as i32) * 1.5)))
            .collect();
        let block = encode(&points);
        for len in 0..block.len() {
            assert!(decode(&block[..len]).is_err(), "truncated to {len}");
        }
        let mut longer = block.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(BlockError::Trailing(1)));
        assert_eq!(decode(&[2, 0, 0]), Err(BlockError::Version(2)));
        assert_eq!(decode(&[1, 0, 9]), Err(BlockError::Scale(9)));
        let mut huge = vec![1];
        put_varint(&mut huge, u64::MAX / 2);
        assert!(matches!(decode(&huge), Err(BlockError::Count(..))));
        let mut rng = Rng(3);
        for _ in 0..2_000 {
            let mut bytes = block.clone();
            let i = (rng.next() % bytes.len() as u64) as usize;
            bytes[i] = rng.next() as u8;
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn buckets_start_on_the_minute_before_and_after_the_epoch() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(59_999), 0);
        assert_eq!(bucket_of(60_000), 60_000);
        assert_eq!(bucket_of(-1), -60_000);
        assert_eq!(bucket_of(i64::MIN), i64::MIN);
        assert_eq!(bucket_of(i64::MAX) % BUCKET_MS, 0);
    }
}
