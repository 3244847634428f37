//! HTTP/1.1 plumbing of the double, in fault_proxy's style: one request per client connection,
//! answered (or forwarded upstream with `Connection: close`, the response piped back) and
//! closed; and the double's own JSON 1.0 calls to DynamoDB Local, signed with a dummy SigV4
//! header (DynamoDB Local reads the access key ID and region from it, not the signature).

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(super) const JSON_10: &str = "application/x-amz-json-1.0";

/// The error types of the double's answers.
pub(super) const VALIDATION: &str = "com.amazon.coral.validate#ValidationException";
pub(super) fn ddb_error(name: &str) -> String {
    format!("com.amazonaws.dynamodb.v20120810#{name}")
}

/// A request: its head (request line and headers) and body.
pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Access key ID and region of the request's SigV4 Authorization header.
    pub fn credential(&self) -> Option<(String, String)> {
        let auth = self.header("authorization")?;
        let cred = auth.split("Credential=").nth(1)?;
        let mut parts = cred.split(['/', ',']);
        let key = parts.next()?.to_string();
        let _date = parts.next()?;
        let region = parts.next()?.to_string();
        Some((key, region))
    }
}

pub async fn read_request(s: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::with_capacity(4096);
    let mut tmp = [0u8; 8192];
    let header_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let req = Request {
        head,
        body: Vec::new(),
    };
    let len = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[header_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Ok(Some(Request { body, ..req }))
}

/// Answer with `status` and a JSON body, then close.
pub(super) async fn respond(s: &mut TcpStream, status: &str, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {JSON_10}\r\nContent-Length: {}\r\n\
         x-amzn-RequestId: stream-double\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}

/// An AWS JSON 1.0 error body.
pub(super) fn error_body(error_type: &str, message: &str) -> Value {
    json!({ "__type": error_type, "message": message })
}

/// Forward the request untouched (but for `Connection: close`) and pipe the answer back.
pub(super) async fn forward(
    mut client: TcpStream,
    up: SocketAddr,
    req: &Request,
) -> std::io::Result<()> {
    let mut head_out = String::with_capacity(req.head.len() + 20);
    for line in req.head.trim_end().split("\r\n") {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        head_out.push_str(line);
        head_out.push_str("\r\n");
    }
    head_out.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(up).await?;
    server.write_all(head_out.as_bytes()).await?;
    server.write_all(&req.body).await?;
    tokio::io::copy(&mut server, &mut client).await?;
    client.shutdown().await
}

/// An upstream error: its type (after the '#') and message.
#[derive(Debug, Clone)]
pub(super) struct UpError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for UpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

fn up_error(code: &str, message: impl Into<String>) -> UpError {
    UpError {
        code: code.to_string(),
        message: message.into(),
    }
}

/// One JSON 1.0 call to DynamoDB Local (`target` like `DynamoDBStreams_20120810.GetRecords`)
/// as access key `cred.0` in region `cred.1`.
pub(super) async fn call(
    up: SocketAddr,
    cred: &(String, String),
    target: &str,
    body: &Value,
) -> Result<Value, UpError> {
    let io = |e: std::io::Error| up_error("Io", format!("{target} to {up}: {e}"));
    let body = body.to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (date, stamp) = amz_date(now);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {up}\r\nContent-Type: {JSON_10}\r\nX-Amz-Target: {target}\r\n\
         X-Amz-Date: {stamp}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={}/{date}/{}/dynamodb/\
         aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        cred.0,
        cred.1,
        body.len()
    );
    let mut s = TcpStream::connect(up).await.map_err(io)?;
    s.write_all(req.as_bytes()).await.map_err(io)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.map_err(io)?;
    let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(up_error("Malformed", format!("{target}: no HTTP head")));
    };
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let mut payload = resp[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let v: Value = serde_json::from_slice(&payload).map_err(|e| {
        up_error(
            "Malformed",
            format!("{target}: HTTP {status}, body not JSON: {e}"),
        )
    })?;
    if status == "200" {
        return Ok(v);
    }
    let t = v["__type"].as_str().unwrap_or("Unknown");
    let code = t.rsplit('#').next().unwrap_or(t);
    let message = v["message"]
        .as_str()
        .or(v["Message"].as_str())
        .unwrap_or("")
        .to_string();
    Err(up_error(code, message))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// (YYYYMMDD, YYYYMMDDTHHMMSSZ) of `secs` since the epoch.
fn amz_date(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}{m:02}{d:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    (date, stamp)
}
