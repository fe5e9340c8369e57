//! What a secret's name, value and metadata may be.
//!
//! Names follow the SDKs (`Secret.fill` refuses the rest before any call): non-empty,
//! no `{`, `}` or control characters (C0, DEL, C1), since a name is interpolated into
//! the placeholder `${e2b.secrets.<name>}`. As E2B, names are lower-cased before they are
//! stored and looked up, and `sec_` starts ids, never names. Metadata has E2B's limits.
//! A value is set as an HTTP header value by the egress proxy, so it may not hold control
//! characters (a CR or LF would inject headers).

use std::collections::BTreeMap;

/// What starts every placeholder; the name runs to the next `}`.
pub const PLACEHOLDER_PREFIX: &str = "${e2b.secrets.";
/// Longest name, in bytes.
pub const MAX_NAME: usize = 128;
/// Longest value, in bytes (it goes into a header).
pub const MAX_VALUE: usize = 8 * 1024;
/// The `sec_` prefix marks ids.
pub const ID_PREFIX: &str = "sec_";
const MAX_METADATA_ENTRIES: usize = 32;
const MAX_METADATA_KEY: usize = 128;
const MAX_METADATA_VALUE: usize = 1024;
const MAX_METADATA_TOTAL: usize = 8192;

fn forbidden(c: char) -> bool {
    c == '{' || c == '}' || c.is_control()
}

/// The stored form of `name` (lower case), or why it is not one.
pub fn normalize_name(name: &str) -> Result<String, String> {
    let lower = name.to_lowercase();
    if lower.is_empty() || lower.len() > MAX_NAME {
        return Err(format!("secret name {name:?}: use 1 to {MAX_NAME} bytes"));
    }
    if lower.chars().any(forbidden) {
        return Err(format!(
            "secret name {name:?} cannot contain '{{', '}}' or control characters (it is interpolated into the '${{e2b.secrets.<name>}}' placeholder)"
        ));
    }
    if lower.starts_with(ID_PREFIX) {
        return Err(format!("secret name {name:?}: the prefix {ID_PREFIX:?} is reserved for secret ids"));
    }
    Ok(lower)
}

/// A value the proxy can send as a header value.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_VALUE {
        return Err(format!("a secret's value must be 1 to {MAX_VALUE} bytes"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(
            "a secret's value cannot contain control characters such as CR or LF (it is sent as an HTTP header value)"
                .into(),
        );
    }
    Ok(())
}

/// E2B's limits on a secret's metadata.
pub fn check_metadata(m: &BTreeMap<String, String>) -> Result<(), String> {
    if m.len() > MAX_METADATA_ENTRIES {
        return Err(format!("secret metadata has {} entries; at most {MAX_METADATA_ENTRIES}", m.len()));
    }
    let mut total = 0;
    for (k, v) in m {
        if k.is_empty() || k.len() > MAX_METADATA_KEY {
            return Err(format!("secret metadata key {k:?}: use 1 to {MAX_METADATA_KEY} bytes"));
        }
        if v.len() > MAX_METADATA_VALUE {
            return Err(format!("secret metadata value of {k:?} is longer than {MAX_METADATA_VALUE} bytes"));
        }
        total += k.len() + v.len();
    }
    if total > MAX_METADATA_TOTAL {
        return Err(format!("secret metadata is {total} bytes; at most {MAX_METADATA_TOTAL}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_the_sdks_and_e2b_have_them() {
        assert_eq!(normalize_name("OpenAI-API-Key").unwrap(), "openai-api-key");
        assert_eq!(normalize_name("with space.and/dot").unwrap(), "with space.and/dot");
        // The SDKs' own invalid names, the reserved prefix, and lengths.
        for bad in ["", "{name", "name}", "name\n", "name\0", "a\u{7f}", "a\u{85}", "sec_x", "SEC_x"] {
            assert!(normalize_name(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_name(&"a".repeat(MAX_NAME)).is_ok());
        assert!(normalize_name(&"a".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn values_fit_in_a_header() {
        assert!(check_value("sk-abc\tdef").is_ok());
        for bad in ["", "a\r\nX-Injected: 1", "a\nb", "a\0"] {
            assert!(check_value(bad).is_err(), "{bad:?}");
        }
        assert!(check_value(&"x".repeat(MAX_VALUE + 1)).is_err());
    }

    #[test]
    fn metadata_limits() {
        let m = |n: usize, v: usize| (0..n).map(|i| (format!("k{i}"), "v".repeat(v))).collect::<BTreeMap<_, _>>();
        assert!(check_metadata(&m(32, 10)).is_ok());
        assert!(check_metadata(&m(33, 1)).is_err());
        assert!(check_metadata(&m(1, 1025)).is_err());
        assert!(check_metadata(&m(9, 1000)).is_err(), "over 8192 bytes in all");
        assert!(check_metadata(&BTreeMap::from([(String::new(), "v".into())])).is_err());
    }
}
