//! The endpoint over real TLS: a rustls client with the account's device credentials, and
//! curl with `--cert/--key/--cacert/--resolve`.

use std::process::Command;
use std::sync::Arc;

use esp_aws::sim::endpoint::{Account, CertStatus, Listener, ManualClock, ShadowKey};

use crate::endpoint_util::{start, start_with, Conn, Creds, Tls};

const T0: u64 = 1_700_000_000;

fn manual() -> (ManualClock, Option<Arc<dyn esp_aws::sim::endpoint::Clock>>) {
    let clock = ManualClock::new(T0);
    (clock.clone(), Some(Arc::new(clock)))
}

#[test]
fn update_and_get_with_aws_headers_and_exact_bodies() {
    let (clock, c) = manual();
    let ep = start_with(c, |_| {});
    let mut conn = ep.connect("lnu_001");
    let r = conn.post(
        "/things/lnu_001/shadow",
        r#"{"state":{"desired":{"prop1":"12"}},"clientToken":"ct"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        format!(
            r#"{{"state":{{"desired":{{"prop1":"12"}}}},"metadata":{{"desired":{{"prop1":{{"timestamp":{T0}}}}}}},"version":1,"timestamp":{T0},"clientToken":"ct"}}"#
        )
    );
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "content-type",
            "content-length",
            "date",
            "x-amzn-RequestId",
            "connection"
        ]
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(r.header("date"), Some("Tue, 14 Nov 2023 22:13:20 GMT"));
    assert_eq!(r.header("connection"), Some("keep-alive"));
    let id = r.request_id();
    assert_eq!(id.len(), 36, "uuid form: {id}");

    clock.set(T0 + 30);
    let r = conn.get("/things/lnu_001/shadow");
    let expected = format!(
        r#"{{"state":{{"desired":{{"prop1":"12"}},"delta":{{"prop1":"12"}}}},"metadata":{{"desired":{{"prop1":{{"timestamp":{T0}}}}}}},"version":1,"timestamp":{}}}"#,
        T0 + 30
    );
    assert_eq!((r.status, r.body.as_str()), (200, expected.as_str()));
    // What the client read is what the endpoint stores.
    assert_eq!(
        ep.handle.shadow_document(&ShadowKey::classic("lnu_001")),
        Some(expected)
    );
    assert_eq!(
        ep.handle
            .shadow(&ShadowKey::classic("lnu_001"))
            .map(|r| r.version),
        Some(1)
    );

    let r = conn.delete("/things/lnu_001/shadow");
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            200,
            format!(r#"{{"version":2,"timestamp":{}}}"#, T0 + 30).as_str()
        )
    );
}

#[test]
fn error_responses_carry_error_type_and_close_by_default() {
    let ep = start();
    let mut conn = ep.connect("lnu_001");
    let r = conn.get("/things/lnu_001/shadow?name=lamp");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("x-amzn-ErrorType"),
        Some("ResourceNotFoundException:")
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        r.body,
        format!(
            r#"{{"code":404,"message":"No shadow exists with name: 'lamp'","traceId":"{}"}}"#,
            r.request_id()
        )
    );
    assert!(conn.is_closed());
}

