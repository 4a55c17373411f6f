//! `pki build` and `pki inspect`: Espressif's own AtPKI output reproduced byte for byte,
//! round trips, and one test per refusal rule.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use esp_aws::pki::atpki::{Bin, ItemKind};
use esp_aws::pki::{self, BuildError, Error, Input, InputError};

use crate::eqnice;
use crate::util::{esp_aws, fixture, fixture_bytes};

/// (golden bin made by AtPKI.py, its type, its input)
const GOLDEN: [(&str, &str, &str); 3] = [
    ("atpki/cert_rsa.bin", "cert", "atpki/dev_rsa_cert.pem"),
    ("atpki/key_rsa.bin", "key", "atpki/dev_rsa_key.pem"),
    ("atpki/ca_rsa.bin", "ca", "atpki/ca_rsa_cert.pem"),
];

#[test]
fn build_reproduces_atpki_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    for (golden, kind, input) in GOLDEN {
        let out = dir.path().join("out.bin");
        let run = esp_aws(["pki", "build", "-o"].map(Into::into).into_iter().chain([
            out.clone().into_os_string(),
            kind.into(),
            fixture(input).into_os_string(),
        ]));
        assert_eq!(run.code, Some(0), "{golden}: {}", run.stderr);
        assert_eq!(fs::read(&out).unwrap(), fixture_bytes(golden), "{golden}");
        // The library gives the same bytes.
        let lib = pki::build(
            &[Input {
                kind: ItemKind::from_word(kind).unwrap(),
                bytes: fixture_bytes(input).into(),
            }],
            8192,
        )
        .unwrap();
        assert_eq!(lib, fixture_bytes(golden), "{golden} (library)");
    }
}

#[test]
fn decoding_golden_files_yields_the_inputs_verbatim() {
    for (golden, kind, input) in GOLDEN {
        let bin = Bin::decode(&fixture_bytes(golden)).unwrap();
        assert_eq!(bin.items.len(), 1);
        assert_eq!(bin.items[0].kind, ItemKind::from_word(kind).unwrap());
        assert_eq!(bin.items[0].id, 0);
        assert_eq!(bin.items[0].content, fixture_bytes(input), "{golden}");
    }
}

fn build_args(
    out: &std::path::Path,
    pairs: &[(&str, std::path::PathBuf)],
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> =
        vec!["pki".into(), "build".into(), "-o".into(), out.into()];
    for (kind, path) in pairs {
        args.push(kind.into());
        args.push(path.into());
    }
    args
}

