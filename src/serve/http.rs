//! Just enough HTTP/1.1 for a registry's read side: requests read with
//! bounded headers, responses with a known `Content-Length` (never
//! chunked), keep-alive.
//!
//! Not for routing (`routes.rs`) nor for sockets and TLS (`server.rs`).

use std::io::{self, BufRead, Read, Write};

/// The request line and headers may not exceed this, so a client cannot
/// make a connection hold more memory than this.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

pub struct Request {
    pub method: String,
    /// The path, percent-encoded as sent.
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// HTTP/1.0, or `Connection: close`: close after the answer.
    pub close: bool,
    /// The request carries a body we do not read (a push): close after.
    pub has_body: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header that may be repeated, joined as one list
    /// (Go clients send one `Accept` line per media type).
    pub fn header_list(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// A query parameter, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k) == name).then(|| decode(v))
        })
    }
}

/// Reads one request's head; `Ok(None)` when the client closed cleanly
/// between requests.
pub fn read_request<R: BufRead>(r: &mut R) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = Read::by_ref(r)
            .take((MAX_HEAD - head.len().min(MAX_HEAD)) as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err(bad("the connection closed inside a request"));
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEAD || lines.len() > MAX_HEADERS {
            return Err(bad("request headers too large"));
        }
        let text = String::from_utf8(line).map_err(|_| bad("request head is not UTF-8"))?;
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // a stray CRLF between requests is allowed
            }
            break;
        }
        lines.push(text);
    }
    let mut parts = lines[0].split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in &lines[1..] {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad("malformed header"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        close: version == "HTTP/1.0",
        has_body: false,
    };
    if let Some(c) = req.header("connection") {
        req.close = c.eq_ignore_ascii_case("close");
    }
    // Every Content-Length counts: two that disagree (a request smuggled
    // in the body) close the connection like any body.
    req.has_body = req.header("transfer-encoding").is_some()
        || req
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-length") && v != "0");
    Ok(Some(req))
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// `%XX` decoded (a `+` stays: media types have one); invalid escapes
/// are kept as they are.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                i += 3;
                continue;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `%`-encodes what may not stand in a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b':' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// Writes a status line and headers; the body follows from the caller.
pub fn write_head(
    out: &mut dyn Write,
    status: u16,
    headers: &[(String, String)],
    close: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        // Never a header split by what a bundle or a request put in one.
        if [k, v].iter().any(|s| s.contains(['\r', '\n'])) {
            return Err(bad("a response header holds a line break"));
        }
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A `Range: bytes=…` header against a blob of `size` bytes: `Ok(None)`
/// for none (or one we ignore, such as several ranges, which RFC 9110
/// lets a server answer whole), `Err(())` for one that cannot be met.
#[allow(clippy::result_unit_err)]
pub fn range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size
        } else {
            let last: u64 = b.parse().map_err(|_| ())?;
            if last < start {
                return Err(());
            }
            last.saturating_add(1).min(size)
        };
        (start, end)
    };
    if start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range(None, 10), Ok(None));
        assert_eq!(range(Some("bytes=0-0"), 10), Ok(Some((0, 1))));
        assert_eq!(range(Some("bytes=2-"), 10), Ok(Some((2, 10))));
        assert_eq!(range(Some("bytes=-3"), 10), Ok(Some((7, 10))));
        assert_eq!(range(Some("bytes=5-100"), 10), Ok(Some((5, 10))));
        assert_eq!(range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(range(Some("bytes=5-2"), 10), Err(()));
        assert_eq!(range(Some("bytes=x-"), 10), Err(()));
        assert_eq!(range(Some("bytes=-0"), 10), Err(()));
        assert_eq!(
            range(Some("bytes=0-18446744073709551615"), 10),
            Ok(Some((0, 10)))
        );
        assert_eq!(
            range(Some("bytes=-18446744073709551615"), 10),
            Ok(Some((0, 10)))
        );
    }

    #[test]
    fn requests() {
        let raw = b"GET /v2/a%2Fb/tags/list?n=2&last=x%2By HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        let req = read_request(&mut &raw[..]).unwrap().unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/v2/a%2Fb/tags/list");
        assert_eq!(req.param("n").as_deref(), Some("2"));
        assert_eq!(req.param("last").as_deref(), Some("x+y"));
        assert!(req.close && !req.has_body);
        assert_eq!(req.header("HOST"), Some("h"));
        assert!(read_request(&mut &b""[..]).unwrap().is_none());
        assert!(read_request(&mut &b"GET /\r\n\r\n"[..]).is_err());
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(read_request(&mut huge.as_bytes()).is_err());
        let push = b"PUT /v2/a/manifests/x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert!(read_request(&mut &push[..]).unwrap().unwrap().has_body);
        let two = b"GET / HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 5\r\n\r\nhello";
        assert!(read_request(&mut &two[..]).unwrap().unwrap().has_body);
        let zero = b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        assert!(!read_request(&mut &zero[..]).unwrap().unwrap().has_body);
    }

    #[test]
    fn a_header_with_a_line_break_is_not_written() {
        let mut out = Vec::new();
        let split = [("Content-Type".to_string(), "a\r\nSet-Cookie: x".to_string())];
        assert!(write_head(&mut out, 200, &split, false).is_err());
        assert!(out.is_empty());
        let fine = [("Content-Type".to_string(), "a/b".to_string())];
        write_head(&mut out, 200, &fine, false).unwrap();
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Type: a/b\r\n\r\n");
    }

    #[test]
    fn escapes() {
        assert_eq!(decode("a%2Fb%zz%"), "a/b%zz%");
        assert_eq!(encode("a/b c"), "a/b%20c");
    }
}
