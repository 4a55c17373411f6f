//! `provision --for rest,mqtt` and `doctor`'s slot report: the credentials the firmware's
//! own MQTT client reads (`AT+MQTTUSERCFG` scheme 5 reads `mqtt_cert`/`mqtt_key`/`mqtt_ca`,
//! not `client_*`; `esp-at.md` §2.8, §2.9, §5.20), written on every generation that has
//! them, through the AT port and the ROM bootloader, verified by reading back, and the 2.4
//! partitions compared with the bins Espressif's own `AtPKI.py` makes.

use std::io::{self, Read, Write};
use std::time::Duration;

use esp_aws::at::session::{Session, Timeouts};
use esp_aws::firmware::{Generation, MQTT_PKI};
use esp_aws::pki::atpki::Bin;
use esp_aws::provision::{self, Credentials, Outcome, Plan, Purposes, Slot};
use esp_aws::transport::{AnyTransport, Transport};

use crate::sim_util::World;
use crate::util::{assert_ok, fixture, fixture_bytes, Run};

/// How many slots a default `provision` writes on `generation`, and their names as the
/// summary lists them.
pub(crate) fn default_slots(generation: Generation) -> (usize, String) {
    let slots = Purposes::default_for(generation).slots();
    let names: Vec<&str> = slots.iter().map(|s| s.name()).collect();
    (slots.len(), names.join(", "))
}

/// The default thing's downloaded files.
fn thing_credentials(world: &World) -> Credentials {
    let dir = world.thing_dir();
    let pick = |suffix: &str| {
        let path = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap();
        std::fs::read(path).unwrap()
    };
    Credentials {
        cert: pick("-certificate.pem.crt"),
        key: pick("-private.pem.key").into(),
        ca: std::fs::read(dir.join("AmazonRootCA1.pem")).unwrap(),
    }
}

/// The fixture files Espressif's AtPKI.py turned into `fixtures/atpki/*.bin`.
fn fixture_credentials() -> Credentials {
    Credentials {
        cert: fixture_bytes("atpki/dev_rsa_cert.pem"),
        key: fixture_bytes("atpki/dev_rsa_key.pem").into(),
        ca: fixture_bytes("atpki/ca_rsa_cert.pem"),
    }
}

fn provision(world: &World, extra: &[&str]) -> Run {
    let mut args: Vec<std::ffi::OsString> =
        ["provision", "--thing", "lnu_001"].map(Into::into).to_vec();
    args.extend(extra.iter().map(Into::into));
    args.push("--from".into());
    args.push(world.thing_dir().into_os_string());
    world.cli(args)
}

fn session<T: Transport>(io: T) -> Session<T> {
    let timeouts = Timeouts {
        response: Duration::from_secs(10),
        ..Timeouts::default()
    };
    Session::open(io, None, timeouts).expect("open session")
}

fn port(world: &World) -> AnyTransport {
    esp_aws::transport::open(&world.port(), world.baud()).expect("open port")
}

/// The file an MQTT slot holds, read from the module's flash (2.4: the AtPKI bin in the
/// partition, decoded) or through the module's own `AT+SYSMFG` (4.1), independently of the
/// tool's reader.
fn mqtt_slot(world: &World, slot: usize) -> Option<Vec<u8>> {
    let (name, offset, size) = MQTT_PKI[slot];
    if world.sim.firmware().credentials_in_nvs() {
        return world.mfg_value(name, name);
    }
    let bytes = world.flash_bytes(offset, size as usize);
    Bin::decode_partition(&bytes)
        .ok()
        .and_then(|(bin, _)| bin.items.into_iter().next())
        .map(|item| item.content)
}

fn mqtt_erases(world: &World) -> Vec<u32> {
    world.sim.flash().read(|f| {
        MQTT_PKI
            .iter()
            .flat_map(|&(_, offset, size)| (offset..offset + size).step_by(4096))
            .map(|addr| f.erase_count(addr) + f.write_count(addr))
            .collect()
    })
}

