//! Splitting one AT command line into its name, operation and parameters, the way the
//! ESP-AT core's parser does (`esp-at.md` §4.2).
//!
//! Pure and total: every byte sequence yields either a [`Line`] or a [`LineError`].

/// What the host asked the command to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `AT+X` (execute).
    Exec,
    /// `AT+X?` (query).
    Query,
    /// `AT+X=?` (test).
    Test,
    /// `AT+X=<params>` (set).
    Set(Vec<Param>),
}

/// One comma-separated parameter of a set command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// Nothing between two commas (an omitted optional parameter).
    Empty,
    /// A double-quoted string, escapes resolved.
    Str(Vec<u8>),
    /// An unquoted token (a number, in every command the simulator knows).
    Bare(Vec<u8>),
}

impl Param {
    /// The parameter as an integer, if it is a bare decimal number (optionally signed).
    pub fn int(&self) -> Option<i64> {
        match self {
            Param::Bare(b) => {
                let s = std::str::from_utf8(b).ok()?;
                if s.is_empty() || s.len() > 18 {
                    return None;
                }
                s.parse().ok()
            }
            _ => None,
        }
    }

    /// The parameter as a string, if it was quoted.
    pub fn string(&self) -> Option<String> {
        match self {
            Param::Str(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// A parsed command line (without its `\r\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The command name after `AT`: empty for bare `AT`, `E0`/`E1` for echo, `+GMR` style
    /// names with the leading `+`.
    pub name: String,
    /// Operation and parameters.
    pub op: Op,
}

/// Why a line could not be parsed; carries the `ERR CODE` the firmware reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// The line does not start with `AT` (any case): `0x01030000`.
    NoAt,
    /// A quoted string is not closed, or a quote appears inside a bare token: `0x01080000`.
    Malformed,
}

impl LineError {
    /// The `ERR CODE` value (`esp-at.md` §4.5).
    pub fn code(self) -> u32 {
        match self {
            LineError::NoAt => crate::firmware::err_code::NO_AT,
            LineError::Malformed => crate::firmware::err_code::PARA_PARSE,
        }
    }
}

/// Parses one line. The `AT` prefix is case-insensitive (the firmware accepts `at`, `At`,
/// `aT`); command names are matched case-sensitively by the caller.
pub fn parse_line(line: &[u8]) -> Result<Line, LineError> {
    if line.len() < 2 || !line[..2].eq_ignore_ascii_case(b"AT") {
        return Err(LineError::NoAt);
    }
    let rest = &line[2..];
    let name_end = rest
        .iter()
        .position(|&b| b == b'=' || b == b'?')
        .unwrap_or(rest.len());
    let name = String::from_utf8_lossy(&rest[..name_end]).into_owned();
    let tail = &rest[name_end..];
    let op = match tail {
        [] => Op::Exec,
        [b'?'] => Op::Query,
        [b'=', b'?'] => Op::Test,
        [b'=', params @ ..] => Op::Set(parse_params(params)?),
        _ => return Err(LineError::Malformed),
    };
    Ok(Line { name, op })
}

fn parse_params(mut bytes: &[u8]) -> Result<Vec<Param>, LineError> {
    let mut params = Vec::new();
    loop {
        let (param, rest) = if bytes.first() == Some(&b'"') {
            let mut value = Vec::new();
            let mut i = 1;
            loop {
                match bytes.get(i) {
                    None => return Err(LineError::Malformed),
                    // `\\`, `\,`, `\"` and `\<any>`: the backslash is dropped.
                    Some(b'\\') => {
                        match bytes.get(i + 1) {
                            Some(&b) => value.push(b),
                            None => return Err(LineError::Malformed),
                        }
                        i += 2;
                    }
                    Some(b'"') => break,
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
            let rest = &bytes[i + 1..];
            if !(rest.is_empty() || rest[0] == b',') {
                return Err(LineError::Malformed);
            }
            (Param::Str(value), rest)
        } else {
            let end = bytes.iter().position(|&b| b == b',').unwrap_or(bytes.len());
            let token = &bytes[..end];
            if token.contains(&b'"') {
                return Err(LineError::Malformed);
            }
            let param = if token.is_empty() {
                Param::Empty
            } else {
                Param::Bare(token.to_vec())
            };
            (param, &bytes[end..])
        };
        params.push(param);
        match rest.split_first() {
            None => return Ok(params),
            Some((_, after_comma)) => bytes = after_comma,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_operations() {
        assert_eq!(parse_line(b"AT").unwrap().name, "");
        assert_eq!(parse_line(b"at+GMR").unwrap().op, Op::Exec);
        assert_eq!(parse_line(b"AT+CIPMUX?").unwrap().op, Op::Query);
        assert_eq!(parse_line(b"AT+CIPMUX=?").unwrap().op, Op::Test);
        assert_eq!(parse_line(b"ATE0").unwrap().name, "E0");
        assert_eq!(parse_line(b"XT"), Err(LineError::NoAt));
        assert_eq!(parse_line(b"AT+X?1"), Err(LineError::Malformed));
    }

    #[test]
    fn parameters_with_escapes_and_gaps() {
        let line = parse_line(br#"AT+CIPSTART="SSL","a\"b\,c\\d",8443,,"#).unwrap();
        assert_eq!(
            line.op,
            Op::Set(vec![
                Param::Str(b"SSL".to_vec()),
                Param::Str(br#"a"b,c\d"#.to_vec()),
                Param::Bare(b"8443".to_vec()),
                Param::Empty,
                Param::Empty,
            ])
        );
        assert_eq!(parse_line(br#"AT+X="open"#), Err(LineError::Malformed));
        assert_eq!(parse_line(br#"AT+X="a"b"#), Err(LineError::Malformed));
        assert_eq!(parse_line(br#"AT+X=1"2"#), Err(LineError::Malformed));
        assert_eq!(Param::Bare(b"-11".to_vec()).int(), Some(-11));
        assert_eq!(Param::Bare(b"1x".to_vec()).int(), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_line(&bytes);
            let mut with_at = b"AT+X=".to_vec();
            with_at.extend_from_slice(&bytes);
            let _ = parse_line(&with_at);
        }
    }
}
