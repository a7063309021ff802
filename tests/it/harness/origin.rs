//! Two origins for the credential tests: [`LocationProxy`], an HTTP proxy in
//! front of a registry that points upload `Location`s (and, if asked, blob
//! downloads by a 307) at another port, and [`Recorder`], the listener on
//! that port, which keeps every request's headers and forwards it to the
//! registry (adding an `Authorization` of its own, as storage behind a
//! presigned URL authorises by the URL) or answers 404.
//!
//! One request per connection (`Connection: close` both ways), bodies read
//! by `Content-Length`: enough for airlock, skopeo and distribution.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the recorder received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub line: String,
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str())
    }
}

/// What the recorder does with a request once it is recorded.
#[derive(Clone)]
pub enum Answer {
    /// Forward to this registry port, with this `Authorization` (if any).
    Forward(u16, Option<String>),
    NotFound,
}

pub struct Recorder {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    pub fn start(answer: Answer) -> Recorder {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = requests.clone();
        let (port, stop) = serve(move |conn| {
            let (line, headers, body) = read_request(&conn)?;
            r.lock().unwrap().push(Recorded {
                line: line.clone(),
                headers: headers.clone(),
            });
            match &answer {
                Answer::NotFound => respond(conn, "404 Not Found", &[], b""),
                Answer::Forward(upstream, auth) => {
                    let mut headers = headers;
                    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
                    if let Some(a) = auth {
                        headers.push(("Authorization".into(), a.clone()));
                    }
                    let resp = forward(*upstream, &line, &headers, &body)?;
                    (&conn).write_all(&resp)
                }
            }
        });
        Recorder {
            port,
            requests,
            stop,
        }
    }

    pub fn seen(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub struct LocationProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl LocationProxy {
    /// In front of the registry on `upstream`: upload `Location`s move to
    /// port `other`, and with `redirect_blobs` every blob GET is answered
    /// by a 307 to the same path on `other`.
    pub fn start(upstream: u16, other: u16, redirect_blobs: bool) -> LocationProxy {
        let (port, stop) = serve(move |conn| {
            let (line, headers, body) = read_request(&conn)?;
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            if redirect_blobs && line.starts_with("GET ") && path.contains("/blobs/sha256:") {
                let to = format!("http://127.0.0.1:{other}{path}");
                return respond(conn, "307 Temporary Redirect", &[("Location", &to)], b"");
            }
            let resp = forward(upstream, &line, &headers, &body)?;
            (&conn).write_all(&move_upload_location(&resp, other))
        });
        LocationProxy { port, stop }
    }
}

impl Drop for LocationProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Accepts connections on a fresh port, one thread each, until stopped.
fn serve(
    handle: impl Fn(TcpStream) -> std::io::Result<()> + Send + Sync + 'static,
) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let Ok((conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            let h = handle.clone();
            std::thread::spawn(move || {
                let _ = h(conn.try_clone().unwrap());
                let _ = conn.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, stop)
}

type Request = (String, Vec<(String, String)>, Vec<u8>);

fn read_request(conn: &TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok((line.trim_end().to_string(), headers, body))
}

/// Sends one request to the registry (`Connection: close`) and returns its
/// whole answer.
fn forward(
    upstream: u16,
    line: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut head = format!("{line}\r\n");
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    server.write_all(head.as_bytes())?;
    server.write_all(body)?;
    let mut resp = Vec::new();
    server.read_to_end(&mut resp)?;
    Ok(resp)
}

fn respond(
    mut conn: TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)
}

/// Points an upload `Location` of a response at `127.0.0.1:other`, keeping
/// its path and query.
fn move_upload_location(resp: &[u8], other: u16) -> Vec<u8> {
    let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return resp.to_vec();
    };
    let head = String::from_utf8_lossy(&resp[..end]).to_string();
    let mut out = String::new();
    for h in head.split("\r\n") {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("location") && v.contains("/blobs/uploads/") => {
                let v = v.trim();
                let path = match v.find("/v2/") {
                    Some(i) => &v[i..],
                    None => v,
                };
                out.push_str(&format!("Location: http://127.0.0.1:{other}{path}\r\n"));
            }
            _ => out.push_str(&format!("{h}\r\n")),
        }
    }
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&resp[end + 2..]);
    bytes
}
