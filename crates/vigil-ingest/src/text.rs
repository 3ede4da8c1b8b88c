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
    let (skip, little_endian) = match head.as_slice() {
        [0xEF, 0xBB, 0xBF] => (3, None),
        [0xFF, 0xFE, ..] => (2, Some(true)),
        [0xFE, 0xFF, ..] => (2, Some(false)),
        _ => (0, None),
    };
    let rest = std::io::Cursor::new(head.split_off(skip));
    let reader: Box<dyn BufRead + 'a> = Box::new(rest.chain(reader));
    let Some(little_endian) = little_endian else {
        return Ok(reader);
    };
    Ok(Box::new(BufReader::with_capacity(
        1 << 16,
        Utf16 {
            inner: reader,
            little_endian,
            pending: None,
            out: Vec::new(),
            at: 0,
        },
    )))
}

/// Decodes UTF-16 from `inner` into UTF-8. Unpaired surrogates become
/// U+FFFD, as an odd byte at the very end does.
struct Utf16<R> {
    inner: R,
    little_endian: bool,
    /// A high surrogate waiting for its pair.
    pending: Option<u16>,
    /// Decoded bytes not yet handed out, from `at`.
    out: Vec<u8>,
    at: usize,
}

impl<R: BufRead> Utf16<R> {
    /// Decodes the next run of input into `out`; `false` at the end.
    fn decode_more(&mut self) -> std::io::Result<bool> {
        self.out.clear();
        self.at = 0;
        let input = self.inner.fill_buf()?;
        if input.is_empty() {
            if self.pending.take().is_some() {
                self.out.extend_from_slice("\u{FFFD}".as_bytes());
                return Ok(true);
            }
            return Ok(false);
        }
        if input.len() == 1 {
            // One byte left over: the next read may bring its pair.
            let b = input[0];
            self.inner.consume(1);
            let next = self.inner.fill_buf()?;
            let Some(&c) = next.first() else {
                self.out.extend_from_slice("\u{FFFD}".as_bytes());
                return Ok(true);
            };
            self.inner.consume(1);
            let unit = if self.little_endian {
                u16::from_le_bytes([b, c])
            } else {
                u16::from_be_bytes([b, c])
            };
            self.push(unit);
            return Ok(true);
        }
        let n = input.len() & !1;
        let units: Vec<u16> = input[..n]
            .chunks_exact(2)
            .map(|p| {
                if self.little_endian {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                }
            })
            .collect();
        self.inner.consume(n);
        for unit in units {
            self.push(unit);
        }
        Ok(true)
    }

    fn push(&mut self, unit: u16) {
        let mut buf = [0u8; 4];
        let pair = match self.pending.take() {
            Some(high) if (0xDC00..0xE000).contains(&unit) => Some([high, unit]),
            Some(_) => {
                self.out.extend_from_slice("\u{FFFD}".as_bytes());
                None
            }
            None => None,
        };
        let units: &[u16] = match &pair {
            Some(p) => p,
            None if (0xD800..0xDC00).contains(&unit) => {
                self.pending = Some(unit);
                return;
            }
            None => std::slice::from_ref(&unit),
        };
        for c in char::decode_utf16(units.iter().copied()) {
            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
            self.out
                .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

impl<R: BufRead> Read for Utf16<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.out.len() {
            if !self.decode_more()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
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
