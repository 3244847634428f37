//! Tests of `export` (reading files, finding the data files).
use super::*;

/// Pages sent by `read_file` for `lines` (one DynamoDB-JSON item per line).
fn pages(lines: &[String], page_size: usize) -> Vec<Page> {
    let dir = std::env::temp_dir().join(format!("ddb2pg-pages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(format!("{}-{page_size}.json", lines.len()));
    std::fs::write(&path, lines.join("\n")).expect("write");
    let (_stop, shutdown) = watch::channel(false);
    let mut out = Vec::new();
    let mut pages = RawPages::new(|p| {
        out.push(p);
        true
    });
    read_file(&path, 0, page_size, shutdown, &Stats::default(), &mut pages).expect("read");
    let _ = std::fs::remove_file(&path);
    out
}

fn line(i: usize, filler: usize) -> String {
    format!(
        r#"{{"Item":{{"PK":{{"S":"k{i}"}},"blob":{{"S":"{}"}}}}}}"#,
        "x".repeat(filler)
    )
}

fn lines_of(input: &[u8], cap: usize) -> Vec<(Line, u64, Vec<u8>)> {
    let mut r = BufReader::with_capacity(4, input);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        let (kind, n) = next_line(&mut r, &mut buf, cap).expect("read");
        if kind == Line::End {
            return out;
        }
        out.push((kind, n, buf.clone()));
    }
}

#[test]
fn a_line_is_read_up_to_the_cap_and_past_the_rest() {
    let got = lines_of(b"abcd\nabcde\nabcdefghij\nxy\nabcdefg", 5);
    let w = |n: u64, b: &[u8]| (Line::Whole, n, b.to_vec());
    assert_eq!(
        got,
        [
            w(5, b"abcd\n"),
            w(6, b"abcde\n"),
            // Ten bytes: the start is kept (the cap and one), the rest read past.
            (Line::TooLong { len: 10 }, 11, b"abcdef".to_vec()),
            w(3, b"xy\n"),
            // The last line, too long and without a newline.
            (Line::TooLong { len: 7 }, 7, b"abcdef".to_vec()),
        ]
    );
    assert_eq!(lines_of(b"", 5), []);
    assert_eq!(lines_of(b"abcde", 5), [w(5, b"abcde")]);
    assert_eq!(lines_of(b"\n\n", 5), [w(1, b"\n"), w(1, b"\n")]);
}

/// Pages sent by `read_file` for the raw bytes of a file.
fn pages_of_bytes(name: &str, bytes: &[u8]) -> Vec<Page> {
    let dir = std::env::temp_dir().join(format!("ddb2pg-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    let (_stop, shutdown) = watch::channel(false);
    let mut out = Vec::new();
    let mut pages = RawPages::new(|p| {
        out.push(p);
        true
    });
    read_file(&path, 0, 100, shutdown, &Stats::default(), &mut pages).expect("read");
    let _ = std::fs::remove_file(&path);
    out
}

#[test]
fn lines_not_utf8_or_too_long_are_bad_lines_and_the_rest_is_read() {
    let mut bytes = line(0, 3).into_bytes();
    bytes.extend(b"\n{\"Item\":{\"PK\":{\"S\":\"caf\xe9\"}}}\n");
    bytes.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
    bytes.push(b'\n');
    bytes.extend(line(3, 3).into_bytes());
    let got = pages_of_bytes("bad-lines.json", &bytes);
    let items: usize = got.iter().map(|p| p.items.len()).sum();
    assert_eq!(items, 2, "lines 1 and 4");
    let bad: Vec<&BadLine> = got.iter().flat_map(|p| &p.bad).collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!(bad[0].line, 2);
    assert!(bad[0].reason.starts_with("not UTF-8"), "{}", bad[0].reason);
    assert!(bad[0].text.contains("caf\u{fffd}"), "{}", bad[0].text);
    assert_eq!(bad[1].line, 3);
    assert!(
        bad[1]
            .reason
            .contains(&format!("{} bytes", MAX_LINE_BYTES + 10)),
        "{}",
        bad[1].reason
    );
    assert_eq!(bad[1].text.len(), EXCERPT_CHARS);
}

#[test]
fn keys_that_stay_inside_a_folder() {
    for ok in ["a.json", "AWSDynamoDB/1/data/x.json.gz", "..a/b..", "a b/c"] {
        assert!(stays_inside(ok), "{ok}");
    }
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a/..",
        "a//b",
        "./a",
        "a/",
        "a/\0",
    ] {
        assert!(!stays_inside(bad), "{bad:?}");
    }
}

#[test]
fn pages_are_cut_by_lines_and_by_bytes() {
    // Small items: cut by count.
    let small: Vec<String> = (0..25).map(|i| line(i, 10)).collect();
    let sizes: Vec<usize> = pages(&small, 10).iter().map(|p| p.items.len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    // 300 KB items: a page holds the line that crosses 1 MiB, and no more.
    let big: Vec<String> = (0..9).map(|i| line(i, 300_000)).collect();
    let got = pages(&big, 1000);
    let sizes: Vec<usize> = got.iter().map(|p| p.items.len()).collect();
    assert_eq!(sizes, [4, 4, 1]);
    assert_eq!(got[0].next, Some(serde_json::json!({ "line": 4 })));
    assert_eq!(got[2].next, None);
}

#[test]
fn an_export_is_named_by_its_folder_or_its_manifest() {
    let f = |s: &str| folder_of(Path::new(s)).to_string_lossy().into_owned();
    assert_eq!(
        f("s3://b/exports/AWSDynamoDB/0170-ab/manifest-summary.json"),
        "s3://b/exports/AWSDynamoDB/0170-ab"
    );
    assert_eq!(f("s3://b/p/manifest-files.json"), "s3://b/p");
    assert_eq!(f("s3://b/p"), "s3://b/p");
    // A bucket is not a folder to strip down to.
    assert_eq!(
        f("s3://manifest-summary.json"),
        "s3://manifest-summary.json"
    );
    let dir = std::env::temp_dir().join(format!("ddb2pg-folder-of-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let summary = dir.join("manifest-summary.json");
    std::fs::write(&summary, "{}").expect("summary");
    assert_eq!(folder_of(&summary), dir);
    assert_eq!(folder_of(&dir), dir);
    // Not there: left as given, for `open` to say so.
    assert_eq!(
        folder_of(&dir.join("x/manifest-summary.json")),
        dir.join("x/manifest-summary.json")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_that_cannot_be_opened_is_named_with_the_os_error() {
    let path = std::env::temp_dir().join(format!("ddb2pg-missing-{}.json", std::process::id()));
    let (_stop, shutdown) = watch::channel(false);
    let mut pages = RawPages::new(|_| true);
    let e = read_file(&path, 0, 10, shutdown, &Stats::default(), &mut pages)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some(
            format!(
                "{}: cannot open: No such file or directory (os error 2)",
                path.display()
            )
            .as_str()
        )
    );
}

#[test]
fn a_manifest_summary_gives_the_table_and_the_time_its_data_is_as_of() {
    let full = serde_json::json!({"exportTime": "2024-05-14T11:14:20.608Z", "tableArn": "x"});
    assert_eq!(
        summary_time(&full),
        Some(("exportTime", "2024-05-14T11:14:20.608Z".to_string()))
    );
    let incremental = serde_json::json!({
        "exportFromTime": "2024-05-14T10:00:00.000Z",
        "exportToTime": "2024-05-14T11:00:00.000Z",
    });
    assert_eq!(
        summary_time(&incremental),
        Some(("exportToTime", "2024-05-14T11:00:00.000Z".to_string()))
    );
    assert_eq!(summary_time(&serde_json::json!({"exportTime": ""})), None);
    assert_eq!(
        table_of_arn("arn:aws:dynamodb:eu-central-1:1:table/S3ExportTest"),
        Some("S3ExportTest")
    );
    assert_eq!(
        table_of_arn("arn:aws:dynamodb:eu-central-1:1:table/app/stream/2024-01-01T00:00:00.000"),
        Some("app")
    );
    assert_eq!(table_of_arn("S3ExportTest"), None);
}
