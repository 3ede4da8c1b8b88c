//! Text encodings met in exported logs: a UTF-8 byte-order mark (Windows
//! tools write one), and UTF-16 (Windows PowerShell's `Out-File` default),
//! both turned into plain UTF-8 for the readers.

use std::io::{BufRead, BufReader, Read};

/// `reader` as UTF-8: a UTF-8 byte-order mark is skipped, UTF-16 with a
/// byte-order mark (either order) is transcoded; anything else passes
/// through untouched.
pub fn utf8_reader<'a>(
    mut reader: Box<dyn BufRead + 'a>,
) -> std::io::Result<Box<dyn BufRead + 'a>> {
    // The first three bytes, however the input arrives.
    let mut head = Vec::with_capacity(3);
    while head.len() < 3 {
        let got = reader.fill_buf()?;
        if got.is_empty() {
            break;
        }
        let n = got.len().min(3 - head.len());
        head.extend_from_slice(&got[..n]);
        reader.consume(n);
    }
    let utf16 = matches!(head.as_slice(), [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..]);
    if !utf16 {
        let skip = if head == [0xEF, 0xBB, 0xBF] { 3 } else { 0 };
        let rest = std::io::Cursor::new(head.split_off(skip));
        return Ok(Box::new(rest.chain(reader)));
    }
    // encoding_rs (through encoding_rs_io) reads the mark, strips it and
    // transcodes, whatever the pieces the input arrives in.
    let marked = std::io::Cursor::new(head).chain(reader);
    Ok(Box::new(BufReader::with_capacity(
        1 << 16,
        encoding_rs_io::DecodeReaderBytes::new(marked),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> String {
        let mut out = String::new();
        utf8_reader(Box::new(bytes))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn boms_and_utf16_become_utf8() {
        let text = "{\"a\": \"é 𝄞 x\"}\n";
        assert_eq!(decode(text.as_bytes()), text);
        let mut bom8 = vec![0xEF, 0xBB, 0xBF];
        bom8.extend_from_slice(text.as_bytes());
        assert_eq!(decode(&bom8), text);
        let mut le = vec![0xFF, 0xFE];
        let mut be = vec![0xFE, 0xFF];
        for u in text.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
            be.extend_from_slice(&u.to_be_bytes());
        }
        assert_eq!(decode(&le), text);
        assert_eq!(decode(&be), text);
        // An unpaired surrogate and an odd last byte.
        let mut bad = vec![0xFF, 0xFE, 0x00, 0xD8, b'a', 0];
        bad.push(0x41);
        assert_eq!(decode(&bad), "\u{FFFD}a\u{FFFD}");
    }

    /// Input arriving one byte at a time decodes the same.
    #[test]
    fn utf16_split_anywhere() {
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let Some((&b, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
        }
        let text = "x𝄞yé\n";
        let mut le = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
        }
        let mut out = String::new();
        utf8_reader(Box::new(BufReader::with_capacity(1, OneByte(&le))))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, text);
    }
}
