//! Compact JSON written straight into a byte buffer, byte for byte as
//! `serde_json::to_writer` writes the same values.
//!
//! A hunt writes every field of every event it reports (2.3 MB for the
//! 1,193 detections of SigmaHQ's Windows rules on the EVTX corpus), and
//! `serde_json`'s string escaping, a table lookup per byte, was most of
//! it. Here a string is scanned eight bytes at a time for the bytes JSON
//! escapes (`"`, `\` and controls) and copied in runs between them.

use crate::{Event, Value};

/// Writes `s` as a JSON string, escaped as `serde_json` escapes it:
/// `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00XX`,
/// everything else (`/`, DEL, non-ASCII) as it is.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    while let Some(i) = next_escape(bytes, run) {
        out.extend_from_slice(&bytes[run..i]);
        push_escape(out, bytes[i]);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// The position of the first byte at or after `from` that JSON escapes.
///
/// Eight bytes at a time, the last few copied into a word padded with a
/// byte that needs no escape. Only the lowest flagged byte of a word is
/// exact (see [`escape_mask`]), and it is the one taken.
#[inline]
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 8 <= bytes.len() {
        let mask = escape_mask(word_at(bytes, i));
        if mask != 0 {
            return Some(i + (mask.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    if i == bytes.len() {
        return None;
    }
    let mut padded = [b'a'; 8];
    padded[..bytes.len() - i].copy_from_slice(&bytes[i..]);
    let mask = escape_mask(u64::from_le_bytes(padded));
    (mask != 0).then(|| i + (mask.trailing_zeros() / 8) as usize)
}

#[inline]
fn word_at(bytes: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"))
}

/// The high bit of every byte of `word` (little-endian) that is a
/// control, `"` or `\`, SWAR-style. A byte that is one can make the
/// subtraction borrow into the byte above, so bits above the lowest set
/// one may be false; the lowest is always right.
#[inline]
fn escape_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
    let equal = |w: u64, b: u8| below(w ^ (ONES * u64::from(b)), 1);
    below(word, 0x20) | equal(word, b'"') | equal(word, b'\\')
}

fn push_escape(out: &mut Vec<u8>, b: u8) {
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
            return;
        }
    };
    out.push(b'\\');
    out.push(short);
}

/// Writes `value` as [`crate::value_to_json`] converts it and
/// `serde_json` writes that.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        // Rare: `serde_json`'s own float formatting keeps the output the
        // same.
        Value::Float(f) if f.is_finite() => {
            let _ = serde_json::to_writer(&mut *out, f);
        }
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::Str(s) => write_str(out, s),
        Value::List(items) => {
            out.push(b'[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
    }
}

/// Writes the event's fields as the flat object [`Event::to_json`]
/// builds (the first of repeated names wins), without a
/// `serde_json::Value` per field.
pub fn write_fields(out: &mut Vec<u8>, event: &Event) {
    let fields = &event.fields;
    out.push(b'{');
    let mut first = true;
    for (i, (name, value)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(n, _)| n == name) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, name);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn escapes_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "C:\\Windows\\System32\\cmd.exe",
            "say \"hi\"",
            "tab\there\nnew\rline\u{8}\u{c}",
            "\u{0}\u{1}\u{1f}\u{7f}",
            "été — ✓ 😀 /slash/",
            "exactly8",
            "sixteen bytes!!!",
            "seventeen bytes!\"",
            "\\",
            "a\"",
            "1234567\"",
            "12345678\n",
            "123456789\t",
            "\"2345678",
            "\n\n\n\n\n\n\n\n\n",
            "C:\\Users\\ü\\AppData\\x\"y\u{1}",
        ] {
            assert_eq!(ours(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn fields_and_values_as_serde_json_writes_them() {
        let mut e = Event::new();
        e.push("Image", "C:\\x.exe");
        e.push("EventID", 1i64);
        e.push("Image", "second, dropped");
        e.push("Ratio", Value::Float(0.5));
        e.push("Huge", Value::Float(1e300));
        e.push("Nan", Value::Float(f64::NAN));
        e.push("Flag", Value::Bool(true));
        e.push("Nothing", Value::Null);
        e.push(
            "List",
            Value::List(vec![Value::Int(-3), Value::Str("a\"b".into())]),
        );
        let mut out = Vec::new();
        write_fields(&mut out, &e);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&e.to_json()).unwrap()
        );
    }

    proptest! {
        #[test]
        fn any_string_escapes_as_serde_json_does(s in "\\PC*|[\\x00-\\x7f]{0,40}") {
            prop_assert_eq!(ours(&s), serde_json::to_string(&s).unwrap());
        }

        /// Escapes close together, and the bytes a word's borrow can
        /// falsely flag after one (space, `#`, `]`).
        #[test]
        fn dense_escapes_as_serde_json_does(s in "[a \"#\\\\\\]\\x00-\\x1fé]{0,40}") {
            prop_assert_eq!(ours(&s), serde_json::to_string(&s).unwrap());
        }
    }
}