#[test]
fn keep_alive_after_errors_when_configured() {
    let ep = start_with(None, |c| c.close_after_error = false);
    let mut conn = ep.connect("lnu_001");
    let cases = [
        (
            "POST",
            "/things/lnu_001/shadow",
            Some("{"),
            400,
            "InvalidRequestException:",
            "Invalid JSON",
        ),
        (
            "POST",
            "/things/lnu_001/shadow",
            Some(r#"{"state":{},"version":7}"#),
            400,
            "InvalidRequestException:",
            "Invalid version",
        ),
        (
            "PUT",
            "/things/lnu_001/shadow",
            None,
            405,
            "MethodNotAllowedException:",
            "The specified combination of HTTP verb and URI is not supported",
        ),
        (
            "GET",
            "/things/no%20spaces/shadow",
            None,
            400,
            "InvalidRequestException:",
            "ThingName must match pattern [a-zA-Z0-9:_-]+",
        ),
        (
            "GET",
            "/things/lnu_001/shadow?name=a%2Fb",
            None,
            400,
            "InvalidRequestException:",
            "ShadowName must match pattern [$a-zA-Z0-9:_-]+",
        ),
    ];
    for (method, target, body, status, kind, message) in cases {
        let r = conn
            .request(method, target, body)
            .expect("answered on the same connection");
        assert_eq!(r.status, status, "{method} {target}");
        assert_eq!(r.header("x-amzn-ErrorType"), Some(kind));
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(
            r.body,
            format!(
                r#"{{"code":{status},"message":"{message}","traceId":"{}"}}"#,
                r.request_id()
            )
        );
    }
    let r = conn.post(
        "/things/lnu_001/shadow",
        r#"{"state":{"reported":{"ok":true}}}"#,
    );
    assert_eq!(r.status, 200);
}

#[test]
fn many_requests_on_one_keep_alive_connection_and_pipelining() {
    let ep = start();
    let mut conn = ep.connect("lnu_001");
    for i in 1..=20 {
        let r = conn.post(
            "/things/lnu_001/shadow",
            &format!(r#"{{"state":{{"reported":{{"i":{i}}}}}}}"#),
        );
        assert!(r.body.contains(&format!(r#""version":{i},"#)), "{}", r.body);
    }
    // Three pipelined requests in one write come back in order.
    let req = "GET /things/lnu_001/shadow HTTP/1.1\r\nHost: h\r\n\r\n";
    conn.send_raw(req.repeat(3).as_bytes()).unwrap();
    for _ in 0..3 {
        let r = conn.read_response().unwrap();
        assert!(r.body.contains(r#""reported":{"i":20}"#), "{}", r.body);
    }
    assert_eq!(ep.handle.requests().len(), 23);
}

#[test]
fn more_than_ten_in_flight_requests_get_429() {
    let ep = start_with(None, |c| c.close_after_error = false);
    let mut conn = ep.connect("lnu_001");
    let req = "GET /things/lnu_001/shadow?name=x HTTP/1.1\r\nHost: h\r\n\r\n";
    conn.send_raw(req.repeat(11).as_bytes()).unwrap();
    let statuses: Vec<u16> = (0..11)
        .map(|_| conn.read_response().unwrap().status)
        .collect();
    // The eleven requests travel in one TLS record, so the endpoint sees them all at once.
    let mut expected = vec![404; 10];
    expected.push(429);
    assert_eq!(statuses, expected);
}

#[test]
fn tls12_and_tls13_both_work() {
    let ep = start();
    for tls in [Tls::V12, Tls::V13] {
        let mut conn = Conn::open(
            ep.handle.rest_addr(),
            ep.handle.host(),
            &ep.creds("lnu_001"),
            tls,
            None,
        )
        .unwrap();
        let version = conn.tls.conn.protocol_version();
        assert_eq!(
            version,
            Some(match tls {
                Tls::V12 => rustls::ProtocolVersion::TLSv1_2,
                _ => rustls::ProtocolVersion::TLSv1_3,
            })
        );
        assert_eq!(conn.get("/things/lnu_001/shadow").status, 404);
    }
}

/// Connects and sends one GET; the error (if any) from the handshake or the first read.
fn try_get(addr: std::net::SocketAddr, host: &str, creds: &Creds, tls: Tls) -> Result<u16, String> {
    let mut conn = Conn::open(addr, host, creds, tls, None).map_err(|e| e.to_string())?;
    conn.request("GET", "/things/lnu_001/shadow", None)
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

#[test]
fn inactive_certificate_fails_the_handshake_with_an_alert() {
    let ep = start();
    for tls in [Tls::V12, Tls::V13] {
        let e = try_get(
            ep.handle.rest_addr(),
            ep.handle.host(),
            &ep.creds("dormant"),
            tls,
        )
        .unwrap_err();
        assert!(e.contains("CertificateUnknown"), "{tls:?}: {e}");
    }
}

#[test]
fn unknown_certificate_fails_the_handshake() {
    let ep = start();
    // Same device CA, but not registered in this endpoint's account: another copy of the
    // template gets a thing this endpoint has never heard of.
    let other = crate::endpoint_util::fresh_state();
    let mut account = Account::open(other.path()).unwrap();
    let files = account
        .create_thing(
            "stranger",
            CertStatus::Active,
            esp_aws::sim::endpoint::Policy::Allow,
        )
        .unwrap();
    let creds = Creds {
        cert: Some((files.cert, files.key)),
        ca: files.ca,
    };
    let e = try_get(ep.handle.rest_addr(), ep.handle.host(), &creds, Tls::V13).unwrap_err();
    assert!(e.contains("CertificateUnknown"), "{e}");
    // No certificate at all: the REST listener requires one.
    let none = Creds {
        cert: None,
        ca: ep.creds("lnu_001").ca,
    };
    let e = try_get(ep.handle.rest_addr(), ep.handle.host(), &none, Tls::V13).unwrap_err();
    assert!(e.contains("CertificateRequired"), "{e}");
}

#[test]
fn deactivating_a_certificate_applies_to_a_running_endpoint() {
    let ep = start();
    let creds = ep.creds("lnu_001");
    let (addr, host) = (ep.handle.rest_addr(), ep.handle.host().to_string());
    assert_eq!(try_get(addr, &host, &creds, Tls::Any), Ok(404));
    let id = ep.handle.thing_files("lnu_001").unwrap().cert_id;
    let mut account = Account::open(ep.state.path()).unwrap();
    account
        .set_certificate_status(&id[..12], CertStatus::Inactive)
        .unwrap();
    let e = try_get(addr, &host, &creds, Tls::Any).unwrap_err();
    assert!(e.contains("CertificateUnknown"), "{e}");
    account
        .set_certificate_status(&id, CertStatus::Active)
        .unwrap();
    assert_eq!(try_get(addr, &host, &creds, Tls::Any), Ok(404));
}

#[test]
fn policy_deny_gets_403_forbidden() {
    let ep = start();
    let mut conn = ep.connect("denied");
    let r = conn.post("/things/denied/shadow", r#"{"state":{}}"#);
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-amzn-ErrorType"), Some("ForbiddenException:"));
    assert_eq!(
        r.body,
        format!(
            r#"{{"code":403,"message":"Forbidden","traceId":"{}"}}"#,
            r.request_id()
        )
    );
    assert_eq!(ep.handle.shadow(&ShadowKey::classic("denied")), None);
}

#[test]
fn port_443_needs_alpn_x_amzn_http_ca() {
    let ep = start();
    let creds = ep.creds("lnu_001");
    let mut plain = Conn::open(
        ep.handle.alpn_addr(),
        ep.handle.host(),
        &creds,
        Tls::Any,
        None,
    )
    .unwrap();
    let r = plain.get("/things/lnu_001/shadow");
    let id = r.request_id();
    assert_eq!(r.status, 403);
    assert_eq!(
        r.headers,
        vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("content-length".to_string(), "91".to_string()),
            ("x-amzn-RequestId".to_string(), id.clone()),
            ("connection".to_string(), "Keep-Alive".to_string()),
            (
                "x-amzn-ErrorType".to_string(),
                "ForbiddenException:".to_string()
            ),
        ]
    );
    assert_eq!(
        r.body,
        format!(r#"{{"message":"Missing Authentication Token","traceId":"{id}"}}"#)
    );

    let mut alpn = Conn::open(
        ep.handle.alpn_addr(),
        ep.handle.host(),
        &creds,
        Tls::Any,
        Some(b"x-amzn-http-ca"),
    )
    .unwrap();
    assert_eq!(alpn.tls.conn.alpn_protocol(), Some(&b"x-amzn-http-ca"[..]));
    assert_eq!(
        alpn.post(
            "/things/lnu_001/shadow",
            r#"{"state":{"reported":{"p":443}}}"#
        )
        .status,
        200
    );
    let log = ep.handle.requests();
    assert_eq!(
        log.iter()
            .map(|r| (r.listener, r.status))
            .collect::<Vec<_>>(),
        [(Listener::Alpn, 403), (Listener::Alpn, 200)]
    );
    assert_eq!(log[1].alpn.as_deref(), Some("x-amzn-http-ca"));
    assert_eq!(log[1].thing.as_deref(), Some("lnu_001"));
    assert_eq!(log[1].sni.as_deref(), Some(ep.handle.host()));
    let subject = log[1].cert_subject.as_deref().unwrap_or_default();
    assert!(subject.contains("CN=AWS IoT Certificate"), "{subject}");
}

#[test]
fn resolve_maps_aws_ports_to_listeners() {
    let ep = start();
    let h = &ep.handle;
    assert_eq!(h.resolve(h.host(), 8443), Some(h.rest_addr()));
    assert_eq!(h.resolve(h.host(), 443), Some(h.alpn_addr()));
    assert_eq!(h.resolve(h.host(), 8883), Some(h.mqtt_addr()));
    assert_eq!(h.resolve(h.host(), 1883), None);
    assert_eq!(h.resolve("example.com", 8443), None);
    assert!(
        h.host().ends_with("-ats.iot.us-east-1.amazonaws.com"),
        "{}",
        h.host()
    );
}

#[test]
fn malformed_http_gets_400_and_a_clean_close() {
    let ep = start();
    let mut conn = ep.connect("lnu_001");
    conn.send_raw(b"GET /things/lnu_001/shadow HTTP/1.1\r\nBad Header\r\n\r\n")
        .unwrap();
    let r = conn.read_response().unwrap();
    assert_eq!((r.status, r.header("connection")), (400, Some("close")));
    assert_eq!(
        r.body,
        format!(
            r#"{{"code":400,"message":"Bad Request","traceId":"{}"}}"#,
            r.request_id()
        )
    );
    assert!(conn.is_closed());
    // The endpoint is unharmed.
    assert_eq!(
        ep.connect("lnu_001").get("/things/lnu_001/shadow").status,
        404
    );
}

#[test]
fn a_stalled_client_never_blocks_another() {
    let ep = start();
    let mut stalled = ep.connect("lnu_001");
    stalled
        .send_raw(b"POST /things/lnu_001/shadow HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"sta")
        .unwrap();
    let mut other = ep.connect("lnu_001");
    assert_eq!(
        other
            .post(
                "/things/lnu_001/shadow",
                r#"{"state":{"reported":{"x":1}}}"#
            )
            .status,
        200
    );
    // A client that connects and never finishes its handshake does not block either.
    let _silent = std::net::TcpStream::connect(ep.handle.rest_addr()).unwrap();
    assert_eq!(
        ep.connect("lnu_001").get("/things/lnu_001/shadow").status,
        200
    );
}

#[test]
fn concurrent_updates_to_one_shadow_are_serialized_and_none_lost() {
    let ep = start();
    let threads = 8;
    let per = 15;
    std::thread::scope(|s| {
        for t in 0..threads {
            let ep = &ep;
            s.spawn(move || {
                let mut conn = ep.connect("lnu_001");
                for i in 0..per {
                    let r = conn.post(
                        "/things/lnu_001/shadow",
                        &format!(r#"{{"state":{{"reported":{{"t{t}_{i}":{i}}}}}}}"#),
                    );
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            });
        }
    });
    let record = ep.handle.shadow(&ShadowKey::classic("lnu_001")).unwrap();
    assert_eq!(record.version, (threads * per) as u64);
    let reported = record.document.unwrap().reported.unwrap();
    assert_eq!(reported.len(), threads * per);
}

#[test]
fn named_shadows_list_and_publish_over_tls() {
    let ep = start();
    let mut conn = ep.connect("lnu_001");
    for n in ["b", "a", "$c"] {
        assert_eq!(
            conn.post(
                &format!("/things/lnu_001/shadow?name={n}"),
                r#"{"state":{"desired":{"x":1}}}"#
            )
            .status,
            200
        );
    }
    let r = conn.get("/api/things/shadow/ListNamedShadowsForThing/lnu_001?pageSize=2");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["results"].to_string(), r#"["$c","a"]"#);
    let token = v["nextToken"].as_str().unwrap().to_string();
    let r = conn.get(&format!(
        "/api/things/shadow/ListNamedShadowsForThing/lnu_001?pageSize=2&nextToken={token}"
    ));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["results"].to_string(), r#"["b"]"#);
    assert!(v.get("nextToken").is_none());

    let r = conn
        .request(
            "POST",
            "/topics/sensors%2Flnu_001%2Ftemp?qos=1",
            Some("21.5"),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        format!(r#"{{"message":"OK","traceId":"{}"}}"#, r.request_id())
    );
    // A publish to a shadow's reserved update topic updates the shadow, as over MQTT.
    let r = conn
        .request(
            "POST",
            "/topics/%24aws%2Fthings%2Flnu_001%2Fshadow%2Fname%2Fa%2Fupdate",
            Some(r#"{"state":{"reported":{"x":1}}}"#),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    let a = ep.handle.shadow(&ShadowKey::named("lnu_001", "a")).unwrap();
    assert_eq!(a.version, 2);
    assert_eq!(
        serde_json::Value::Object(a.document.unwrap().reported.unwrap()).to_string(),
        r#"{"x":1}"#
    );
    let pubs = ep.handle.publications();
    assert_eq!(pubs.len(), 2);
    assert_eq!(
        (
            pubs[0].topic.as_str(),
            pubs[0].qos,
            pubs[0].payload.as_slice()
        ),
        ("sensors/lnu_001/temp", 1, &b"21.5"[..])
    );
}

#[test]
fn request_log_file_has_one_json_line_per_request() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let path = log.path().to_path_buf();
    let ep = start_with(None, |c| c.log_file = Some(path.clone()));
    let mut conn = ep.connect("lnu_001");
    conn.post(
        "/things/lnu_001/shadow",
        r#"{"state":{"reported":{"a":1}}}"#,
    );
    conn.get("/things/lnu_001/shadow");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["listener"], "8443");
    assert_eq!(lines[0]["body"], r#"{"state":{"reported":{"a":1}}}"#);
    assert_eq!(lines[1]["status"], 200);
    assert_eq!(lines[1]["thing"], "lnu_001");
}

#[test]
fn restart_keeps_shadows_and_version_counters() {
    let state = crate::endpoint_util::fresh_state();
    let start = || {
        esp_aws::sim::endpoint::Endpoint::start(esp_aws::sim::endpoint::EndpointConfig::new(
            state.path(),
        ))
        .unwrap()
    };
    let creds = |h: &esp_aws::sim::endpoint::EndpointHandle| {
        let f = h.thing_files("lnu_001").unwrap();
        Creds {
            cert: Some((f.cert, f.key)),
            ca: f.ca,
        }
    };
    {
        let h = start();
        let mut c = Conn::open(h.rest_addr(), h.host(), &creds(&h), Tls::Any, None).unwrap();
        c.post(
            "/things/lnu_001/shadow",
            r#"{"state":{"reported":{"a":1}}}"#,
        );
        c.post(
            "/things/lnu_001/shadow?name=gone",
            r#"{"state":{"reported":{"a":1}}}"#,
        );
        c.delete("/things/lnu_001/shadow?name=gone");
    }
    let h = start();
    let mut c = Conn::open(h.rest_addr(), h.host(), &creds(&h), Tls::Any, None).unwrap();
    assert!(c
        .get("/things/lnu_001/shadow")
        .body
        .contains(r#""reported":{"a":1}"#));
    let r = c.post("/things/lnu_001/shadow?name=gone", r#"{"state":{}}"#);
    assert!(
        r.body.contains(r#""version":3"#),
        "counter survives delete and restart: {}",
        r.body
    );
}

#[test]
fn curl_talks_to_the_endpoint_with_the_account_files() {
    let ep = start();
    let files = ep.handle.thing_files("lnu_001").unwrap();
    let host = ep.handle.host().to_string();
    let port = ep.handle.rest_addr().port();
    let curl = |extra: &[&str]| {
        let out = Command::new(crate::peers::curl())
            .args(["-sS", "-i", "--cert"])
            .arg(&files.cert)
            .arg("--key")
            .arg(&files.key)
            .arg("--cacert")
            .arg(&files.ca)
            .arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
            .args(extra)
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let url = format!("https://{host}:{port}/things/lnu_001/shadow");
    let out = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"state":{"desired":{"led":"on"}}}"#,
        &url,
    ]);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    let out = curl(&[&url]);
    assert!(out.contains("\r\nx-amzn-RequestId: "), "{out}");
    let body = out.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["state"]["delta"].to_string(), r#"{"led":"on"}"#);
    // curl's key file is the PKCS#1 RSA key AWS hands out.
    let key = std::fs::read_to_string(&files.key).unwrap();
    assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
}

#[test]
fn injected_faults_apply_to_the_next_requests_in_order() {
    use esp_aws::sim::endpoint::Fault;
    let ep = start_with(None, |c| c.close_after_error = false);
    let mut conn = ep.connect("lnu_001");
    ep.handle.inject_fault(Fault::InternalFailure);
    ep.handle.inject_fault(Fault::ServiceUnavailable);
    let r = conn.get("/things/lnu_001/shadow");
    assert_eq!(
        (r.status, r.header("x-amzn-ErrorType")),
        (500, Some("InternalFailureException:"))
    );
    assert_eq!(
        r.body,
        format!(
            r#"{{"code":500,"message":"Internal service failure","traceId":"{}"}}"#,
            r.request_id()
        )
    );
    let r = conn.get("/things/lnu_001/shadow");
    assert_eq!(
        (r.status, r.header("x-amzn-ErrorType")),
        (503, Some("ServiceUnavailableException:"))
    );
    assert_eq!(
        conn.get("/things/lnu_001/shadow").status,
        404,
        "faults are used up"
    );

    ep.handle
        .inject_fault(Fault::Delay(std::time::Duration::from_millis(300)));
    let started = std::time::Instant::now();
    assert_eq!(conn.get("/things/lnu_001/shadow").status, 404);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));

    ep.handle.inject_fault(Fault::TruncatedBody);
    conn.send(
        "POST",
        "/things/lnu_001/shadow",
        Some(r#"{"state":{"reported":{"a":1}}}"#),
    )
    .unwrap();
    let e = conn.read_response().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    // The update itself was applied; only its response was cut.
    assert_eq!(
        ep.handle
            .shadow(&ShadowKey::classic("lnu_001"))
            .map(|r| r.version),
        Some(1)
    );

    let mut conn = ep.connect("lnu_001");
    ep.handle.inject_fault(Fault::Reset);
    assert!(conn.request("GET", "/things/lnu_001/shadow", None).is_err());
    assert_eq!(
        ep.connect("lnu_001").get("/things/lnu_001/shadow").status,
        200
    );
}

#[test]
fn sni_can_be_required_and_unknown_certs_can_be_dropped_after_the_handshake() {
    use esp_aws::sim::endpoint::CertRefusal;
    let ep = start_with(None, |c| {
        c.require_sni = true;
        c.cert_refusal = CertRefusal::CloseAfterHandshake;
    });
    // An IP address as server name means no SNI is sent.
    let e = Conn::open(
        ep.handle.rest_addr(),
        "127.0.0.1",
        &ep.creds("lnu_001"),
        Tls::Any,
        None,
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("alert"), "{e}");
    assert_eq!(
        ep.connect("lnu_001").get("/things/lnu_001/shadow").status,
        404
    );
    // The INACTIVE certificate completes the handshake, then the connection just ends.
    let mut conn = Conn::open(
        ep.handle.rest_addr(),
        ep.handle.host(),
        &ep.creds("dormant"),
        Tls::V12,
        None,
    )
    .expect("handshake completes");
    let e = conn
        .request("GET", "/things/dormant/shadow", None)
        .unwrap_err();
    assert!(!e.to_string().contains("alert"), "{e}");
}

#[test]
fn a_policy_can_deny_single_actions_on_a_running_endpoint() {
    let ep = start();
    let id = ep.handle.thing_files("lnu_001").unwrap().cert_id;
    let mut conn = ep.connect("lnu_001");
    assert_eq!(
        conn.post("/things/lnu_001/shadow", r#"{"state":{}}"#)
            .status,
        200
    );
    let mut account = Account::open(ep.state.path()).unwrap();
    account
        .set_denied_actions(&id, &["iot:UpdateThingShadow"])
        .unwrap();
    let mut conn = ep.connect("lnu_001");
    let r = conn.post("/things/lnu_001/shadow", r#"{"state":{}}"#);
    assert_eq!(
        (r.status, r.header("x-amzn-ErrorType")),
        (403, Some("ForbiddenException:"))
    );
    let mut conn = ep.connect("lnu_001");
    assert_eq!(
        conn.get("/things/lnu_001/shadow").status,
        200,
        "reading is still allowed"
    );
    let e = account.set_denied_actions(&id, &["iot:Fly"]).unwrap_err();
    assert!(e.to_string().starts_with("unknown action 'iot:Fly'"), "{e}");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let ep = start();
    let mut conn = ep.connect("lnu_001");
    let body = r#"{"state":{"reported":{"big":true}}}"#;
    let head = format!(
        "POST /things/lnu_001/shadow HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    conn.send_raw(head.as_bytes()).unwrap();
    assert_eq!(conn.read_response().unwrap().status, 100);
    conn.send_raw(body.as_bytes()).unwrap();
    let r = conn.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // The next request on the connection gets no stray 100.
    assert_eq!(conn.get("/things/lnu_001/shadow").status, 200);
}
