//! A sandbox's per-domain network rules (E2B's `network.rules`): which outbound HTTPS
//! requests get which headers, with `${e2b.secrets.<name>}` placeholders the egress proxy
//! replaces with the secret's current value.
//!
//! Wire and stored form: `{"api.example.com": [{"transform": {"headers": {"Authorization":
//! "Bearer ${e2b.secrets.openai}"}}}], "*.example.org": [...]}`. Keys are DNS names or one
//! leading wildcard (`*.suffix`: subdomains at any depth, not the apex; a bare `*` is
//! refused), lower-cased on write. The exact name wins, else the longest wildcard suffix;
//! the rules of one key are applied in order (a later one's header replaces an earlier
//! one's), and the rules of different keys are never merged. This module parses and
//! checks; whether a named secret exists is the lifecycle's to check (it has the store).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::names::{normalize_name, PLACEHOLDER_PREFIX};

/// Most domains one sandbox may have rules for, and headers per rule.
const MAX_DOMAINS: usize = 64;
const MAX_HEADERS: usize = 32;
const MAX_HEADER_VALUE: usize = 8 * 1024;

/// Headers that frame or route the request: a rule may not set them.
const RESERVED: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transform {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
}

/// Domain pattern → its rules, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NetworkRules(pub BTreeMap<String, Vec<Rule>>);

impl NetworkRules {
    /// `network.rules` as sent: `null` or absent is none; anything else is checked whole.
    pub fn parse(v: Option<&serde_json::Value>) -> Result<Self, String> {
        let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(Self::default()) };
        let raw: BTreeMap<String, Vec<Rule>> = serde_json::from_value(v.clone()).map_err(|e| {
            format!("network.rules must map domains to lists of {{\"transform\": {{\"headers\": {{...}}}}}}: {e}")
        })?;
        if raw.len() > MAX_DOMAINS {
            return Err(format!("network.rules names {} domains; at most {MAX_DOMAINS}", raw.len()));
        }
        let mut out = BTreeMap::new();
        for (key, rules) in raw {
            let domain = normalize_pattern(&key)?;
            for rule in &rules {
                let headers = rule.transform.as_ref().map(|t| &t.headers);
                if headers.is_some_and(|h| h.len() > MAX_HEADERS) {
                    return Err(format!("network.rules[{key:?}]: at most {MAX_HEADERS} headers per rule"));
                }
                for (name, value) in headers.into_iter().flatten() {
                    check_header(&key, name, value)?;
                }
            }
            if out.insert(domain.clone(), rules).is_some() {
                return Err(format!("network.rules names {domain:?} twice (keys are compared lower-cased)"));
            }
        }
        Ok(Self(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secrets the placeholders name, lower-cased, each once.
    pub fn secret_names(&self) -> Vec<String> {
        secret_names(self.0.values().flatten())
    }

    /// The rules for a request to `host`: the exact name's, else the longest matching
    /// wildcard's.
    pub fn for_host(&self, host: &str) -> Option<&[Rule]> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(r) = self.0.get(&host) {
            return Some(r);
        }
        let mut best: Option<(&str, &Vec<Rule>)> = None;
        for (pattern, rules) in &self.0 {
            if let Some(suffix) = pattern.strip_prefix("*.") {
                let matches = host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.';
                if matches && best.is_none_or(|(b, _)| suffix.len() > b.len()) {
                    best = Some((suffix, rules));
                }
            }
        }
        best.map(|(_, r)| r.as_slice())
    }

    /// The JSON stored in the sandbox's row and shown by `getInfo`.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The secrets the placeholders of `rules` name, lower-cased, each once.
pub fn secret_names<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> Vec<String> {
    let mut names: Vec<String> = rules
        .into_iter()
        .filter_map(|r| r.transform.as_ref())
        .flat_map(|t| t.headers.values())
        .flat_map(|v| placeholders(v).unwrap_or_default())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The headers `rules` set, in order (a later rule's header replaces an earlier one's),
/// with every placeholder replaced by `value(name)`.
pub fn headers_for(rules: &[Rule], mut value: impl FnMut(&str) -> Option<String>) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for (name, template) in rules.iter().filter_map(|r| r.transform.as_ref()).flat_map(|t| &t.headers) {
        let resolved = fill(template, &mut value);
        out.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        out.push((name.clone(), resolved));
    }
    out
}

/// `template` with each placeholder replaced; `None` if a named secret has no value.
fn fill(template: &str, value: &mut impl FnMut(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find(PLACEHOLDER_PREFIX) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PLACEHOLDER_PREFIX.len()..];
        let end = after.find('}')?;
        out.push_str(&value(&after[..end].to_lowercase())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The secret names `value`'s placeholders name, or why it is malformed.
fn placeholders(value: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        let after = &rest[at..];
        let Some(body) = after.strip_prefix(PLACEHOLDER_PREFIX) else {
            if after.starts_with("${e2b.") {
                return Err(format!(
                    "{:?}: only ${{e2b.secrets.<name>}} placeholders are supported (not workload identity tokens)",
                    after.split('}').next().unwrap_or(after)
                ));
            }
            rest = &after[2..];
            continue;
        };
        let end = body.find('}').ok_or_else(|| format!("an unterminated placeholder in {value:?}"))?;
        names.push(normalize_name(&body[..end])?);
        rest = &body[end + 1..];
    }
    Ok(names)
}

fn check_header(key: &str, name: &str, value: &str) -> Result<(), String> {
    let at = || format!("network.rules[{key:?}] header {name:?}");
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{}: not a valid header name", at()));
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("{}: a rule may not set this header (it frames or routes the request)", at()));
    }
    if value.len() > MAX_HEADER_VALUE || value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "{}: the value must be at most {MAX_HEADER_VALUE} bytes, without control characters",
            at()
        ));
    }
    placeholders(value).map_err(|e| format!("{}: {e}", at()))?;
    Ok(())
}