#[test]
fn build_inspect_extract_build_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let multi = dir.path().join("multi.bin");
    // Mixed types in a scrambled order: grouping and per-type ids must survive the trip.
    let pairs = [
        ("key", fixture("atpki/dev_rsa_key.pem")),
        ("ca", fixture("atpki/ca_rsa_cert.pem")),
        ("cert", fixture("atpki/dev_rsa_cert.pem")),
        ("ca", fixture("pki/AmazonRootCA1.pem")),
        ("key", fixture("pki/ec_dev_key_sec1.pem")),
    ];
    let run = esp_aws(
        build_args(&multi, &pairs)
            .iter()
            .chain([&"--partition-size".into(), &"16384".into()]),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let bins = [
        multi.clone(),
        fixture("atpki/cert_rsa.bin"),
        fixture("atpki/key_rsa.bin"),
        fixture("atpki/ca_rsa.bin"),
    ];
    for (n, original) in bins.iter().enumerate() {
        let extract = dir.path().join(format!("x{n}"));
        let run = esp_aws([
            "pki".into(),
            "inspect".into(),
            original.clone().into_os_string(),
            "--extract".into(),
            extract.clone().into_os_string(),
        ]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        // The printed rebuild command, run as printed (with the output redirected), gives
        // the original bytes back.
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with("rebuild with: "))
            .expect("rebuild line");
        let mut words: Vec<String> = line["rebuild with: ".len()..]
            .split(' ')
            .map(str::to_string)
            .collect();
        assert_eq!(&words[..3], ["esp-aws", "pki", "build"]);
        let rebuilt = dir.path().join(format!("rebuilt{n}.bin"));
        words[4] = rebuilt.display().to_string();
        let mut args = words[1..].to_vec();
        args.extend(["--partition-size".into(), "16384".into()]);
        let run = esp_aws(&args);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(
            fs::read(&rebuilt).unwrap(),
            fs::read(original).unwrap(),
            "{}",
            original.display()
        );
    }
    // Extracted keys are private to their owner.
    let key = dir.path().join("x0/key0.pem");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ca = dir.path().join("x0/ca0.pem");
    assert_eq!(
        fs::metadata(&ca).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn bins_holding_keys_are_written_0600() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.bin");
    let cert = dir.path().join("cert.bin");
    assert_eq!(
        esp_aws(build_args(
            &key,
            &[("key", fixture("atpki/dev_rsa_key.pem"))]
        ))
        .code,
        Some(0)
    );
    assert_eq!(
        esp_aws(build_args(
            &cert,
            &[("cert", fixture("atpki/dev_rsa_cert.pem"))]
        ))
        .code,
        Some(0)
    );
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(&cert).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

/// Every refusal rule has its fixture, and each produces exactly its sentence, exit code 1
/// and no output file.
#[test]
fn each_refusal_rule_gives_exactly_its_error() {
    let cases: [(&str, &str, Error, &str); 11] = [
        ("err_empty.pem", "cert", Error::Empty, "the file is empty"),
        (
            "err_html.pem",
            "ca",
            Error::Html,
            "the file is an HTML page, not a certificate or key: download the file itself instead of saving the page that links to it",
        ),
        (
            "err_encrypted_key.pem",
            "key",
            Error::EncryptedKey,
            "the private key is encrypted, and ESP-AT cannot use a passphrase-protected key: decrypt it first (openssl pkey -in KEY -out KEY.plain.pem)",
        ),
        (
            "err_encrypted_key_legacy.pem",
            "key",
            Error::EncryptedKey,
            "the private key is encrypted, and ESP-AT cannot use a passphrase-protected key: decrypt it first (openssl pkey -in KEY -out KEY.plain.pem)",
        ),
        (
            "err_key_as_cert.pem",
            "cert",
            Error::WrongKind { declared: ItemKind::CERT, found: "a private key" },
            "the file holds a private key, but was given as `cert`",
        ),
        (
            "err_cert_as_key.pem",
            "key",
            Error::WrongKind { declared: ItemKind::KEY, found: "a certificate" },
            "the file holds a certificate, but was given as `key`",
        ),
        (
            "err_public_key.pem",
            "key",
            Error::PublicKeyOnly,
            "the file holds a public key; the module needs the private key (AWS's `*-private.pem.key` download)",
        ),
        (
            "err_csr.pem",
            "cert",
            Error::NotCredential("it is a certificate signing request (CSR), not the certificate AWS issued".into()),
            "the file is not a certificate or private key: it is a certificate signing request (CSR), not the certificate AWS issued",
        ),
        (
            "err_not_pem.pem",
            "cert",
            Error::NotCredential("it is neither PEM text nor DER".into()),
            "the file is not a certificate or private key: it is neither PEM text nor DER",
        ),
        (
            "err_item_too_large.pem",
            "ca",
            Error::ItemTooLarge { len: 66069 },
            "the file is 66069 bytes, but an AtPKI item holds at most 65535",
        ),
        (
            "err_bin_too_large.pem",
            "ca",
            Error::BinTooLarge { size: 8768, partition_size: 8192 },
            "the bin would be 8768 bytes, which does not fit the 8192-byte PKI partition",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (file, kind, variant, sentence) in cases {
        let path = fixture(&format!("pki/{file}"));
        let input = Input {
            kind: ItemKind::from_word(kind).unwrap(),
            bytes: fs::read(&path).unwrap().into(),
        };
        let expected = match &variant {
            Error::BinTooLarge { .. } => BuildError::Bin(variant.clone()),
            _ => BuildError::Input(InputError {
                index: 0,
                error: variant.clone(),
            }),
        };
        assert_eq!(pki::build(&[input], 8192), Err(expected), "{file}");

        let out = dir.path().join(format!("{file}.bin"));
        let run = esp_aws(build_args(&out, &[(kind, path.clone())]));
        assert_eq!(run.code, Some(1), "{file}");
        let expected_line = match variant {
            Error::BinTooLarge { .. } => format!("error: {sentence}\n"),
            _ => format!("error: {}: {sentence}\n", path.display()),
        };
        eqnice!(expected_line, run.stderr);
        assert!(!out.exists(), "{file}: nothing may be written");
    }
}

#[test]
fn partition_size_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.bin");
    let mut args = build_args(&out, &[("cert", fixture("atpki/dev_rsa_cert.pem"))]);
    args.extend(["--partition-size".into(), "1024".into()]);
    let run = esp_aws(args);
    assert_eq!(run.code, Some(1));
    eqnice!(
        "error: the bin would be 1076 bytes, which does not fit the 1024-byte PKI partition\n",
        run.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let run = esp_aws(["pki", "build", "-o", "/dev/null", "cert"]);
    assert_eq!(run.code, Some(2));
    let run = esp_aws(["pki", "build", "-o", "/dev/null", "chain", "x.pem"]);
    assert_eq!(run.code, Some(2));
    eqnice!(
        "error: unknown type 'chain': use ca, cert or key\n",
        run.stderr
    );
}

#[test]
fn warns_about_the_v1_item_walk() {
    // ec_ca_cert.pem is 656 bytes (a multiple of 4): ESP-AT v1.x reads the item after it
    // 4 bytes late. The bin is still written, with a warning that says what to do.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cas.bin");
    let run = esp_aws(build_args(
        &out,
        &[
            ("ca", fixture("pki/ec_ca_cert.pem")),
            ("ca", fixture("atpki/ca_rsa_cert.pem")),
        ],
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(out.exists());
    assert!(
        run.stderr.starts_with(
            "warning: item 1 (ca 1) follows item 0, whose length (656 bytes) is a multiple of 4;"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("add a final newline to") && run.stderr.contains("ec_ca_cert.pem"));
    // The other order is safe: no warning.
    let run = esp_aws(build_args(
        &out,
        &[
            ("ca", fixture("atpki/ca_rsa_cert.pem")),
            ("ca", fixture("pki/ec_ca_cert.pem")),
        ],
    ));
    assert_eq!((run.code, run.stderr.as_str()), (Some(0), ""));
}

#[test]
fn inspect_summarises_certificates() {
    let run = esp_aws([
        "pki".into(),
        "inspect".into(),
        fixture("atpki/cert_rsa.bin").into_os_string(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let expected = format!(
        "{}: AtPKI bin, 1 item, 1076 bytes (magic f1f1, length field 1068)
  #0 cert id 0: 1062 bytes, PEM
      subject  CN=esp-aws-test-device
      issuer   C=US, O=esp-aws test, CN=Test RSA Root CA
      valid    2026-11-24 22:53:56 UTC to 2036-11-21 22:53:56 UTC
      key      RSA 2048 bit
      sha256   88:36:C7:A2:1D:D2:66:FB:58:90:53:03:E2:B6:36:1E:7F:C1:14:B7:A6:39:00:5B:03:76:30:2E:86:61:C5:B4
",
        fixture("atpki/cert_rsa.bin").display()
    );
    // (fingerprint as printed by `openssl x509 -noout -fingerprint -sha256 -in dev_rsa_cert.pem`)
    eqnice!(expected, run.stdout);
}

#[test]
fn inspect_never_prints_key_material() {
    let key_pem = String::from_utf8(fixture_bytes("atpki/dev_rsa_key.pem")).unwrap();
    for json in [false, true] {
        let mut args = vec![
            "pki".into(),
            "inspect".into(),
            fixture("atpki/key_rsa.bin").into_os_string(),
        ];
        if json {
            args.push("--json".into());
        }
        let run = esp_aws(args);
        assert_eq!(run.code, Some(0));
        for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(
                !run.stdout.contains(line) && !run.stderr.contains(line),
                "key material printed"
            );
        }
        assert!(run.stdout.contains("RSA"), "{}", run.stdout);
    }
}

#[test]
fn inspect_json_describes_items() {
    let run = esp_aws(
        ["pki", "inspect", "--json"]
            .map(Into::into)
            .into_iter()
            .chain([fixture("atpki/key_rsa.bin").into_os_string()]),
    );
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["length"], 1684);
    assert_eq!(v["items"][0]["type"], "key");
    assert_eq!(v["items"][0]["length"], 1679);
    assert_eq!(
        v["items"][0]["key"],
        serde_json::json!({"format": "PKCS#1", "key": {"algorithm": "RSA", "bits": 2048}})
    );
}

#[test]
fn inspect_reads_a_partition_dump() {
    // What `AT+SYSFLASH=2,"client_cert",0,8192` returns: the bin, then erased flash.
    let dir = tempfile::tempdir().unwrap();
    let mut dump = fixture_bytes("atpki/cert_rsa.bin");
    dump.resize(8192, 0xFF);
    let path = dir.path().join("client_cert.dump");
    fs::write(&path, &dump).unwrap();
    let run = esp_aws(["pki".into(), "inspect".into(), path.into_os_string()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("followed by 7116 bytes of erased flash (0xff)"),
        "{}",
        run.stdout
    );
}

#[test]
fn inspect_rejects_broken_bins_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let cert = fixture_bytes("atpki/cert_rsa.bin");
    let mut garbage_tail = cert.clone();
    garbage_tail.extend_from_slice(b"\x00\x01");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            cert[..500].to_vec(),
            "the header says 1068 bytes follow it, but 492 do",
        ),
        (
            "pem",
            fixture_bytes("atpki/dev_rsa_cert.pem"),
            "bad magic [2d, 2d]: an AtPKI bin starts with f1 f1",
        ),
        (
            "erased",
            vec![0xFF; 8192],
            "the data is erased flash (all bytes 0xff), not an AtPKI bin",
        ),
        (
            "short",
            vec![0xF1],
            "the file is 1 bytes long, shorter than the 8-byte AtPKI header",
        ),
        (
            "tail",
            garbage_tail,
            "the header says 1068 bytes follow it, but 1070 do",
        ),
        (
            "item-past-end",
            [&cert[..8], &[2, 0, 0xff, 0x0f]].concat(),
            "the header says 1068 bytes follow it, but 4 do",
        ),
    ];
    for (name, bytes, sentence) in cases {
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        let run = esp_aws([
            "pki".into(),
            "inspect".into(),
            path.clone().into_os_string(),
        ]);
        assert_eq!(run.code, Some(1), "{name}");
        eqnice!(
            format!(
                "error: {} is not a usable AtPKI bin: {sentence}\n",
                path.display()
            ),
            run.stderr
        );
    }
}
