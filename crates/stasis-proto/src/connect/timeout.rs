//! The `Connect-Timeout-Ms` request header: the client's deadline for the whole call.
//! For `process.Process/Start` it bounds the process's life, so a wrong parse either
//! kills commands early or lets them outlive their caller.

use std::time::Duration;

use super::error::ConnectError;

/// Parses a header value: 1 to 10 ASCII digits, milliseconds (per the Connect spec).
/// Signs, spaces, units and longer values are `invalid_argument`.
pub fn parse_timeout(value: &[u8]) -> Result<Duration, ConnectError> {
    let valid = (1..=10).contains(&value.len()) && value.iter().all(u8::is_ascii_digit);
    if !valid {
        return Err(ConnectError::invalid_argument(format!(
            "protocol error: invalid Connect-Timeout-Ms {:?}: expected 1 to 10 digits",
            String::from_utf8_lossy(&value[..value.len().min(32)])
        )));
    }
    // At most 10 digits, so this fits a u64 with room to spare.
    let ms = value.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Ok(Duration::from_millis(ms))
}

/// Reads the timeout from request headers: `Ok(None)` when absent.
pub fn timeout_from_headers(headers: &http::HeaderMap) -> Result<Option<Duration>, ConnectError> {
    headers.get(super::TIMEOUT_HEADER).map(|v| parse_timeout(v.as_bytes())).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::Code;

    #[test]
    fn parses_digits_as_milliseconds() {
        assert_eq!(parse_timeout(b"60000").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_timeout(b"0").unwrap(), Duration::ZERO);
        assert_eq!(parse_timeout(b"0007").unwrap(), Duration::from_millis(7));
        assert_eq!(parse_timeout(b"9999999999").unwrap(), Duration::from_millis(9_999_999_999));
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [&b""[..], b"12345678901", b"-1", b"+5", b" 5", b"5 ", b"1.5", b"10s", b"\xff"] {
            let err = parse_timeout(bad).unwrap_err();
            assert_eq!(err.code, Code::InvalidArgument, "{bad:?}");
            assert!(err.message.contains("Connect-Timeout-Ms"));
        }
    }

    #[test]
    fn reads_the_header() {
        let mut h = http::HeaderMap::new();
        assert_eq!(timeout_from_headers(&h), Ok(None));
        h.insert("Connect-Timeout-Ms", http::HeaderValue::from_static("1500"));
        assert_eq!(timeout_from_headers(&h), Ok(Some(Duration::from_millis(1500))));
        h.insert("connect-timeout-ms", http::HeaderValue::from_static("soon"));
        assert!(timeout_from_headers(&h).is_err());
    }
}
