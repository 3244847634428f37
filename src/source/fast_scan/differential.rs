//! Both Scan deserializers on random bodies built from DynamoDB JSON's grammar (every type,
//! escapes, surrogates, base64 forms, nulls, duplicate and unknown keys, numbers at the edges
//! of f64), then mutated byte by byte (truncated, a byte removed or inserted, invalid UTF-8):
//! whenever the fast parser takes a body, the SDK must give the same `ScanOutput`; when it
//! declines, the SDK's outcome is the result.

use super::tests::{fast, sdk};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn string(r: &mut Rng) -> String {
    let parts = [
        "a",
        "Z",
        "\\\"",
        "\\\\",
        "\\/",
        "\\b",
        "\\f",
        "\\n",
        "\\r",
        "\\t",
        "\\u0000",
        "\\u00e9",
        "\\ud83d\\ude00",
        "\\ud800",
        "\\udc00",
        "\\uDBFF\\uDFFF",
        "\\u2028",
        "é",
        "😀",
        "\\uD83D",
        "\\u0041",
        "\\x",
        "\u{7f}",
        " ",
        "\\uffff",
        "\\ufffe",
        "\\ud800\\u0041",
        "\\ude00\\ud83d",
        "\\U0041",
        "\\u00",
        "\t",
    ];
    let n = r.below(5);
    (0..n).map(|_| r.pick(&parts)).collect()
}

fn number(r: &mut Rng) -> String {
    r.pick(&[
        "0",
        "-0",
        "1",
        "00",
        "007",
        "1.0",
        "-1E-130",
        "9.9999999999999999999999999999999999999E+125",
        "12345678901234567890123456789012345678",
        "1e5",
        "1E+5",
        ".5",
        "5.",
        "-",
        "",
        "+1",
        "0x10",
        "1_0",
        " 1",
        "NaN",
        "\\u0031",
    ])
    .to_string()
}

fn blob(r: &mut Rng) -> String {
    r.pick(&[
        "",
        "AA==",
        "AAE=",
        "AAEC",
        "QQ==",
        "QR==",
        "QQ=",
        "QQ",
        "Q===",
        "====",
        "=",
        "AA==AA==",
        "AAEC\\n",
        "AA\\u003d\\u003d",
        "\\/w==",
        "/w==",
        "+/+/",
        "-_-_",
        "AA ==",
        " AA==",
        "AA==\n",
        "AAECAw",
        "AAECAw==",
        "AAE",
        "A",
        "AAECAwQ=",
        "AAECAwQF",
        "////",
        "ABC=",
        "ABD=",
        "AB==",
        "AC==",
    ])
    .to_string()
}

