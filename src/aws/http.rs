//! HTTP/1.1 as the shadow client needs it: requests encoded to exact bytes (their length is
//! what `AT+CIPSEND` announces), responses parsed with httparse from however many `+IPD`
//! frames they arrive in, with `content-length` or chunked bodies.
//!
//! Spec: `aws-iot-shadow.md` §2.1–§2.2 (headers AWS sends and expects), §7 (keep-alive).

use std::fmt;

/// Why a response cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The status line or headers are not HTTP/1.x.
    #[error("the response is not valid HTTP: {0}")]
    Malformed(String),
    /// A `content-length` that is not a number.
    #[error("the response has an invalid content-length '{0}'")]
    BadContentLength(String),
    /// Broken chunked framing.
    #[error("the response's chunked body is malformed")]
    BadChunk,
    /// The connection ended before the response did.
    #[error("the connection closed after {got} of {expected} body bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes announced (0 when unknown).
        expected: usize,
    },
    /// A response larger than any shadow document can make.
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    /// A request field that would change the request's framing (CR, LF, a space in the
    /// target, any control character): the request is not written at all.
    #[error("the request's {0} holds a character that HTTP does not allow there (CR, LF, space or another control character); nothing was sent")]
    UnsafeField(&'static str),
}

/// A complete response.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server keeps the connection open after this response.
    pub fn keep_alive(&self) -> bool {
        !self
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// The largest response accepted: shadow documents are at most 8 KB of state, plus
/// metadata of about the same size, plus headers.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// Encodes a request with exactly the headers AWS IoT needs for certificate auth: `Host`,
/// and for a body `Content-Type` and `Content-Length`. No others: every byte crosses the
/// serial line.
///
/// The method must be an HTTP token, the target and host visible ASCII without spaces
/// (RFC 9112 §3: request-target; RFC 9110 §5.5: no CR, LF or NUL in a field value): a value
/// that could end the line early and start a second request is refused, whatever checked
/// it before.
pub fn encode_request(
    method: &str,
    target: &str,
    host: &str,
    body: Option<&[u8]>,
) -> Result<Vec<u8>, HttpError> {
    let visible = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !visible(method) || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(HttpError::UnsafeField("method"));
    }
    if !visible(target) {
        return Err(HttpError::UnsafeField("target"));
    }
    if !visible(host) {
        return Err(HttpError::UnsafeField("Host header"));
    }
    let mut out = Vec::with_capacity(64 + target.len() + host.len() + body.map_or(0, <[u8]>::len));
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// What [`parse_response`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole response, made of the first `usize` bytes.
    Complete(Response, usize),
    /// Not all of it yet.
    Partial,
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// The most bytes a response may occupy on the wire: a head and a body of up to
/// [`MAX_RESPONSE`] each. A response still incomplete beyond that can never be accepted,
/// so the caller's buffer never grows past it (chunk extensions, endless trailers).
pub const MAX_WIRE: usize = 2 * MAX_RESPONSE;

/// Parses the response at the front of `buf`. `closed` says whether the connection has
/// ended, which completes a response framed by connection close (and turns a short body
/// into [`HttpError::Truncated`]). A response not complete within [`MAX_WIRE`] bytes is
/// [`HttpError::TooLarge`].
pub fn parse_response(buf: &[u8], closed: bool) -> Result<Parsed, HttpError> {
    match parse_front(buf, closed)? {
        Parsed::Partial if buf.len() > MAX_WIRE => Err(HttpError::TooLarge(MAX_RESPONSE)),
        parsed => Ok(parsed),
    }
}

fn parse_front(buf: &[u8], closed: bool) -> Result<Parsed, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_RESPONSE {
                return Err(HttpError::TooLarge(MAX_RESPONSE));
            }
            return if closed && !buf.is_empty() {
                Err(HttpError::Truncated {
                    got: 0,
                    expected: 0,
                })
            } else {
                Ok(Parsed::Partial)
            };
        }
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    let status = res.code.unwrap_or(0);
    let reason = res.reason.unwrap_or("").to_string();
    let headers: Vec<(String, String)> = res
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let framing = if header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        Framing::Chunked
    } else if let Some(len) = header("content-length") {
        let n = len
            .parse::<usize>()
            .map_err(|_| HttpError::BadContentLength(crate::trace::escape(len.as_bytes())))?;
        if n > MAX_RESPONSE {
            return Err(HttpError::TooLarge(MAX_RESPONSE));
        }
        Framing::Length(n)
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else {
        Framing::UntilClose
    };
    let rest = &buf[head_len..];
    let (body, body_len) = match framing {
        Framing::Length(n) if rest.len() >= n => (rest[..n].to_vec(), n),
        Framing::Length(n) if closed => {
            return Err(HttpError::Truncated {
                got: rest.len(),
                expected: n,
            })
        }
        Framing::Length(_) => return Ok(Parsed::Partial),
        Framing::Chunked => match dechunk(rest)? {
            Some(done) => done,
            None if closed => {
                return Err(HttpError::Truncated {
                    got: rest.len(),
                    expected: 0,
                })
            }
            None => return Ok(Parsed::Partial),
        },
        Framing::UntilClose if closed => (rest.to_vec(), rest.len()),
        Framing::UntilClose if rest.len() > MAX_RESPONSE => {
            return Err(HttpError::TooLarge(MAX_RESPONSE))
        }
        Framing::UntilClose => return Ok(Parsed::Partial),
    };
    Ok(Parsed::Complete(
        Response {
            status,
            reason,
            headers,
            body,
        },
        head_len + body_len,
    ))
}

