//! Firestore's REST encoding: every value is typed (`{"integerValue": "42"}`), and times are
//! RFC 3339 strings. These helpers turn a document into plain JSON values.

use serde_json::{Map, Value};

/// A typed Firestore value as plain JSON (`integerValue` strings become numbers).
pub fn plain(v: &Value) -> Value {
    let Some(obj) = v.as_object() else {
        return Value::Null;
    };
    if let Some(s) = obj.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = obj.get("integerValue") {
        return match i {
            Value::String(s) => s.parse::<i64>().map_or(Value::Null, Value::from),
            Value::Number(n) => Value::Number(n.clone()),
            _ => Value::Null,
        };
    }
    if let Some(d) = obj.get("doubleValue") {
        return match d {
            Value::Number(_) => d.clone(),
            // Firestore writes NaN and infinities as strings.
            Value::String(s) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::String(s.clone()), Value::Number),
            _ => Value::Null,
        };
    }
    if let Some(b) = obj.get("booleanValue") {
        return b.clone();
    }
    if let Some(t) = obj.get("timestampValue") {
        return t.clone();
    }
    if let Some(m) = obj.get("mapValue") {
        return Value::Object(fields(m));
    }
    if let Some(a) = obj.get("arrayValue") {
        let values = a
            .get("values")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().map(plain).collect())
            .unwrap_or_default();
        return Value::Array(values);
    }
    Value::Null
}

/// The `fields` of a document (or map value) as a plain JSON object.
pub fn fields(doc: &Value) -> Map<String, Value> {
    doc.get("fields")
        .and_then(Value::as_object)
        .map(|f| f.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
        .unwrap_or_default()
}

/// RFC 3339 (`2026-11-27T08:00:00.123456Z`, `…+01:00`) as epoch milliseconds.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = s.get(start..i)?;
        if frac.is_empty() {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..frac.len().min(3)]);
        millis = padded.parse().ok()?;
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let m = oh * 60 + om;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3_600 + mi * 60 + sec) - offset_min * 60) * 1_000 + millis)
}

/// Epoch milliseconds as RFC 3339 in UTC with milliseconds (`2026-11-27T08:00:00.250Z`).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    let (days, tod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from a day count (the inverse of `days_from_civil`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        tod / 3_600,
        tod / 60 % 60,
        tod % 60,
        ms.rem_euclid(1_000)
    )
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn typed_values_become_plain_json() {
        let doc = json!({"name": "x", "fields": {
            "serial": {"stringValue": "ABC"},
            "battery": {"integerValue": "87"},
            "value": {"doubleValue": 71.5},
            "on": {"booleanValue": true},
            "lastSeen": {"timestampValue": "2026-11-27T08:00:00.250Z"},
            "alarmHigh": {"mapValue": {"fields": {"enabled": {"booleanValue": true}, "value": {"integerValue": "203"}}}},
            "order": {"arrayValue": {"values": [{"stringValue": "a"}, {"integerValue": "2"}]}},
            "empty": {"arrayValue": {}},
            "nothing": {"nullValue": null}
        }});
        assert_eq!(
            Value::Object(fields(&doc)),
            json!({"serial": "ABC", "battery": 87, "value": 71.5, "on": true, "lastSeen": "2026-11-27T08:00:00.250Z",
                   "alarmHigh": {"enabled": true, "value": 203}, "order": ["a", 2], "empty": [], "nothing": null})
        );
    }

    #[test]
    fn rfc3339_times_parse_with_fractions_and_offsets() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2026-11-27T07:26:27.840Z"),
            Some(1_795_764_387_840)
        );
        assert_eq!(
            rfc3339_ms("2026-11-27T08:26:27.840123+01:00"),
            Some(1_795_764_387_840)
        );
        assert_eq!(rfc3339_ms("2000-02-29T00:00:00.25Z"), Some(951_782_400_250));
        for bad in [
            "",
            "2026-11-27",
            "2026-13-01T00:00:00Z",
            "2026-11-27T00:00:00",
            "2026-11-27T00:00:00.Z",
            "2026-11-27T00:00:00+0100",
        ] {
            assert_eq!(rfc3339_ms(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn formatted_times_parse_back(ms in -62_000_000_000_000i64..250_000_000_000_000) {
            prop_assert_eq!(rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }

        #[test]
        fn no_string_or_value_makes_them_panic(s in "\\PC{0,40}", n in any::<i64>()) {
            let _ = rfc3339_ms(&s);
            let _ = plain(&json!({"integerValue": s.clone()}));
            let _ = plain(&json!({"doubleValue": s}));
            let _ = plain(&json!({"mapValue": n}));
        }
    }
}
