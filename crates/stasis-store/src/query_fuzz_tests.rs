//! Issue 9: list query parsing is total. Any query string a client sends (hostile
//! escapes, invalid UTF-8 behind `%XX`, huge numbers, unicode, path-like values) parses
//! or yields a `QueryError` (a 400), never a panic, and what parses is within bounds.

use proptest::prelude::*;

use crate::query::{parse_metadata_filter, MAX_LIMIT};
use crate::{ListQuery, SnapshotQuery};

/// A value built from the pieces that break parsers: escapes (valid, truncated,
/// non-hex, encoding invalid UTF-8), separators, unicode, huge digit runs, traversal.
fn hostile_value() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9]{0,6}",
        Just("%".to_string()),
        Just("%2".to_string()),
        Just("%zz".to_string()),
        Just("%ff%fe".to_string()),
        Just("%C3%28".to_string()),
        Just("%ED%A0%80".to_string()),
        Just("%00".to_string()),
        Just("%25".to_string()),
        Just("%26%3D".to_string()),
        Just("+".to_string()),
        Just("=".to_string()),
        Just("&".to_string()),
        Just(",".to_string()),
        Just("..%2F..%2Fetc%2Fshadow".to_string()),
        Just("é🦀\u{202e}\u{0}".to_string()),
        Just("99999999999999999999999999".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("9223372036854775807".to_string()),
        Just("2024-02-30T25:61:61Z".to_string()),
        Just("+275760-09-13T00:00:00Z".to_string()),
        "[0-9]{10,40}",
        "\\PC{0,4}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "state",
            "metadata",
            "template",
            "startedAfter",
            "order",
            "limit",
            "nextToken",
            "sandboxID",
            "name",
            "st%61te",
            "limit%",
            "",
            "?limit",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z%]{0,8}",
    ]
}

fn query_string() -> impl Strategy<Value = String> {
    prop::collection::vec((param_name(), proptest::option::of(hostile_value())), 0..8).prop_map(|ps| {
        ps.into_iter()
            .map(|(n, v)| match v {
                Some(v) => format!("{n}={v}"),
                None => n,
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn list_query_is_total_and_bounded(raw in prop_oneof![query_string(), ".{0,200}", "\\?[a-z=&%0-9]{0,100}"]) {
        match ListQuery::from_query_string(&raw) {
            Ok(q) => {
                prop_assert!((1..=MAX_LIMIT).contains(&q.limit), "limit {} out of bounds for {:?}", q.limit, raw);
                prop_assert!(q.states.len() <= 16);
                // A parsed next token decodes (the store will not choke on it later).
                if let Some(t) = &q.next_token {
                    prop_assert!(crate::Cursor::decode(t).is_ok());
                }
                let _ = q.effective_states();
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn snapshot_query_is_total_and_bounded(raw in prop_oneof![query_string(), ".{0,200}"]) {
        match SnapshotQuery::from_query_string(&raw) {
            Ok(q) => {
                prop_assert!((1..=MAX_LIMIT).contains(&q.limit));
                if let Some(t) = &q.next_token {
                    prop_assert!(crate::Cursor::decode(t).is_ok());
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn metadata_filter_is_total(param in prop_oneof![hostile_value(), ".{0,120}"]) {
        if let Ok(pairs) = parse_metadata_filter(&param) {
            // Every key and value is valid UTF-8 by construction; nothing panics on use.
            for (k, v) in &pairs {
                prop_assert!(k.len() + v.len() <= param.len() * 3 + 3);
            }
        }
    }

    #[test]
    fn next_tokens_are_total(token in prop_oneof![".{0,80}", "[A-Za-z0-9_=-]{0,80}"]) {
        let _ = crate::Cursor::decode(&token);
        let _ = ListQuery::from_query_string(&format!("nextToken={token}"));
    }
}

#[test]
fn hostile_fixed_inputs() {
    let long = "a".repeat(1 << 20);
    let many = "state=running&".repeat(10_000);
    let nested_escape = "%2525".repeat(1000);
    for raw in [
        "limit=18446744073709551616",
        "limit=0",
        "limit=-1",
        "limit=%00",
        "startedAfter=-9223372036854775808",
        "startedAfter=9223372036854775807",
        "startedAfter=%2B275760-09-13T00%3A00%3A00Z",
        "metadata=%",
        "metadata=%ZZ",
        "metadata=a%3D%ff",
        "metadata=%25ff",
        "state=running,paused,,,,%2C",
        "nextToken=%%%",
        "nextToken=OTk5OTk5OTk5OTk5OTk5OTk5OTk5Ojo",
        "template=..%2F..%2Fetc",
        &many,
        &long,
        &nested_escape,
    ] {
        let _ = ListQuery::from_query_string(raw);
        let _ = SnapshotQuery::from_query_string(raw);
        let _ = parse_metadata_filter(raw);
    }
    assert!(ListQuery::from_query_string("limit=18446744073709551616").is_ok_and(|q| q.limit == MAX_LIMIT));
    assert!(ListQuery::from_query_string("startedAfter=9223372036854775807").is_err(), "overflowing seconds are a 400");
    assert_eq!(
        ListQuery::from_query_string(&many).unwrap().states.len(),
        ListQuery::from_query_string("state=running").unwrap().states.len()
    );
}