#[test]
fn provision_writes_the_mqtt_slots_by_default_where_the_firmware_has_them() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        let creds = thing_credentials(&world);
        let run = provision(&world, &[]);
        assert_ok(&run);
        let (count, names) = default_slots(generation);
        assert!(
            run.stdout
                .contains(&format!("{count} slots written ({names}), 0 unchanged;")),
            "{generation}: {}",
            run.stdout
        );
        if generation.has_mqtt_slots() {
            assert_eq!(count, 6);
            for (i, file) in [&creds.cert[..], creds.key.expose(), &creds.ca]
                .into_iter()
                .enumerate()
            {
                assert_eq!(
                    mqtt_slot(&world, i).as_deref(),
                    Some(file),
                    "{generation} {}",
                    MQTT_PKI[i].0
                );
            }
            // 4.1 keeps one file per MQTT namespace under the namespace's own name.
            let location = if generation.credentials_in_nvs() {
                "mqtt_key at mqtt_key:"
            } else {
                "mqtt_key at 0x39000:"
            };
            assert!(
                run.stderr.contains(location),
                "{generation}: {}",
                run.stderr
            );
        } else {
            // 1.1.3 has no MQTT slots: the flash where 2.x keeps them is not touched.
            assert_eq!(count, 3);
            assert!(mqtt_erases(&world).iter().all(|&n| n == 0), "{generation}");
        }
        world.assert_no_key_in(&run.stderr);

        // The same files again: every slot, MQTT ones too, found unchanged.
        let again = provision(&world, &[]);
        assert_ok(&again);
        assert!(
            again
                .stdout
                .contains(&format!("0 slots written, {count} unchanged ({names});")),
            "{generation}: {}",
            again.stdout
        );
    }
}

#[test]
fn for_mqtt_writes_only_the_mqtt_slots_and_for_rest_only_the_client_slots() {
    for generation in [Generation::V2_4, Generation::V4_1] {
        let world = World::start(generation);
        let creds = thing_credentials(&world);
        let run = provision(&world, &["--for", "rest"]);
        assert_ok(&run);
        assert!(
            run.stdout
                .contains("3 slots written (client_cert, client_key, client_ca), 0 unchanged;"),
            "{generation}: {}",
            run.stdout
        );
        assert_ne!(mqtt_slot(&world, 0).as_deref(), Some(&creds.cert[..]));
        if !generation.credentials_in_nvs() {
            assert!(mqtt_erases(&world).iter().all(|&n| n == 0), "{generation}");
        }

        let before = world.credential_counters();
        let run = provision(&world, &["--for", "mqtt"]);
        assert_ok(&run);
        assert!(
            run.stdout
                .contains("3 slots written (mqtt_cert, mqtt_key, mqtt_ca), 0 unchanged;"),
            "{generation}: {}",
            run.stdout
        );
        // The host's connections read the client slots, which this run did not write.
        assert!(
            run.stdout.contains("live check: not run: --for mqtt"),
            "{}",
            run.stdout
        );
        assert_eq!(mqtt_slot(&world, 1).as_deref(), Some(creds.key.expose()));
        if !generation.credentials_in_nvs() {
            assert_eq!(world.credential_counters(), before, "client slots touched");
        }
    }
}

