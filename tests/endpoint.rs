//! The local AWS IoT endpoint: shadow semantics case by case from `aws-iot-shadow.md`
//! (exact bodies), then the same API over real TLS (rustls and curl), certificates and
//! policies, the 443/ALPN listener, keep-alive and concurrency, the account commands, and
//! durability across `kill -9`.

use esp_aws::sim::endpoint::shadow::{ShadowKey, ShadowStore};

const T0: u64 = 1_700_000_000;

fn update(
    store: &mut ShadowStore,
    key: &ShadowKey,
    body: &str,
    now: u64,
) -> Result<String, (u16, String)> {
    store
        .update(key, body.as_bytes(), now)
        .map(|o| o.body)
        .map_err(|e| (e.kind.status(), e.body("TRACE")))
}

fn classic() -> ShadowKey {
    ShadowKey::classic("lnu_001")
}

fn err(status: u16, message: &str) -> Result<String, (u16, String)> {
    Err((
        status,
        format!("{{\"code\":{status},\"message\":\"{message}\",\"traceId\":\"TRACE\"}}"),
    ))
}

mod semantics {
    use super::*;

    #[test]
    fn first_update_and_get_exact_bodies() {
        let mut s = ShadowStore::new();
        let k = classic();
        assert_eq!(
            update(&mut s, &k, r#"{"state":{"desired":{"prop1":"12"}}}"#, T0),
            Ok(format!(
                r#"{{"state":{{"desired":{{"prop1":"12"}}}},"metadata":{{"desired":{{"prop1":{{"timestamp":{T0}}}}}}},"version":1,"timestamp":{T0}}}"#
            ))
        );
        // GET's top-level timestamp is the response time; the leaf keeps its write time.
        assert_eq!(
            s.get(&k, T0 + 60),
            Ok(format!(
                r#"{{"state":{{"desired":{{"prop1":"12"}},"delta":{{"prop1":"12"}}}},"metadata":{{"desired":{{"prop1":{{"timestamp":{T0}}}}}}},"version":1,"timestamp":{}}}"#,
                T0 + 60
            ))
        );
    }

    #[test]
    fn get_missing_classic_and_named_404_messages() {
        let s = ShadowStore::new();
        let e = s.get(&classic(), T0).unwrap_err();
        assert_eq!(
            (e.kind.status(), e.kind.error_type(), e.body("id")),
            (
                404,
                "ResourceNotFoundException:",
                r#"{"code":404,"message":"No shadow exists with name: 'lnu_001'","traceId":"id"}"#
                    .to_string()
            )
        );
        let e = s
            .get(&ShadowKey::named("lnu_001", "simShadow1"), T0)
            .unwrap_err();
        assert_eq!(e.message, "No shadow exists with name: 'simShadow1'");
    }

    #[test]
    fn nested_delta_keeps_path_and_ignores_reported_only_keys() {
        let mut s = ShadowStore::new();
        let k = classic();
        update(&mut s, &k, r#"{"state":{"desired":{"a":{"b":{"c":"d2"}}},"reported":{"a":{"b":{"c":"d","e":"f"}},"only":1}}}"#, T0).unwrap();
        let body = s.get(&k, T0).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["state"]["delta"].to_string(), r#"{"a":{"b":{"c":"d2"}}}"#);
        // When reported catches up, the delta disappears but desired stays.
        update(
            &mut s,
            &k,
            r#"{"state":{"reported":{"a":{"b":{"c":"d2"}}}}}"#,
            T0 + 1,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&s.get(&k, T0 + 1).unwrap()).unwrap();
        assert!(v["state"].get("delta").is_none(), "{v}");
        assert_eq!(
            v["state"]["desired"].to_string(),
            r#"{"a":{"b":{"c":"d2"}}}"#
        );
    }

    #[test]
    fn arrays_are_replaced_whole_and_compared_whole() {
        let mut s = ShadowStore::new();
        let k = classic();
        update(
            &mut s,
            &k,
            r#"{"state":{"desired":{"list":["value_1","value_2"]}}}"#,
            T0,
        )
        .unwrap();
        update(&mut s, &k, r#"{"state":{"desired":{"list":["value_1"]},"reported":{"list":["value_1","value_2"]}}}"#, T0 + 5).unwrap();
        assert_eq!(
            s.get(&k, T0 + 9),
            Ok(format!(
                r#"{{"state":{{"desired":{{"list":["value_1"]}},"reported":{{"list":["value_1","value_2"]}},"delta":{{"list":["value_1"]}}}},"metadata":{{"desired":{{"list":[{{"timestamp":{t}}}]}},"reported":{{"list":[{{"timestamp":{t}}},{{"timestamp":{t}}}]}}}},"version":2,"timestamp":{}}}"#,
                T0 + 9,
                t = T0 + 5
            ))
        );
    }

    #[test]
    fn null_deletes_leaf_and_last_key_removes_section() {
        let mut s = ShadowStore::new();
        let k = classic();
        update(
            &mut s,
            &k,
            r#"{"state":{"desired":{"a":1,"b":2},"reported":{"r":1}}}"#,
            T0,
        )
        .unwrap();
        assert_eq!(
            update(&mut s, &k, r#"{"state":{"desired":{"a":null}}}"#, T0 + 1),
            Ok(format!(
                r#"{{"state":{{"desired":{{"a":null}}}},"metadata":{{"desired":{{"a":{{"timestamp":{t}}}}}}},"version":2,"timestamp":{t}}}"#,
                t = T0 + 1
            ))
        );
        update(&mut s, &k, r#"{"state":{"desired":{"b":null}}}"#, T0 + 2).unwrap();
        assert_eq!(
            s.get(&k, T0 + 3),
            Ok(format!(
                r#"{{"state":{{"reported":{{"r":1}}}},"metadata":{{"reported":{{"r":{{"timestamp":{T0}}}}}}},"version":3,"timestamp":{}}}"#,
                T0 + 3
            ))
        );
    }

    #[test]
    fn desired_null_removes_the_section() {
        let mut s = ShadowStore::new();
        let k = classic();
        update(
            &mut s,
            &k,
            r#"{"state":{"desired":{"a":1},"reported":{"a":2}}}"#,
            T0,
        )
        .unwrap();
        assert_eq!(
            update(&mut s, &k, r#"{"state":{"desired":null}}"#, T0 + 1),
            Ok(format!(
                r#"{{"state":{{"desired":null}},"metadata":{{"desired":{{"timestamp":{t}}}}},"version":2,"timestamp":{t}}}"#,
                t = T0 + 1
            ))
        );
        assert_eq!(
            s.get(&k, T0 + 2),
            Ok(format!(
                r#"{{"state":{{"reported":{{"a":2}}}},"metadata":{{"reported":{{"a":{{"timestamp":{T0}}}}}}},"version":2,"timestamp":{}}}"#,
                T0 + 2
            ))
        );
    }

    #[test]
    fn state_null_clears_everything_but_keeps_the_shadow() {
        let mut s = ShadowStore::new();
        let k = classic();
        // null, update, null ⇒ versions 1, 2, 3 (verified against AWS).
        assert_eq!(
            update(&mut s, &k, r#"{"state":null}"#, 1756452769),
            Ok(r#"{"state":null,"metadata":{"timestamp":1756452769},"version":1,"timestamp":1756452769}"#.into())
        );
        update(&mut s, &k, r#"{"state":{"reported":{"x":1}}}"#, 1756452770).unwrap();
        assert_eq!(
            update(&mut s, &k, r#"{"state":null}"#, 1756452771),
            Ok(r#"{"state":null,"metadata":{"timestamp":1756452771},"version":3,"timestamp":1756452771}"#.into())
        );
        assert_eq!(
            s.get(&k, 1756452772),
            Ok(r#"{"state":{},"metadata":{},"version":3,"timestamp":1756452772}"#.into())
        );
    }

    #[test]
    fn empty_state_creates_and_changes_nothing() {
        let mut s = ShadowStore::new();
        let k = classic();
        assert_eq!(
            update(&mut s, &k, r#"{"state":{}}"#, T0),
            Ok(format!(
                r#"{{"state":{{}},"metadata":{{}},"version":1,"timestamp":{T0}}}"#
            ))
        );
        assert_eq!(
            s.get(&k, T0),
            Ok(format!(
                r#"{{"state":{{}},"metadata":{{}},"version":1,"timestamp":{T0}}}"#
            ))
        );
        update(&mut s, &k, r#"{"state":{"desired":{"a":1}}}"#, T0).unwrap();
        update(&mut s, &k, r#"{"state":{}}"#, T0 + 1).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s.get(&k, T0 + 1).unwrap()).unwrap();
        assert_eq!(v["state"]["desired"].to_string(), r#"{"a":1}"#);
        assert_eq!(v["version"], 3);
    }

    #[test]
    fn empty_section_is_echoed_but_not_stored() {
        let mut s = ShadowStore::new();
        let k = classic();
        assert_eq!(
            update(
                &mut s,
                &k,
                r#"{"state":{"desired":{"prop1":"13"},"reported":{}}}"#,
                T0
            ),
            Ok(format!(
                r#"{{"state":{{"desired":{{"prop1":"13"}},"reported":{{}}}},"metadata":{{"desired":{{"prop1":{{"timestamp":{T0}}}}},"reported":{{}}}},"version":1,"timestamp":{T0}}}"#
            ))
        );
        let v: serde_json::Value = serde_json::from_str(&s.get(&k, T0).unwrap()).unwrap();
        assert!(v["state"].get("reported").is_none(), "{v}");
    }

    #[test]
    fn empty_objects_as_values_and_type_changes() {
        let mut s = ShadowStore::new();
        let k = classic();
        update(
            &mut s,
            &k,
            r#"{"state":{"reported":{"a":1,"b":{"c":3}}}}"#,
            T0,
        )
        .unwrap();
        update(&mut s, &k, r#"{"state":{"reported":{"d":{}}}}"#, T0).unwrap();
        update(&mut s, &k, r#"{"state":{"reported":{"b":{"c":{}}}}}"#, T0).unwrap();
        update(&mut s, &k, r#"{"state":{"reported":{"a":{"d":3}}}}"#, T0).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s.get(&k, T0).unwrap()).unwrap();
        assert_eq!(
            v["state"]["reported"].to_string(),
            r#"{"a":{"d":3},"b":{"c":{}},"d":{}}"#
        );
        assert_eq!(
            v["metadata"]["reported"].to_string(),
            format!(r#"{{"a":{{"d":{{"timestamp":{T0}}}}},"b":{{"c":{{}}}},"d":{{}}}}"#)
        );
    }

    #[test]
    fn emptied_nested_object_stays_and_gives_no_delta() {
        let mut s = ShadowStore::new();
        let k = classic();
        update(
            &mut s,
            &k,
            r#"{"state":{"desired":{"rgb":{"r":1,"g":2}}}}"#,
            T0,
        )
        .unwrap();
        update(
            &mut s,
            &k,
            r#"{"state":{"desired":{"rgb":{"r":null,"g":null}}}}"#,
            T0,
        )
        .unwrap();
        assert_eq!(
            s.get(&k, T0),
            Ok(format!(
                r#"{{"state":{{"desired":{{"rgb":{{}}}}}},"metadata":{{"desired":{{"rgb":{{}}}}}},"version":2,"timestamp":{T0}}}"#
            ))
        );
    }

    #[test]
    fn reported_null_on_empty_shadow_gives_empty_state() {
        let mut s = ShadowStore::new();
        let k = classic();
        assert_eq!(
            update(&mut s, &k, r#"{"state":{"reported":{"online":null}}}"#, T0),
            Ok(format!(
                r#"{{"state":{{"reported":{{"online":null}}}},"metadata":{{"reported":{{"online":{{"timestamp":{T0}}}}}}},"version":1,"timestamp":{T0}}}"#
            ))
        );
        assert_eq!(
            s.get(&k, T0),
            Ok(format!(
                r#"{{"state":{{}},"metadata":{{}},"version":1,"timestamp":{T0}}}"#
            ))
        );
    }

    #[test]
    fn metadata_timestamps_are_per_leaf_and_survive_other_updates() {
        let mut s = ShadowStore::new();
        let k = classic();
        update(
            &mut s,
            &k,
            r#"{"state":{"reported":{"Color":"red","x":{"y":1}}}}"#,
            1719859716,
        )
        .unwrap();
        update(
            &mut s,
            &k,
            r#"{"state":{"desired":{"Color":"green"},"reported":{"x":{"z":2}}}}"#,
            1719859726,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&s.get(&k, 1719859730).unwrap()).unwrap();
        assert_eq!(
            v["metadata"].to_string(),
            r#"{"desired":{"Color":{"timestamp":1719859726}},"reported":{"Color":{"timestamp":1719859716},"x":{"y":{"timestamp":1719859716},"z":{"timestamp":1719859726}}}}"#
        );
    }

    #[test]
    fn numeric_equality_in_delta() {
        let mut s = ShadowStore::new();
        let k = classic();
        update(
            &mut s,
            &k,
            r#"{"state":{"desired":{"n":1,"m":2},"reported":{"n":1.0,"m":2.5}}}"#,
            T0,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&s.get(&k, T0).unwrap()).unwrap();
        assert_eq!(v["state"]["delta"].to_string(), r#"{"m":2}"#);
    }

    #[test]
    fn versions_delete_and_recreate_continue_numbering() {
        let mut s = ShadowStore::new();
        let k = classic();
        for _ in 0..3 {
            update(&mut s, &k, r#"{"state":{"reported":{"a":1}}}"#, T0).unwrap();
        }
        assert_eq!(
            s.delete(&k, T0 + 1).map(|o| o.body),
            Ok(format!(r#"{{"version":4,"timestamp":{}}}"#, T0 + 1))
        );
        assert_eq!(s.get(&k, T0).unwrap_err().kind.status(), 404);
        assert_eq!(
            s.delete(&k, T0).unwrap_err().message,
            "No shadow exists with name: 'lnu_001'"
        );
        let v: serde_json::Value = serde_json::from_str(
            &update(&mut s, &k, r#"{"state":{"reported":{"b":1}}}"#, T0).unwrap(),
        )
        .unwrap();
        assert_eq!(v["version"], 5);
        // The re-created shadow holds only what was written after the delete.
        let v: serde_json::Value = serde_json::from_str(&s.get(&k, T0).unwrap()).unwrap();
        assert_eq!(v["state"].to_string(), r#"{"reported":{"b":1}}"#);
    }

    #[test]
    fn optimistic_locking() {
        let mut s = ShadowStore::new();
        let k = classic();
        // A shadow that does not exist accepts only version 1 (the one the update creates).
        assert_eq!(
            update(
                &mut s,
                &k,
                r#"{"state":{"reported":{"a":1}},"version":2}"#,
                T0
            ),
            err(400, "Invalid version")
        );
        update(
            &mut s,
            &k,
            r#"{"state":{"reported":{"a":1}},"version":1}"#,
            T0,
        )
        .unwrap();
        assert_eq!(
            update(&mut s, &k, r#"{"state":{"reported":{"a":2}},"version":5,"clientToken":"426bfd96"}"#, T0),
            Err((409, r#"{"code":409,"message":"Version conflict","traceId":"TRACE","clientToken":"426bfd96"}"#.into()))
        );
        let ok = update(
            &mut s,
            &k,
            r#"{"state":{"reported":{"a":2}},"version":1}"#,
            T0,
        )
        .unwrap();
        assert!(ok.contains(r#""version":2"#), "{ok}");
        // Omitting the version bypasses the check.
        assert!(update(&mut s, &k, r#"{"state":{"reported":{"a":3}}}"#, T0).is_ok());
        assert_eq!(
            update(
                &mut s,
                &k,
                r#"{"state":{"reported":{"a":2}},"version":"3"}"#,
                T0
            ),
            err(400, "Invalid version")
        );
        assert_eq!(
            update(
                &mut s,
                &k,
                r#"{"state":{"reported":{"a":2}},"version":2.5}"#,
                T0
            ),
            err(400, "Invalid version")
        );
    }

    #[test]
    fn client_token_is_echoed_last_and_limited_to_64_bytes() {
        let mut s = ShadowStore::new();
        let k = classic();
        let t64 = "t".repeat(64);
        assert_eq!(
            update(
                &mut s,
                &k,
                &format!(r#"{{"clientToken":"{t64}","state":{{"reported":{{"a":1}}}}}}"#),
                T0
            ),
            Ok(format!(
                r#"{{"state":{{"reported":{{"a":1}}}},"metadata":{{"reported":{{"a":{{"timestamp":{T0}}}}}}},"version":1,"timestamp":{T0},"clientToken":"{t64}"}}"#
            ))
        );
        let t65 = "t".repeat(65);
        assert_eq!(
            update(
                &mut s,
                &k,
                &format!(r#"{{"clientToken":"{t65}","state":{{"reported":{{"a":1}}}}}}"#),
                T0
            ),
            err(400, "Invalid clientToken")
        );
        assert_eq!(
            update(&mut s, &k, r#"{"clientToken":5,"state":{}}"#, T0),
            err(400, "Invalid clientToken")
        );
        // Errors echo a valid token.
        assert_eq!(
            update(&mut s, &k, r#"{"clientToken":"abc"}"#, T0),
            Err((400, r#"{"code":400,"message":"Missing required node: state","traceId":"TRACE","clientToken":"abc"}"#.into()))
        );
    }

    #[test]
    fn every_400_message() {
        let mut s = ShadowStore::new();
        let k = classic();
        let cases: &[(&str, &str)] = &[
            ("", "Missing update payload"),
            ("{", "Invalid JSON"),
            ("[1]", "Invalid JSON"),
            (r#"{"desired":{}}"#, "Missing required node: state"),
            (r#"{"state":5}"#, "State node must be an object"),
            (r#"{"state":[]}"#, "State node must be an object"),
            (
                r#"{"state":{"desired":"x"}}"#,
                "Desired node must be an object",
            ),
            (
                r#"{"state":{"reported":[1]}}"#,
                "Reported node must be an object",
            ),
            (
                r#"{"state":{"other":{}}}"#,
                "State contains an invalid node",
            ),
            (r#"{"state":{"desired":{"a":[1,null]}}}"#, "Invalid JSON"),
            (
                r#"{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}"#,
                "JSON contains too many levels of nesting; maximum is 6",
            ),
            (
                r#"{"state":{"reported":{"a":{"b":{"c":{"d":{"e":{"f":[1]}}}}}}}}"#,
                "JSON contains too many levels of nesting; maximum is 6",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(
                update(&mut s, &k, body, T0),
                err(400, message),
                "body {body}"
            );
        }
        assert!(
            s.record(&k).is_none(),
            "no rejected request may create the shadow"
        );
        // Six levels of keys are fine, and so is an empty object on the seventh.
        assert!(update(
            &mut s,
            &k,
            r#"{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}}}"#,
            T0
        )
        .is_ok());
        assert!(update(
            &mut s,
            &k,
            r#"{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{}}}}}}}}}"#,
            T0
        )
        .is_ok());
        let e = s
            .update(&k, b"{\"state\":{\"desired\":{\"a\":\"\xff\"}}}", T0)
            .unwrap_err();
        assert_eq!(
            (e.kind.status(), e.kind.error_type(), e.message.as_str()),
            (
                415,
                "UnsupportedDocumentEncodingException:",
                "Unsupported documented encoding; supported encoding is UTF-8"
            )
        );
    }

    #[test]
    fn delta_in_request_is_dropped_and_metadata_ignored() {
        let mut s = ShadowStore::new();
        let k = classic();
        assert_eq!(
            update(
                &mut s,
                &k,
                r#"{"state":{"delta":{"x":1},"reported":{"a":1}},"metadata":{"junk":1}}"#,
                T0
            ),
            Ok(format!(
                r#"{{"state":{{"reported":{{"a":1}}}},"metadata":{{"reported":{{"a":{{"timestamp":{T0}}}}}}},"version":1,"timestamp":{T0}}}"#
            ))
        );
    }

    #[test]
    fn size_limit_counts_merged_desired_and_reported() {
        let mut s = ShadowStore::new();
        let k = classic();
        let big = "x".repeat(4000);
        update(
            &mut s,
            &k,
            &format!(r#"{{"state":{{"desired":{{"a":"{big}"}}}}}}"#),
            T0,
        )
        .unwrap();
        update(
            &mut s,
            &k,
            &format!(r#"{{"state":{{"reported":{{"a":"{big}"}}}}}}"#),
            T0,
        )
        .unwrap();
        // 2 × 4008 bytes stored; 200 more tips it over 8192.
        let more = "y".repeat(200);
        let e = s
            .update(
                &k,
                format!(r#"{{"state":{{"reported":{{"b":"{more}"}}}}}}"#).as_bytes(),
                T0,
            )
            .unwrap_err();
        assert_eq!(
            (e.kind.status(), e.kind.error_type(), e.body("T")),
            (
                413,
                "RequestEntityTooLargeException:",
                r#"{"code":413,"message":"The payload exceeds the maximum size allowed","traceId":"T"}"#.to_string()
            )
        );
        assert_eq!(
            s.record(&k).map(|r| r.version),
            Some(2),
            "a rejected update changes nothing"
        );
        // Metadata does not count: many small leaves fit although their metadata is large.
        let mut s = ShadowStore::new();
        let leaves: Vec<String> = (0..700).map(|i| format!(r#""k{i}":1"#)).collect();
        assert!(update(
            &mut s,
            &k,
            &format!(r#"{{"state":{{"reported":{{{}}}}}}}"#, leaves.join(",")),
            T0
        )
        .is_ok());
    }

    #[test]
    fn named_shadows_are_independent() {
        let mut s = ShadowStore::new();
        let classic = classic();
        let a = ShadowKey::named("lnu_001", "a");
        update(&mut s, &a, r#"{"state":{"reported":{"n":"a"}}}"#, T0).unwrap();
        update(&mut s, &a, r#"{"state":{"reported":{"n":"a2"}}}"#, T0).unwrap();
        let body = update(&mut s, &classic, r#"{"state":{"reported":{"n":"c"}}}"#, T0).unwrap();
        assert!(body.contains(r#""version":1"#), "own counter: {body}");
        assert!(s.get(&a, T0).unwrap().contains(r#""reported":{"n":"a2"}"#));
        assert!(s.get(&ShadowKey::named("other", "a"), T0).is_err());
        s.delete(&a, T0).unwrap();
        assert!(
            s.get(&classic, T0).is_ok(),
            "deleting a named shadow leaves the classic one"
        );
    }

    #[test]
    fn list_named_shadows_pages_in_name_order() {
        let mut s = ShadowStore::new();
        update(&mut s, &classic(), r#"{"state":{}}"#, T0).unwrap();
        for n in ["c", "a", "e", "b", "d"] {
            update(
                &mut s,
                &ShadowKey::named("lnu_001", n),
                r#"{"state":{}}"#,
                T0,
            )
            .unwrap();
        }
        update(
            &mut s,
            &ShadowKey::named("other", "z"),
            r#"{"state":{}}"#,
            T0,
        )
        .unwrap();
        s.delete(&ShadowKey::named("lnu_001", "d"), T0).unwrap();
        let page1 = s.list_named("lnu_001", Some("2"), None, T0).unwrap();
        assert_eq!(
            page1,
            format!(r#"{{"results":["a","b"],"nextToken":"62","timestamp":{T0}}}"#)
        );
        let page2 = s.list_named("lnu_001", Some("2"), Some("62"), T0).unwrap();
        assert_eq!(
            page2,
            format!(r#"{{"results":["c","e"],"timestamp":{T0}}}"#)
        );
        assert_eq!(
            s.list_named("lnu_001", None, None, T0),
            Ok(format!(
                r#"{{"results":["a","b","c","e"],"timestamp":{T0}}}"#
            ))
        );
        assert_eq!(
            s.list_named("nobody", None, None, T0),
            Ok(format!(r#"{{"results":[],"timestamp":{T0}}}"#))
        );
        for bad in ["0", "101", "x"] {
            assert_eq!(
                s.list_named("lnu_001", Some(bad), None, T0)
                    .unwrap_err()
                    .message,
                "Invalid pageSize"
            );
        }
        assert_eq!(
            s.list_named("lnu_001", None, Some("zz"), T0)
                .unwrap_err()
                .message,
            "Invalid nextToken"
        );
    }
}

mod journal {
    use esp_aws::sim::endpoint::journal::{Journal, JOURNAL_FILE};
    use esp_aws::sim::endpoint::shadow::{ShadowKey, ShadowStore};

    fn write(journal: &Journal, store: &mut ShadowStore, key: &ShadowKey, body: &str) {
        let outcome = store.update(key, body.as_bytes(), 1).unwrap();
        journal.wait(journal.append(key, &outcome.record)).unwrap();
    }

    #[test]
    fn replay_returns_the_last_record_per_shadow_and_skips_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let a = ShadowKey::classic("a");
        let b = ShadowKey::named("a", "b");
        let mut store = ShadowStore::new();
        {
            let (journal, records) = Journal::open(dir.path()).unwrap();
            assert!(records.is_empty());
            write(
                &journal,
                &mut store,
                &a,
                r#"{"state":{"reported":{"x":1}}}"#,
            );
            write(
                &journal,
                &mut store,
                &b,
                r#"{"state":{"reported":{"y":1}}}"#,
            );
            write(
                &journal,
                &mut store,
                &a,
                r#"{"state":{"reported":{"x":2}}}"#,
            );
        }
        // A crash in the middle of an append leaves half a line.
        let path = dir.path().join(JOURNAL_FILE);
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(br#"{"key":{"thing":"a","shadow":null},"record":{"vers"#);
        std::fs::write(&path, text).unwrap();

        let (journal, records) = Journal::open(dir.path()).unwrap();
        let mut replayed = ShadowStore::new();
        for (k, r) in records {
            replayed.restore(k, r);
        }
        assert_eq!(replayed.get(&a, 9), store.get(&a, 9));
        assert_eq!(replayed.get(&b, 9), store.get(&b, 9));
        assert_eq!(replayed.record(&a).unwrap().version, 2);
        // Appends after a torn tail start on a fresh line.
        write(
            &journal,
            &mut replayed,
            &a,
            r#"{"state":{"reported":{"x":3}}}"#,
        );
        drop(journal);
        let (_j, records) = Journal::open(dir.path()).unwrap();
        let rec = records.into_iter().find(|(k, _)| *k == a).unwrap().1;
        assert_eq!(rec.version, 3);
    }

    #[test]
    fn compaction_keeps_one_line_per_shadow() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<ShadowKey> = (0..4)
            .map(|i| ShadowKey::classic(format!("t{i}")))
            .collect();
        let mut store = ShadowStore::new();
        {
            let (journal, _) = Journal::open_with_compaction(dir.path(), 2048).unwrap();
            for round in 0..100 {
                for k in &keys {
                    write(
                        &journal,
                        &mut store,
                        k,
                        &format!(r#"{{"state":{{"reported":{{"round":{round}}}}}}}"#),
                    );
                }
            }
        }
        let size = std::fs::metadata(dir.path().join(JOURNAL_FILE))
            .unwrap()
            .len();
        assert!(size < 4096, "journal was not compacted: {size} bytes");
        let (_j, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records.len(), 4);
        for (k, r) in records {
            assert_eq!(r.version, 100, "{k:?}");
            let mut replayed = ShadowStore::new();
            replayed.restore(k.clone(), r);
            assert_eq!(replayed.get(&k, 1), store.get(&k, 1));
        }
    }
}

mod props {
    use esp_aws::sim::endpoint::http::{parse_request, Parsed};
    use esp_aws::sim::endpoint::shadow::{ShadowKey, ShadowStore, MAX_STATE_BYTES};
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i32>().prop_map(serde_json::Value::from),
            "[a-c]{0,3}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(8, 64, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn http_parser_never_panics_and_never_overreads(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Parsed::Complete(_, used)) = parse_request(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }

        #[test]
        fn routing_never_panics(method in "(GET|POST|DELETE|PUT|get)", target in "/[a-zA-Z0-9%/?=&:_$+.-]{0,60}") {
            let req = esp_aws::sim::endpoint::http::Request {
                method,
                target,
                minor_version: 1,
                headers: vec![],
                body: vec![],
            };
            if let Err(e) = esp_aws::sim::endpoint::api::route(&req) {
                prop_assert!(matches!(e.kind.status(), 400 | 404 | 405), "{e:?}");
            }
        }

        #[test]
        fn updates_never_panic_and_keep_the_invariants(docs in prop::collection::vec(json_value(), 1..6)) {
            let mut store = ShadowStore::new();
            let key = ShadowKey::classic("p");
            let mut version = 0;
            for doc in docs {
                let body = serde_json::json!({"state": {"desired": doc.clone(), "reported": doc}}).to_string();
                if store.update(&key, body.as_bytes(), 5).is_ok() {
                    version += 1;
                }
                let record = store.record(&key).cloned().unwrap_or_default();
                prop_assert_eq!(record.version, version);
                if let Some(d) = &record.document {
                    prop_assert!(d.state_size() <= MAX_STATE_BYTES);
                    // Desired equals reported here, so there is never a delta.
                    prop_assert_eq!(d.delta(), None);
                    let got: serde_json::Value = serde_json::from_str(&store.get(&key, 5).unwrap()).unwrap();
                    prop_assert!(got["state"].get("delta").is_none());
                }
            }
        }
    }
}

mod account {
    use std::sync::Arc;

    use esp_aws::sim::endpoint::account::{Account, AccountError};
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use x509_parser::prelude::*;

    fn pem_der(path: &std::path::Path) -> Vec<u8> {
        CertificateDer::from_pem_file(path).unwrap().to_vec()
    }

    #[test]
    fn credentials_look_like_aws_downloads_and_are_valid_from_yesterday() {
        let state = crate::endpoint_util::fresh_state();
        let account = Account::open(state.path()).unwrap();
        let files = account.thing_files("lnu_001").unwrap();
        assert_eq!(files.cert_id.len(), 64);
        assert_eq!(
            files.cert.file_name().unwrap().to_str().unwrap(),
            format!("{}-certificate.pem.crt", files.cert_id)
        );
        assert_eq!(
            files.key.file_name().unwrap().to_str().unwrap(),
            format!("{}-private.pem.key", files.cert_id)
        );
        assert_eq!(files.ca.file_name().unwrap(), "AmazonRootCA1.pem");
        let key = std::fs::read_to_string(&files.key).unwrap();
        assert!(
            key.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
            "PKCS#1 as AWS hands out"
        );

        let device_der = pem_der(&files.cert);
        assert_eq!(
            esp_aws::sim::endpoint::account::cert_id(&device_der),
            files.cert_id
        );
        let (_, device) = X509Certificate::from_der(&device_der).unwrap();
        // RSA-2048: ESP-AT v3.1–v3.2 cannot parse EC keys.
        let spki = device.public_key().parsed().unwrap();
        match spki {
            x509_parser::public_key::PublicKey::RSA(rsa) => assert_eq!(rsa.key_size(), 2048),
            other => panic!("device key is not RSA: {other:?}"),
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        // The template account was made moments ago (in this test run).
        let not_before = device.validity().not_before.timestamp();
        assert!(
            (now - 86400 - 3600..=now - 86400 + 60).contains(&not_before),
            "notBefore {not_before}, now {now}"
        );

        let root_der = pem_der(&files.ca);
        let (_, root) = X509Certificate::from_der(&root_der).unwrap();
        let root_cn = root.subject().to_string();
        assert!(
            root_cn.contains("Simulated") && root_cn.contains("NOT AMAZON"),
            "{root_cn}"
        );
        assert!(root.is_ca());
    }

    #[test]
    fn server_certificate_verifies_for_the_endpoint_now_but_not_in_1970() {
        let state = crate::endpoint_util::fresh_state();
        let account = Account::open(state.path()).unwrap();
        let (chain, _key) = account.server_identity().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(account.root_ca_path()).unwrap())
            .unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let host = ServerName::try_from(account.endpoint().to_string()).unwrap();
        assert!(verifier
            .verify_server_cert(&chain[0], &chain[1..], &host, &[], UnixTime::now())
            .is_ok());
        let other_host = ServerName::try_from("abc-ats.iot.us-east-1.amazonaws.com").unwrap();
        assert!(
            verifier
                .verify_server_cert(&chain[0], &chain[1..], &other_host, &[], UnixTime::now())
                .is_ok(),
            "wildcard"
        );
        // A device whose clock was never synced is at 1970: it must reject the certificate.
        let e = verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &host,
                &[],
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(0)),
            )
            .unwrap_err();
        assert!(e.to_string().contains("not valid yet"), "{e}");
    }

    #[test]
    fn regions_are_checked_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Account::open_or_create(dir.path(), Some("moon")),
            Err(AccountError::BadRegion(_))
        ));
        let eu = Account::open_or_create(dir.path(), Some("eu-west-1")).unwrap();
        assert!(
            eu.endpoint().ends_with("-ats.iot.eu-west-1.amazonaws.com"),
            "{}",
            eu.endpoint()
        );
        let (chain, _) = eu.server_identity().unwrap();
        let (_, server) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        let sans = server
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .clone();
        assert!(
            sans.iter()
                .any(|n| n.to_string().contains("*.iot.eu-west-1.amazonaws.com")),
            "{sans:?}"
        );
        let state = crate::endpoint_util::fresh_state();
        let e = Account::open_or_create(state.path(), Some("eu-west-1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the state directory was created for region us-east-1, not eu-west-1; use another --state directory"
        );
        let a = Account::open_or_create(state.path(), Some("us-east-1")).unwrap();
        assert!(a.endpoint().ends_with("-ats.iot.us-east-1.amazonaws.com"));
        let prefix = a.endpoint().split('-').next().unwrap();
        assert_eq!(prefix.len(), 14);
        assert!(prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }
}