/// Decodes a chunked body at the front of `buf`: the body and the bytes it used, or `None`
/// if it is not complete yet.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let (consumed, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(HttpError::BadChunk),
        };
        pos += consumed;
        let size = usize::try_from(size).map_err(|_| HttpError::BadChunk)?;
        if size > MAX_RESPONSE || body.len() + size > MAX_RESPONSE {
            return Err(HttpError::TooLarge(MAX_RESPONSE));
        }
        if size == 0 {
            // Optional trailers, then the final CRLF.
            loop {
                let rest = &buf[pos..];
                let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                    return Ok(None);
                };
                pos += nl + 1;
                if rest[..nl].iter().all(|&b| b == b'\r') {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size;
        if &buf[pos..pos + 2] != b"\r\n" {
            return Err(HttpError::BadChunk);
        }
        pos += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The response of the classic guide's POST, as AWS sent it.
    const GUIDE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 157\r\ndate: Fri, 22 Feb 2019 13:45:11 GMT\r\nx-amzn-RequestId: 09d6baa8-7cd9-24ff-cbef-654cbf95a59d\r\nconnection: keep-alive\r\n\r\n{\"state\":{\"desired\":{\"prop1\":\"12\"},\"reported\":{}},\"metadata\":{\"desired\":{\"prop1\":{\"timestamp\":1550843111}},\"reported\":{}},\"version\":7,\"timestamp\":1550843111}";

    #[test]
    fn request_bytes_are_exact() {
        assert_eq!(
            encode_request("GET", "/things/lnu_001/shadow", "x-ats.iot.us-east-1.amazonaws.com", None).unwrap(),
            b"GET /things/lnu_001/shadow HTTP/1.1\r\nHost: x-ats.iot.us-east-1.amazonaws.com\r\n\r\n"
        );
        assert_eq!(
            encode_request("POST", "/things/t/shadow", "h", Some(b"{}")).unwrap(),
            b"POST /things/t/shadow HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn no_field_can_start_a_second_request() {
        let smuggle = "h\r\n\r\nDELETE /things/t/shadow HTTP/1.1\r\nHost: h";
        assert_eq!(
            encode_request("GET", "/things/t/shadow", smuggle, None),
            Err(HttpError::UnsafeField("Host header"))
        );
        for target in ["/a b", "/a\r\nX: y", "/a\nb", "", "/a\u{0}"] {
            assert_eq!(
                encode_request("GET", target, "h", None),
                Err(HttpError::UnsafeField("target")),
                "{target:?}"
            );
        }
        for host in ["", "h h", "h\tx", "h\u{7f}", "hé"] {
            assert_eq!(
                encode_request("GET", "/", host, None),
                Err(HttpError::UnsafeField("Host header")),
                "{host:?}"
            );
        }
        assert_eq!(
            encode_request("GET /x HTTP/1.1\r\n", "/", "h", None),
            Err(HttpError::UnsafeField("method"))
        );
    }

    #[test]
    fn parses_the_guides_response_and_waits_for_the_body() {
        let head_len = GUIDE.len() - 157;
        assert_eq!(
            parse_response(&GUIDE[..head_len], false),
            Ok(Parsed::Partial)
        );
        assert_eq!(
            parse_response(&GUIDE[..GUIDE.len() - 1], false),
            Ok(Parsed::Partial)
        );
        let Ok(Parsed::Complete(res, n)) = parse_response(GUIDE, false) else {
            panic!()
        };
        assert_eq!((res.status, n), (200, GUIDE.len()));
        assert_eq!(res.header("Content-Type"), Some("application/json"));
        assert!(res.keep_alive());
        assert!(res.body.starts_with(b"{\"state\""));
        assert_eq!(
            parse_response(&GUIDE[..GUIDE.len() - 10], true),
            Err(HttpError::Truncated {
                got: 147,
                expected: 157
            })
        );
    }

    #[test]
    fn chunked_bodies_are_reassembled() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\nHTTP";
        let Ok(Parsed::Complete(res, n)) = parse_response(raw, false) else {
            panic!()
        };
        assert_eq!(res.body, b"{\"a\":1}");
        assert_eq!(&raw[n..], b"HTTP");
        for cut in 0..raw.len() - 4 {
            assert_eq!(
                parse_response(&raw[..cut], false),
                Ok(Parsed::Partial),
                "cut {cut}"
            );
        }
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                false
            ),
            Err(HttpError::BadChunk)
        );
    }

    #[test]
    fn malformed_and_oversized() {
        assert!(matches!(
            parse_response(b"HTTX/1.1 200 OK\r\n\r\n", false),
            Err(HttpError::Malformed(_))
        ));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", false),
            Err(HttpError::BadContentLength("x".into()))
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n",
                false
            ),
            Err(HttpError::TooLarge(MAX_RESPONSE))
        );
    }
}
