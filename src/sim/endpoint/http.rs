//! HTTP/1.1 for the endpoint, without I/O: push-parse requests out of a byte buffer and encode
//! responses with the header set AWS IoT sends.
//!
//! Parsing is httparse's `Partial`/`Complete` model: the connection keeps appending bytes and
//! asks again, so a request split across TLS records (or pipelined behind another) is handled
//! the same way. Header set and order follow `aws-iot-shadow.md` §2.2 and §10.

use std::time::SystemTime;

/// Most headers one request may carry.
const MAX_HEADERS: usize = 64;
/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body accepted. AWS documents no separate REST body cap (§5); this one only
/// keeps a misbehaving client from making the endpoint buffer without bound.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as sent (path and query, still percent-encoded).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Headers in the order sent, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (exactly `content-length` bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client asked for the connection to end after this response.
    pub fn wants_close(&self) -> bool {
        let connection = self.header("connection").map(str::to_ascii_lowercase);
        match self.minor_version {
            0 => connection.as_deref() != Some("keep-alive"),
            _ => connection.as_deref() == Some("close"),
        }
    }

    /// The path, percent-decoded segment by segment; `None` if an escape is invalid.
    pub fn path_segments(&self) -> Option<Vec<String>> {
        let path = self.target.split('?').next().unwrap_or("");
        path.split('/').skip(1).map(percent_decode).collect()
    }

    /// The raw path (before `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string (after `?`), empty when absent.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The first query parameter named `name`, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .find(|(k, _)| percent_decode(k).as_deref() == Some(name))
            .map(|(_, v)| percent_decode(&v.replace('+', " ")).unwrap_or_else(|| v.to_string()))
    }
}

/// Why bytes could not be read as a request. Each case is answered with a 400 (or 413) and
/// the connection is closed, since the next request's start cannot be found reliably.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The request line or headers do not parse.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The head or the body is larger than this endpoint accepts.
    #[error("request too large")]
    TooLarge,
}

/// Result of one parse attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request, and how many bytes of the buffer it used.
    Complete(Request, usize),
    /// More bytes are needed.
    Partial,
}

/// Parses one request from the front of `buf`.
pub fn parse_request(buf: &[u8]) -> Result<Parsed, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD_BYTES {
                return Err(HttpError::TooLarge);
            }
            return Ok(Parsed::Partial);
        }
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(HttpError::TooLarge);
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    let minor_version = req.version.unwrap_or(1);
    let mut out_headers = Vec::with_capacity(req.headers.len());
    let mut content_length: Option<usize> = None;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::Malformed(format!("header {} is not UTF-8", h.name)))?
            .trim()
            .to_string();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| HttpError::Malformed("invalid content-length".into()))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(HttpError::Malformed("conflicting content-length".into()));
            }
            content_length = Some(n);
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Malformed(
                "transfer-encoding is not supported; send content-length".into(),
            ));
        }
        out_headers.push((h.name.to_string(), value));
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > MAX_BODY_BYTES {
        return Err(HttpError::TooLarge);
    }
    if buf.len() < head_len + body_len {
        return Ok(Parsed::Partial);
    }
    Ok(Parsed::Complete(
        Request {
            method,
            target,
            minor_version,
            headers: out_headers,
            body: buf[head_len..head_len + body_len].to_vec(),
        },
        head_len + body_len,
    ))
}

/// Whether `buf` starts with a complete request head that carries `Expect: 100-continue`
/// (curl sends it for bodies over 1 KiB and waits a second for `100 Continue` otherwise).
pub fn expects_continue(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    matches!(req.parse(buf), Ok(httparse::Status::Complete(_)))
        && req.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("expect") && h.value.eq_ignore_ascii_case(b"100-continue")
        })
}

/// The interim response that tells a client to send its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Decodes `%XX` escapes; `None` when an escape is invalid or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A response ready to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in wire order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Whether the connection closes after this response.
    pub close: bool,
}

impl Response {
    /// A JSON response with AWS's header set: `content-type`, `content-length`, `date`,
    /// `x-amzn-RequestId`, `connection`, and `x-amzn-ErrorType` on errors.
    pub fn json(
        status: u16,
        body: String,
        request_id: &str,
        date: SystemTime,
        error_type: Option<&str>,
        close: bool,
    ) -> Self {
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("content-length".to_string(), body.len().to_string()),
            ("date".to_string(), httpdate::fmt_http_date(date)),
            ("x-amzn-RequestId".to_string(), request_id.to_string()),
            (
                "connection".to_string(),
                if close { "close" } else { "keep-alive" }.to_string(),
            ),
        ];
        if let Some(t) = error_type {
            headers.push(("x-amzn-ErrorType".to_string(), t.to_string()));
        }
        Response {
            status,
            headers,
            body: body.into_bytes(),
            close,
        }
    }

    /// The 403 AWS sends on port 443 to a certificate client that did not negotiate ALPN
    /// `x-amzn-http-ca` (it takes the request for SigV4 and finds no signature). Header set and
    /// body exactly as captured (§1): no `date`, `connection: Keep-Alive`, no `code`.
    pub fn missing_authentication_token(request_id: &str) -> Self {
        let body = format!(
            "{{\"message\":\"Missing Authentication Token\",\"traceId\":\"{request_id}\"}}"
        );
        Response {
            status: 403,
            headers: vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("content-length".to_string(), body.len().to_string()),
                ("x-amzn-RequestId".to_string(), request_id.to_string()),
                ("connection".to_string(), "Keep-Alive".to_string()),
                (
                    "x-amzn-ErrorType".to_string(),
                    "ForbiddenException:".to_string(),
                ),
            ],
            body: body.into_bytes(),
            close: false,
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.body.len());
        out.extend_from_slice(
            format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes(),
        );
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// The reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_then_complete() {
        let full =
            b"POST /things/t/shadow?name=a%24b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}";
        for cut in 0..full.len() {
            assert_eq!(
                parse_request(&full[..cut]),
                Ok(Parsed::Partial),
                "cut {cut}"
            );
        }
        let Ok(Parsed::Complete(req, n)) = parse_request(full) else {
            panic!("not complete")
        };
        assert_eq!(n, full.len());
        assert_eq!(req.method, "POST");
        assert_eq!(req.body, b"{}");
        assert_eq!(req.query_param("name").as_deref(), Some("a$b"));
        assert_eq!(
            req.path_segments(),
            Some(vec!["things".into(), "t".into(), "shadow".into()])
        );
    }

    #[test]
    fn malformed_and_chunked() {
        assert!(matches!(
            parse_request(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Err(HttpError::TooLarge)
        );
    }

    #[test]
    fn keep_alive_rules() {
        let parse = |b: &[u8]| match parse_request(b) {
            Ok(Parsed::Complete(r, _)) => r,
            other => panic!("{other:?}"),
        };
        assert!(!parse(b"GET / HTTP/1.1\r\n\r\n").wants_close());
        assert!(parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").wants_close());
        assert!(parse(b"GET / HTTP/1.0\r\n\r\n").wants_close());
        assert!(!parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").wants_close());
    }
}
