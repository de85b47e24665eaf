//! Numbers and times as Home Assistant reads them.

/// `v` rounded to `digits` decimals (for compact, stable JSON).
pub fn round(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}

/// `v` with at most `digits` decimals and no trailing zeros: `93`, `93.5`.
pub fn number(v: f64, digits: i32) -> String {
    let r = round(v, digits);
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        let s = format!("{r:.*}", digits as usize);
        s.trim_end_matches('0').to_owned()
    }
}

/// An epoch-millisecond time as RFC 3339 in UTC, e.g. `2026-11-27T08:00:00.250Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    let millis = ms.rem_euclid(1_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3_600,
        tod / 60 % 60,
        tod % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_250), "2000-02-29T00:00:00.250Z");
        assert_eq!(rfc3339_ms(1_795_764_387_840), "2026-11-27T07:26:27.840Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn numbers_drop_trailing_zeros() {
        assert_eq!(number(93.0, 1), "93");
        assert_eq!(number(93.25, 1), "93.3");
        assert_eq!(number(199.4, 1), "199.4");
        assert_eq!(round(1.23456, 2), 1.23);
    }
}
