//! COPY text format: how a row's cells are sent to PostgreSQL (tab-separated, `\N` for NULL,
//! backslash escapes, bytea as hex), with a word-at-a-time skip over text that needs no escape.

use bytes::{BufMut, BytesMut};

use crate::transform::Cell;

/// Append one row in COPY text format: tab-separated, `\N` for NULL, backslash escapes;
/// with `seq`, that number comes first.
pub fn encode_row(buf: &mut BytesMut, seq: Option<i64>, cells: &[Cell]) {
    if let Some(seq) = seq {
        // Formatted straight into the buffer: no String per row.
        let _ = std::fmt::Write::write_fmt(buf, format_args!("{seq}\t"));
    }
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b'\t');
        }
        match cell {
            Cell::Null => buf.put_slice(b"\\N"),
            Cell::Text(s) => escape_text(buf, s.as_bytes()),
            Cell::Bytes(b) => {
                // bytea hex input `\x...`, with the backslash escaped for COPY.
                buf.put_slice(b"\\\\x");
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for &x in b {
                    buf.put_u8(HEX[(x >> 4) as usize]);
                    buf.put_u8(HEX[(x & 15) as usize]);
                }
            }
        }
    }
    buf.put_u8(b'\n');
}

fn escape_text(buf: &mut BytesMut, s: &[u8]) {
    // Whole 8-byte words without a byte to escape are skipped at once (most of a jsonb text).
    let mut clean = 0;
    while let Some(word) = s.get(clean..clean + 8) {
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        if may_need_escape(w) {
            break;
        }
        clean += 8;
    }
    buf.put_slice(&s[..clean]);
    let s = &s[clean..];
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        buf.put_slice(&s[start..i]);
        buf.put_slice(esc);
        start = i + 1;
    }
    buf.put_slice(&s[start..]);
}

/// Whether any byte of `w` is a backslash or below 0x0e (which covers `\n`, `\r` and `\t`):
/// exact for "none", so a word it passes has nothing to escape.
fn may_need_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = w.wrapping_sub(ONES * 0x0e) & !w & HIGH;
    let x = w ^ (ONES * u64::from(b'\\'));
    let backslash = x.wrapping_sub(ONES) & !x & HIGH;
    below | backslash != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_encoding() {
        let mut b = BytesMut::new();
        encode_row(
            &mut b,
            Some(7),
            &[
                Cell::Text("a\tb\\c\nd\re".into()),
                Cell::Null,
                Cell::Bytes(vec![0, 255, 16]),
            ],
        );
        assert_eq!(&b[..], b"7\ta\\tb\\\\c\\nd\\re\t\\N\t\\\\x00ff10\n");
    }

    /// The word-at-a-time skip escapes exactly what the byte loop escapes: every byte value,
    /// at every position of a 24-byte text, among plain bytes and among bytes near the limits.
    #[test]
    fn word_skip_escapes_every_byte_as_the_byte_loop() {
        let slow = |s: &[u8]| -> Vec<u8> {
            let mut out = Vec::new();
            for &b in s {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    _ => out.push(b),
                }
            }
            out
        };
        for filler in [b'a', 0x0e, 0x0f, 0x5b, 0x5d, 0x80, 0xff, 0x0d] {
            for b in 0..=255u8 {
                for at in 0..24 {
                    let mut s = vec![filler; 24];
                    s[at] = b;
                    let mut buf = BytesMut::new();
                    escape_text(&mut buf, &s);
                    assert_eq!(
                        &buf[..],
                        &slow(&s)[..],
                        "byte {b:#x} at {at} among {filler:#x}"
                    );
                }
            }
        }
    }
}
