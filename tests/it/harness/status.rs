//! [`StatusProxy`]: an HTTP proxy in front of a registry that answers
//! chosen requests with a status of its own (a 403 to every upload, a 500
//! to one tag's manifest) and forwards the rest; or, [`StatusProxy::dying`],
//! that stops listening after a chosen request (a registry that dies
//! mid-run: every later connection is refused). One request per
//! connection (`Connection: close`), bodies read by `Content-Length`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct StatusProxy {
    pub port: u16,
    /// Requests answered with the chosen status so far.
    pub answered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl StatusProxy {
    /// Requests whose request line (`PUT /v2/… HTTP/1.1`) starts with
    /// `method` and contains `path_part` get `status` and a distribution
    /// error body with `code`; the rest go to the registry on `upstream`.
    pub fn start(
        upstream: u16,
        method: &'static str,
        path_part: &'static str,
        status: &'static str,
        code: &'static str,
    ) -> StatusProxy {
        StatusProxy::run(upstream, (method, path_part, status, code), false)
    }

    /// Forwards every request until the first that starts with `method`
    /// and contains `path_part`; forwards that one too, then stops
    /// listening.
    pub fn dying(upstream: u16, method: &'static str, path_part: &'static str) -> StatusProxy {
        StatusProxy::run(upstream, (method, path_part, "", ""), true)
    }

    fn run(upstream: u16, rule: Rule, die: bool) -> StatusProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), answered.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if s.load(Ordering::SeqCst) {
                    break;
                }
                conn.set_nonblocking(false).unwrap();
                let (a, s) = (a.clone(), s.clone());
                std::thread::spawn(move || {
                    let _ = handle(&conn, upstream, rule, die, &a, &s);
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                });
            }
            // The listener is dropped here: connections are refused.
        });
        StatusProxy {
            port,
            answered,
            stop,
        }
    }
}

impl Drop for StatusProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Method, part of the path, status and error code.
type Rule = (&'static str, &'static str, &'static str, &'static str);

fn handle(
    conn: &TcpStream,
    upstream: u16,
    (method, path_part, status, code): Rule,
    die: bool,
    answered: &AtomicUsize,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut head = line.clone();
    let mut len = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            if k.eq_ignore_ascii_case("connection") {
                continue;
            }
        }
        head.push_str(&h);
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let mut conn = conn;
    let matched = line.starts_with(method) && line.contains(path_part);
    if matched && die {
        answered.fetch_add(1, Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
    } else if matched {
        answered.fetch_add(1, Ordering::SeqCst);
        let body =
            format!(r#"{{"errors":[{{"code":"{code}","message":"answered by the test proxy"}}]}}"#);
        // A 503 asks for a retry after 5 s, as a registry that is busy does.
        let retry_after = if status.starts_with("503") {
            "Retry-After: 5\r\n"
        } else {
            ""
        };
        return write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry_after}Connection: close\r\n\r\n{body}",
            body.len()
        );
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    server.write_all(head.as_bytes())?;
    server.write_all(&body)?;
    let mut resp = Vec::new();
    server.read_to_end(&mut resp)?;
    conn.write_all(&resp)
}