fn attr(r: &mut Rng, depth: u32) -> String {
    let k = r.below(if depth > 4 { 8 } else { 11 });
    match k {
        0 => format!(r#"{{"S":"{}"}}"#, string(r)),
        1 => format!(r#"{{"N":"{}"}}"#, number(r)),
        2 => format!(r#"{{"B":"{}"}}"#, blob(r)),
        3 => format!(
            r#"{{"BOOL":{}}}"#,
            r.pick(&["true", "false", "null", "1", "\"true\""])
        ),
        4 => format!(r#"{{"NULL":{}}}"#, r.pick(&["true", "false", "null"])),
        5 => {
            let n = r.below(3);
            let xs: Vec<String> = (0..n).map(|_| format!("\"{}\"", string(r))).collect();
            format!(r#"{{"SS":[{}]}}"#, xs.join(","))
        }
        6 => {
            let n = r.below(3);
            let xs: Vec<String> = (0..n).map(|_| format!("\"{}\"", number(r))).collect();
            format!(r#"{{"NS":[{}]}}"#, xs.join(","))
        }
        7 => {
            let n = r.below(3);
            let xs: Vec<String> = (0..n).map(|_| format!("\"{}\"", blob(r))).collect();
            format!(r#"{{"BS":[{}]}}"#, xs.join(","))
        }
        8 => {
            let n = r.below(3);
            let xs: Vec<String> = (0..n).map(|_| attr(r, depth + 1)).collect();
            format!(r#"{{"L":[{}]}}"#, xs.join(","))
        }
        9 => format!(r#"{{"M":{}}}"#, item(r, depth + 1)),
        _ => r
            .pick(&[
                r#"{}"#,
                r#"{"S":"a","S":"b"}"#,
                r#"{"S":null}"#,
                r#"{"__type":"x","S":"a"}"#,
                r#"{"Q":1}"#,
                r#"null"#,
                r#"{"s":"a"}"#,
                r#"{"S":"a","Q":null}"#,
            ])
            .to_string(),
    }
}

fn item(r: &mut Rng, depth: u32) -> String {
    let n = r.below(4);
    let xs: Vec<String> = (0..n)
        .map(|_| {
            let name = r.pick(&["a", "b", "a", "\\u0061", "", "PK", "\\ud800", "é"]);
            format!(r#""{name}":{}"#, attr(r, depth))
        })
        .collect();
    format!("{{{}}}", xs.join(","))
}

fn body(r: &mut Rng) -> Vec<u8> {
    let mut fields = Vec::new();
    let n = r.below(6);
    for _ in 0..n {
        let f = match r.below(10) {
            0 | 1 => {
                let k = r.below(3);
                let xs: Vec<String> = (0..k).map(|_| item(r, 0)).collect();
                format!(r#""Items":[{}]"#, xs.join(","))
            }
            2 => format!(
                r#""Count":{}"#,
                r.pick(&[
                    "1",
                    "0",
                    "-0",
                    "1.0",
                    "1e2",
                    "null",
                    "2147483648",
                    "-1",
                    "01"
                ])
            ),
            3 => format!(r#""ScannedCount":{}"#, r.pick(&["1", "0", "null", "3"])),
            4 => format!(r#""LastEvaluatedKey":{}"#, item(r, 3)),
            5 => format!(
                r#""ConsumedCapacity":{}"#,
                r.pick(&[
                    r#"{"TableName":"t","CapacityUnits":0.5}"#,
                    r#"{"CapacityUnits":1e400}"#,
                    r#"{"CapacityUnits":null}"#,
                    r#"{"CapacityUnits":"1"}"#,
                    r#"{"CapacityUnits":-0}"#,
                    r#"{"CapacityUnits":0.30000000000000004}"#,
                    r#"{"CapacityUnits":2.2250738585072011e-308}"#,
                    r#"{"Table":{"CapacityUnits":1}}"#,
                    r#"null"#,
                ])
            ),
            8 => {
                let m = r.next() % 10_000_000_000_000_000;
                let e = (r.next() % 700) as i64 - 350;
                format!(r#""ConsumedCapacity":{{"CapacityUnits":{m}e{e}}}"#)
            }
            6 => format!(
                r#""{}":{}"#,
                r.pick(&["X", "__type", "Ite\\u006ds", "items", "message"]),
                attr(r, 0)
            ),
            7 => r#""Items":null"#.to_string(),
            _ => format!(r#""Count":{}"#, r.pick(&["1"])),
        };
        fields.push(f);
    }
    let mut b = format!("{{{}}}", fields.join(",")).into_bytes();
    // mutations
    for _ in 0..r.below(3) {
        let mut v = b.clone();
        let pos = r.below(v.len() as u64 + 1) as usize;
        match r.below(4) {
            0 => {
                v.truncate(pos);
            }
            1 => {
                if pos < v.len() {
                    v.remove(pos);
                }
            }
            2 => v.insert(
                pos,
                *[
                    b' ', b'\n', b',', b'\\', b'"', b'0', b'}', b']', b'{', b'[', b':', b'\t',
                    b'\r', 0x0c, b'u', b'e', b'-', b'.', b'n', 0xc3, 0xa9, 0x80, 0xff,
                ]
                .get(r.below(23) as usize)
                .unwrap(),
            ),
            _ => {
                v.extend_from_slice(b" ");
            }
        }
        b = v;
    }
    b
}

/// Bodies per run (about a second in a debug build); `SEED=n cargo test --lib random_bodies`
/// explores other ones.
const BODIES: usize = 40_000;

#[test]
fn random_bodies_parse_as_the_sdk_parses_them() {
    let mut r = Rng(std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1234_5678_9abc_def1));
    let mut taken = 0;
    let mut bad = 0;
    for _ in 0..BODIES {
        let b = body(&mut r);
        let (got, took) = fast(200, &b);
        let want = sdk(200, &b);
        if took {
            taken += 1;
        }
        let ok = match (&got, &want) {
            (Ok(g), Ok(w)) => g == w,
            (Err(g), Err(w)) => g == w,
            _ => false,
        };
        if !ok {
            bad += 1;
            if bad < 30 {
                eprintln!(
                    "DIFF took={took}: {}\n fast={got:?}\n sdk={want:?}\n",
                    String::from_utf8_lossy(&b)
                );
            }
        }
    }
    assert_eq!(bad, 0, "bodies parsed differently");
    // About a fifth are taken: the comparison is not only of errors.
    assert!(
        taken > BODIES / 10,
        "only {taken} bodies taken by the fast parser"
    );
}
