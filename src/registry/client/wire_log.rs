//! The log of every exchange with a registry: at info (`-v`) each
//! redirect, the method, the URL without its query, the status or failure
//! and the time; at debug (`-vv`) the headers, with credentials, cookies
//! and tokens redacted.

use std::time::Instant;

use ureq::http::{Method, Response};
use ureq::{Body, ResponseExt};

use crate::error::registry::{redact, RegistryError};

/// Logs one exchange at info (`-v`): each redirect it followed, then the
/// method, URL and status (or failure) and the time taken; at debug
/// (`-vv`) the response headers too. URLs lose their query string (it may
/// hold a presigned signature or a token), header values that carry
/// secrets are replaced (see [`shown_header`]).
pub(super) fn log_exchange(
    method: &Method,
    url: &str,
    started: Instant,
    outcome: &std::result::Result<Response<Body>, ureq::Error>,
) {
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    let ms = started.elapsed().as_millis();
    let url = redact(url);
    match outcome {
        Ok(resp) => {
            if let Some(hops) = resp.get_redirect_history() {
                for hop in hops.windows(2) {
                    log::info!(
                        "{method} {} redirected to {}",
                        redact(&hop[0].to_string()),
                        redact(&hop[1].to_string())
                    );
                }
            }
            let status = resp.status();
            log::info!(
                "{method} {url} -> {} {} ({ms} ms)",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            if log::log_enabled!(log::Level::Debug) {
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("<not text>")));
                log_headers(&format!("{method} {url}"), "<", headers);
            }
        }
        Err(e) => {
            let err = RegistryError::transport(String::new(), e);
            log::info!("{method} {url} -> failed: {} ({ms} ms)", err.brief());
        }
    }
}

/// Logs headers at debug, one line each: `> Name: value` sent, `<` received.
pub(super) fn log_headers<'h>(
    request: &str,
    dir: &str,
    headers: impl Iterator<Item = (&'h str, &'h str)>,
) {
    for (name, value) in headers {
        log::debug!(
            "{request} {dir} {name}: {}",
            crate::error::Shown(shown_header(name, value))
        );
    }
}

/// A header's value as logs show it: credentials, cookies and tokens as
/// `<redacted>`; a URL (a `Location`) without its query string.
fn shown_header<'v>(name: &str, value: &'v str) -> &'v str {
    let name = name.to_ascii_lowercase();
    let secret = matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-registry-auth"
    ) || name.contains("token");
    if secret {
        "<redacted>"
    } else if name == "location" || name == "content-location" {
        redact(value)
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;

    use super::*;
    use crate::registry::client::Client;
    use crate::registry::options::RegistryOptions;

    /// Log records of every test in this binary, kept for inspection.
    fn captured() -> &'static Mutex<Vec<(log::Level, String)>> {
        struct Capture;
        static LINES: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());
        impl log::Log for Capture {
            fn enabled(&self, _: &log::Metadata) -> bool {
                true
            }
            fn log(&self, r: &log::Record) {
                LINES
                    .lock()
                    .unwrap()
                    .push((r.level(), r.args().to_string()));
            }
            fn flush(&self) {}
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            log::set_logger(&Capture).unwrap();
            log::set_max_level(log::LevelFilter::Info);
        });
        &LINES
    }

    /// Answers 401 (Basic) to a request without credentials and 503 to
    /// one with them, forever.
    fn failing_registry() -> u16 {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(&conn);
                let mut authorized = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    authorized |= line.to_ascii_lowercase().starts_with("authorization:");
                }
                let answer = if authorized {
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                let _ = (&conn).write_all(answer.as_bytes());
            }
        });
        port
    }

    #[test]
    fn retries_are_logged_without_credentials_and_announced_once_past_2_s() {
        let lines = captured();
        let port = failing_registry();
        let host = format!("127.0.0.1:{port}");
        let opts = RegistryOptions {
            plain_http: vec![host.clone()],
            username: Some("alice".into()),
            password: Some("hunter2-secret".into()),
            login_registry: Some(host.clone()),
            attempts: 100,
            backoff: Duration::from_millis(400),
            retry_window: Duration::from_secs(3),
            ..Default::default()
        };
        let c = Client::new(&opts, &host).unwrap();
        let started = std::time::Instant::now();
        let err = c.ping().unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "bounded by the window"
        );
        assert!(err.is_whole_target(), "{err}");
        assert_eq!(
            err.to_string(),
            format!("GET http://{host}/v2/: HTTP 503; gave up after 3 s of retries")
        );
        let mine: Vec<(log::Level, String)> = lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains(&host))
            .cloned()
            .collect();
        let secret = B64.encode("alice:hunter2-secret");
        assert!(
            mine.iter()
                .all(|(_, l)| !l.contains("hunter2") && !l.contains(&secret)),
            "{mine:?}"
        );
        let retries = mine
            .iter()
            .filter(|(lvl, _)| *lvl == log::Level::Info)
            .count();
        assert!(retries >= 2, "each retry is logged: {mine:?}");
        let warnings: Vec<&String> = mine
            .iter()
            .filter(|(lvl, _)| *lvl == log::Level::Warn)
            .map(|(_, l)| l)
            .collect();
        assert_eq!(
            warnings,
            [&format!(
                "registry {host} is failing (HTTP 503); retrying for up to 3 s"
            )],
            "{mine:?}"
        );
    }

    #[test]
    fn logged_headers_hide_credentials_cookies_and_tokens() {
        for (name, value) in [
            ("Authorization", "Basic YWxpY2U6cHc="),
            ("proxy-authorization", "Bearer x"),
            ("Cookie", "session=1"),
            ("set-cookie", "session=1; HttpOnly"),
            ("X-Registry-Token", "t"),
        ] {
            assert_eq!(shown_header(name, value), "<redacted>", "{name}");
        }
        assert_eq!(
            shown_header("Location", "https://s3/x?X-Amz-Signature=s"),
            "https://s3/x"
        );
        assert_eq!(shown_header("Content-Type", "a/b"), "a/b");
    }
}