/// A rule key lower-cased: a DNS name or `*.` and one.
fn normalize_pattern(key: &str) -> Result<String, String> {
    let lower = key.trim_end_matches('.').to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let is_ip = name.parse::<std::net::IpAddr>().is_ok();
    if name.is_empty() || name.len() > 253 || is_ip || !name.split('.').all(label_ok) {
        return Err(format!(
            "network.rules key {key:?} is not a domain name or a wildcard \"*.domain\" (rules match the TLS server name; a bare \"*\" and IP addresses are not allowed)"
        ));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(v: serde_json::Value) -> Result<NetworkRules, String> {
        NetworkRules::parse(Some(&v))
    }

    #[test]
    fn parses_normalises_and_names_the_secrets() {
        let r = rules(json!({
            "API.Example.com": [{"transform": {"headers": {"Authorization": "Bearer ${e2b.secrets.OpenAI}"}}}],
            "*.example.org": [{"transform": {"headers": {"X-A": "${e2b.secrets.a}-${e2b.secrets.b}", "X-Plain": "1"}}}, {}],
        }))
        .unwrap();
        assert_eq!(r.0.keys().collect::<Vec<_>>(), ["*.example.org", "api.example.com"]);
        assert_eq!(r.secret_names(), ["a", "b", "openai"]);
        assert_eq!(
            r.to_value()["api.example.com"][0]["transform"]["headers"]["Authorization"],
            "Bearer ${e2b.secrets.OpenAI}"
        );
        assert_eq!(NetworkRules::parse(None).unwrap(), NetworkRules::default());
        assert!(NetworkRules::parse(Some(&json!(null))).unwrap().is_empty());
    }

    #[test]
    fn refuses_what_the_proxy_could_not_do() {
        for bad in [
            json!({"*": [{}]}),
            json!({"1.2.3.4": [{}]}),
            json!({"a..b": [{}]}),
            json!({"-a.com": [{}]}),
            json!({"a.com": {}}),
            json!({"a.com": [{"transform": {"headers": {"Host": "x"}}}]}),
            json!({"a.com": [{"transform": {"headers": {"Bad Name": "x"}}}]}),
            json!({"a.com": [{"transform": {"headers": {"X": "a\r\nB: c"}}}]}),
            json!({"a.com": [{"transform": {"headers": {"X": "${e2b.secrets.open"}}}]}),
            json!({"a.com": [{"transform": {"headers": {"X": "${e2b.secrets.}"}}}]}),
            json!({"a.com": [{"transform": {"headers": {"X": "${e2b.identity.tokens.aws}"}}}]}),
            json!({"A.com": [{}], "a.com": [{}]}),
            json!(["a.com"]),
        ] {
            assert!(rules(bad.clone()).is_err(), "{bad}");
        }
        // `${` that is no e2b placeholder is literal text.
        assert!(rules(json!({"a.com": [{"transform": {"headers": {"X": "${HOME}"}}}]}))
            .unwrap()
            .secret_names()
            .is_empty());
    }

    #[test]
    fn the_exact_name_wins_then_the_longest_wildcard() {
        let r = rules(json!({
            "api.example.com": [{"transform": {"headers": {"X": "exact"}}}],
            "*.example.com": [{"transform": {"headers": {"X": "short"}}}],
            "*.eu.example.com": [{"transform": {"headers": {"X": "long"}}}],
        }))
        .unwrap();
        let x = |h: &str| r.for_host(h).map(|rs| headers_for(rs, |_| None)[0].1.clone().unwrap());
        assert_eq!(x("API.example.com.").as_deref(), Some("exact"));
        assert_eq!(x("a.b.example.com").as_deref(), Some("short"));
        assert_eq!(x("x.eu.example.com").as_deref(), Some("long"));
        assert_eq!(x("example.com"), None, "a wildcard does not match the apex");
        assert_eq!(x("badexample.com"), None);
    }

    #[test]
    fn headers_are_filled_in_order_and_unresolvable_ones_say_so() {
        let r = rules(json!({"a.com": [
            {"transform": {"headers": {"Authorization": "Bearer ${e2b.secrets.k}", "X-Gone": "${e2b.secrets.gone}"}}},
            {"transform": {"headers": {"authorization": "Token ${e2b.secrets.K}!"}}},
        ]}))
        .unwrap();
        let got = headers_for(r.for_host("a.com").unwrap(), |n| (n == "k").then(|| "v1".to_string()));
        assert_eq!(got, [("X-Gone".to_string(), None), ("authorization".to_string(), Some("Token v1!".to_string()))]);
    }
}