#[test]
fn for_mqtt_on_1_1_3_is_refused_before_anything_is_written() {
    let world = World::start(Generation::V1_1_3);
    let before = world.flash_counters();
    for value in ["mqtt", "rest,mqtt"] {
        let run = provision(&world, &["--for", value]);
        assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
        assert_eq!(
            run.stderr.lines().last().unwrap(),
            "error: ESP-AT 1.1.3 has no mqtt_cert/mqtt_key/mqtt_ca slots (its MQTT AT commands came with 2.0, and host-side MQTT uses the client slots): provision with --for rest"
        );
        assert_eq!(world.flash_counters(), before, "{value}: flash touched");
    }
    // Through the ROM bootloader the table says it: 1.1.3 lists no mqtt_* partition.
    let world = World::download(Generation::V1_1_3);
    let before = world.flash_counters();
    let mut args: Vec<std::ffi::OsString> = ["provision", "--via", "rom", "--for", "mqtt"]
        .map(Into::into)
        .to_vec();
    args.push("--from".into());
    args.push(world.thing_dir().into_os_string());
    let run = world.cli(args);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.lines().last().unwrap().contains(
            "has no 'mqtt_cert' partition: this is ESP-AT 1.x, which has no MQTT slots, or a build without them; provision with --for rest"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(world.flash_counters(), before);
}

#[test]
fn for_values_that_name_no_use_are_usage_errors() {
    for (value, sentence) in [
        (
            "https",
            "'https' is not a use of the credentials: --for takes rest, mqtt or rest,mqtt",
        ),
        ("", "--for needs rest, mqtt or rest,mqtt"),
        ("rest,", "--for needs rest, mqtt or rest,mqtt"),
        (
            "rest,\u{1b}[2J",
            "is not a use of the credentials: --for takes rest, mqtt or rest,mqtt",
        ),
    ] {
        let run = crate::util::esp_aws([
            "provision",
            "--port",
            "/nonexistent",
            "--endpoint",
            "example-ats.iot.us-east-1.amazonaws.com",
            "--cert",
            "c",
            "--key",
            "k",
            "--ca",
            "a",
            "--for",
            value,
        ]);
        assert_eq!(run.code, Some(2), "{value:?}: {}", run.stderr);
        assert!(run.stderr.contains(sentence), "{value:?}: {}", run.stderr);
        assert!(!run.stderr.contains('\u{1b}'), "{value:?}: escape printed");
    }
}

/// The 2.4 partitions hold, byte for byte, what Espressif's AtPKI.py makes from the same
/// files (`fixtures/atpki/README.md`): the MQTT slots reuse the cert/key/ca bins.
#[test]
fn the_2_4_mqtt_partitions_hold_espressifs_atpki_bins() {
    let golden = [
        (0x37000, "atpki/cert_rsa.bin"),
        (0x39000, "atpki/key_rsa.bin"),
        (0x3b000, "atpki/ca_rsa.bin"),
    ];
    let check = |world: &World, how: &str| {
        for (addr, file) in golden {
            let bin = fixture_bytes(file);
            assert!(
                world.flash_bytes(addr, bin.len()) == bin,
                "{how}: {file} differs at {addr:#x}"
            );
            let rest = world.flash_bytes(addr + bin.len() as u32, 0x2000 - bin.len());
            assert!(rest.iter().all(|&b| b == 0xFF), "{how}: {addr:#x} tail");
        }
    };

    // Over AT, by the library's run (the live check needs the endpoint's own CA).
    let world = World::start(Generation::V2_4);
    let creds = fixture_credentials();
    let mut s = session(port(&world));
    let done = provision::run(
        &mut s,
        &Plan {
            creds: &creds,
            endpoint: &world.host(),
            port: 8443,
            wifi: None,
            time_from_host: false,
            purposes: None,
        },
        |_| {},
    )
    .expect("provision");
    assert_eq!(done.purposes, Purposes::BOTH);
    check(&world, "AT");

    // Through the ROM bootloader.
    let world = World::download(Generation::V2_4);
    let mut args: Vec<std::ffi::OsString> = vec!["provision".into(), "--via".into(), "rom".into()];
    for (flag, file) in [
        ("--cert", "atpki/dev_rsa_cert.pem"),
        ("--key", "atpki/dev_rsa_key.pem"),
        ("--ca", "atpki/ca_rsa_cert.pem"),
    ] {
        args.push(flag.into());
        args.push(fixture(file).into_os_string());
    }
    let run = world.cli(&args);
    assert_ok(&run);
    assert!(
        run.stderr
            .contains("mqtt_key at 0x39000: 1692 bytes, written and verified (MD5)"),
        "{}",
        run.stderr
    );
    check(&world, "ROM");
    // Again: the MD5s match, nothing is rewritten.
    let again = world.cli(&args);
    assert_ok(&again);
    assert!(
        again
            .stdout
            .contains("through the ROM bootloader: 0 slots written, 6 unchanged"),
        "{}",
        again.stdout
    );
    // `--for rest` through the ROM leaves the MQTT partitions alone.
    let world = World::download(Generation::V2_4);
    let mut rest = args.clone();
    rest.extend(["--for".into(), "rest".into()]);
    let run = world.cli(&rest);
    assert_ok(&run);
    assert!(
        run.stdout.contains("3 slots written, 0 unchanged"),
        "{}",
        run.stdout
    );
    assert!(mqtt_erases(&world).iter().all(|&n| n == 0));
}

/// A transport that flips one bit of the first payload sent after the command that writes
/// `slot`, as if the module stored something other than what was sent.
struct Corrupting<T> {
    inner: T,
    command: Vec<u8>,
    armed: bool,
    fired: bool,
}

impl<T: Transport> Read for Corrupting<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<T: Transport> Write for Corrupting<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.armed && !self.fired && !buf.is_empty() {
            self.fired = true;
            let mut bad = buf.to_vec();
            bad[0] ^= 0x01;
            self.inner.write_all(&bad)?;
            return Ok(buf.len());
        }
        if buf.windows(self.command.len()).any(|w| w == self.command) {
            self.armed = true;
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Transport> Transport for Corrupting<T> {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.inner.set_read_timeout(timeout)
    }
    fn clear_input(&mut self) -> io::Result<()> {
        self.inner.clear_input()
    }
}

#[test]
fn a_corrupted_mqtt_slot_fails_the_read_back_and_the_next_run_repairs_it() {
    for generation in [Generation::V2_4, Generation::V4_1] {
        let world = World::start(generation);
        let creds = thing_credentials(&world);
        let command: &[u8] = if generation.credentials_in_nvs() {
            b"AT+SYSMFG=2,\"mqtt_key\""
        } else {
            b"AT+SYSFLASH=1,\"mqtt_key\""
        };
        let host = world.host();
        let plan = Plan {
            creds: &creds,
            endpoint: &host,
            port: 8443,
            wifi: None,
            time_from_host: false,
            purposes: None,
        };
        let mut s = session(Corrupting {
            inner: port(&world),
            command: command.to_vec(),
            armed: false,
            fired: false,
        });
        let err = provision::run(&mut s, &plan, |_| {}).unwrap_err();
        assert_eq!(
            err,
            provision::Error::VerifyFailed("mqtt_key"),
            "{generation}"
        );
        assert!(err
            .to_string()
            .starts_with("mqtt_key: the bytes read back differ from the bytes written"));
        drop(s);

        let mut s = session(port(&world));
        let done = provision::run(&mut s, &plan, |_| {}).expect("repair");
        let written: Vec<&str> = done
            .slots
            .iter()
            .filter(|r| r.outcome == Outcome::Written)
            .map(|r| r.slot)
            .collect();
        // The failed slot and the one the failed run never reached; the slots verified
        // before the failure are found unchanged.
        assert_eq!(written, ["mqtt_key", "mqtt_ca"], "{generation}");
        drop(s);
        assert_eq!(mqtt_slot(&world, 1).as_deref(), Some(creds.key.expose()));
    }
}

#[test]
fn read_slots_returns_what_provision_wrote_into_the_mqtt_slots() {
    for generation in [Generation::V2_4, Generation::V4_1] {
        let world = World::start(generation);
        world.provision();
        let creds = thing_credentials(&world);
        let mut s = session(port(&world));
        let back = provision::read_slots(&mut s, &Slot::MQTT).unwrap();
        for stored in &back {
            assert_eq!(
                stored.content.as_ref().map(|c| c.expose()),
                Some(creds.content(stored.slot)),
                "{generation} {:?}",
                stored.slot
            );
        }
        let expected = if generation.credentials_in_nvs() {
            "mqtt_cert"
        } else {
            "0x37000"
        };
        assert_eq!(back[0].location, expected);
    }
}

fn doctor(world: &World) -> Run {
    let mut args: Vec<std::ffi::OsString> =
        ["doctor", "--thing", "lnu_001"].map(Into::into).to_vec();
    args.push("--from".into());
    args.push(world.thing_dir().into_os_string());
    world.cli(args)
}

/// The sentence doctor adds when the MQTT slots are not the credentials REST uses.
const SCHEME5: &str = "AT+MQTTUSERCFG scheme 5 reads mqtt_cert, mqtt_key and mqtt_ca, not the client_* slots, so the firmware's own MQTT client does not present these credentials until `esp-aws provision --for mqtt` writes them there";

#[test]
fn doctor_reports_what_each_slot_holds_and_which_slots_scheme_5_reads() {
    for generation in Generation::ALL {
        let world = World::start(generation);
        if generation.has_mqtt_slots() {
            assert_ok(&provision(&world, &["--for", "rest"]));
        } else {
            world.provision();
        }
        let run = doctor(&world);
        // The MQTT slots are a warning, never a failure: the host's connections do not
        // read them.
        assert_eq!(run.code, Some(0), "{generation}:\n{}", run.stdout);
        assert!(
            run.stdout.contains("client_key matches the local file ("),
            "{generation}: {}",
            run.stdout
        );
        if !generation.has_mqtt_slots() {
            assert!(!run.stdout.contains("mqtt"), "{generation}: {}", run.stdout);
            continue;
        }
        // 2.4 leaves them erased; the 4.1 image ships placeholders there.
        let empty = if generation.credentials_in_nvs() {
            "mqtt_key holds 103 bytes that are no usable credential"
        } else {
            "mqtt_key holds no credential"
        };
        assert!(run.stdout.contains(empty), "{generation}: {}", run.stdout);
        assert!(run.stdout.contains(SCHEME5), "{generation}: {}", run.stdout);

        // Provisioned for both: each MQTT slot holds the local file.
        assert_ok(&provision(&world, &[]));
        let run = doctor(&world);
        assert_eq!(run.code, Some(0), "{generation}:\n{}", run.stdout);
        for slot in ["mqtt_cert", "mqtt_key", "mqtt_ca"] {
            assert!(
                run.stdout.contains(&format!("{slot} holds the same ")),
                "{generation} {slot}: {}",
                run.stdout
            );
        }
        assert!(
            !run.stdout.contains(SCHEME5),
            "{generation}: {}",
            run.stdout
        );

        // A different certificate in mqtt_cert only (another identity's): named, with its
        // fingerprint, and the sentence.
        let other = fixture("atpki/dev_rsa_cert.pem");
        let mut s = session(port(&world));
        let mut creds = thing_credentials(&world);
        creds.cert = std::fs::read(&other).unwrap();
        provision::write_credentials(&mut s, &creds, &[Slot::MqttCert], &mut |_| {}).unwrap();
        drop(s);
        let run = doctor(&world);
        assert_eq!(run.code, Some(0), "{generation}:\n{}", run.stdout);
        assert!(
            run.stdout
                .contains("mqtt_cert holds 1062 bytes that differ from the local file (SHA-256"),
            "{generation}: {}",
            run.stdout
        );
        assert!(run.stdout.contains(SCHEME5), "{generation}: {}", run.stdout);
    }
}

/// A custom 2.x build whose table lists no `mqtt_*` partitions: unasked, the client slots
/// are written and the user is told the MQTT ones could not be; asked (`--for mqtt`), the
/// run stops before anything is written.
#[test]
fn a_2_x_table_without_mqtt_partitions_gets_the_client_slots_and_a_warning() {
    use esp_aws::firmware::SECONDARY_TABLE_OFFSET;
    use esp_aws::partition;
    let world = World::start(Generation::V2_4);
    let table: Vec<_> = Generation::V2_4
        .secondary_table()
        .into_iter()
        .filter(|p| !p.name.starts_with("mqtt_"))
        .collect();
    world.sim.flash().modify(|f| {
        f.erase(SECONDARY_TABLE_OFFSET, 0x1000).unwrap();
        f.write(SECONDARY_TABLE_OFFSET, &partition::encode(&table))
            .unwrap();
    });
    let before = world.flash_counters();
    let run = provision(&world, &["--for", "mqtt"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr.lines().last().unwrap(),
        "error: the module has no 'mqtt_cert' partition (AT+SYSFLASH? does not list it): its firmware was built without MQTT slots; provision with --for rest"
    );
    assert_eq!(world.flash_counters(), before, "written before the refusal");

    let run = provision(&world, &[]);
    assert_ok(&run);
    assert!(
        run.stdout
            .contains("3 slots written (client_cert, client_key, client_ca), 0 unchanged;"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("! this firmware's partition table lists no mqtt_cert/mqtt_key/mqtt_ca partitions, so only the client slots were written"),
        "{}",
        run.stderr
    );
}
