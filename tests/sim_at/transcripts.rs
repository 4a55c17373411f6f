//! Per-generation transcripts: exact bytes for each command, including error paths
//! (`esp-at.md` §4, §5; differences table §1.1).

use std::time::Duration;

use esp_aws::firmware::Generation;
use esp_aws::sim::device::Device;

use super::{builder, fixture, Sim};
use crate::assert_bytes;

/// Feeds each input at the current time and checks the device's immediate answer.
fn run(sim: &mut Sim, steps: &[(&str, &str)]) {
    for (input, want) in steps {
        let got = sim.send(input.as_bytes());
        assert_bytes!(got, want.as_bytes());
    }
}

const GMR_1_1_3: &str = "AT version:1.1.3.0(5a40576 - Nov 28 2018 12:50:55)\r\nSDK version:v3.2-dev-1230-g7e0ea6b0\r\ncompile time:Dec 21 2018 10:32:19\r\nBin version:1.1.3(WROOM-32)\r\n\r\nOK\r\n";
const GMR_2_4: &str = "AT version:2.4.0.0(4c6eb5e - ESP32 - May 20 2022 03:11:58)\r\nSDK version:qa-test-v4.3.3-20220423\r\ncompile time(5b36ba7):May 20 2022 03:13:24\r\nBin version:2.4.0(WROOM-32)\r\n\r\nOK\r\n";
const GMR_4_1: &str = "AT version:4.1.1.0(ba4dd0e - ESP32 - Jul 31 2025 08:37:48)\r\nSDK version:v5.4.2-dirty\r\ncompile time(6d4bd5f7):Jul 31 2025 08:41:36\r\nBin version:v4.1.1.0(WROOM-32)\r\n\r\nOK\r\n";

const SYSFLASH_1_1_3: &str = "+SYSFLASH:\"ble_data\",64,1,0x21000,0x3000\r\n+SYSFLASH:\"server_cert\",64,2,0x24000,0x2000\r\n+SYSFLASH:\"server_key\",64,3,0x26000,0x2000\r\n+SYSFLASH:\"server_ca\",64,4,0x28000,0x2000\r\n+SYSFLASH:\"client_cert\",64,5,0x2a000,0x2000\r\n+SYSFLASH:\"client_key\",64,6,0x2c000,0x2000\r\n+SYSFLASH:\"client_ca\",64,7,0x2e000,0x2000\r\n+SYSFLASH:\"factory_param\",64,8,0x30000,0x1000\r\n+SYSFLASH:\"fatfs\",1,129,0x70000,0x90000\r\n\r\nOK\r\n";

#[test]
fn basics_on_1_1_3() {
    let mut sim = Sim::boot(Generation::V1_1_3);
    run(
        &mut sim,
        &[
            // Echo is on after boot, the command itself included.
            ("AT\r\n", "AT\r\n\r\nOK\r\n"),
            // A bare \n or \r is echoed but completes nothing...
            ("\n", "\n"),
            ("\r", "\r"),
            ("AT\r\n", "AT\r\nERR CODE:0x01030000\r\n\r\nERROR\r\n"),
            // ...and a \r\n split across two writes is still a terminator.
            ("at\r", "at\r"),
            ("\n", "\n\r\nOK\r\n"),
            ("ATE0\r\n", "ATE0\r\n\r\nOK\r\n"),
            ("AT\r\n", "\r\nOK\r\n"),
            ("AT+GMR\r\n", GMR_1_1_3),
            ("AT+FOO\r\n", "ERR CODE:0x01090000\r\n\r\nERROR\r\n"),
            ("HELLO\r\n", "ERR CODE:0x01030000\r\n\r\nERROR\r\n"),
            ("AT+GMR?\r\n", "ERR CODE:0x010c0000\r\n\r\nERROR\r\n"),
            // Unknown in 1.1.3 (§1.1).
            ("AT+SYSLOG=1\r\n", "ERR CODE:0x01090000\r\n\r\nERROR\r\n"),
            ("AT+SYSTIMESTAMP?\r\n", "ERR CODE:0x01090000\r\n\r\nERROR\r\n"),
            ("AT+CIPSSLCSNI=\"a\"\r\n", "ERR CODE:0x01090000\r\n\r\nERROR\r\n"),
            ("AT+CIPSSLCALPN=0\r\n", "ERR CODE:0x01090000\r\n\r\nERROR\r\n"),
            ("AT+CIPRECVMODE=1\r\n", "ERR CODE:0x01090000\r\n\r\nERROR\r\n"),
            ("AT+SYSMFG?\r\n", "ERR CODE:0x01090000\r\n\r\nERROR\r\n"),
            ("AT+MQTTUSERCFG=0,5,\"a\",\"\",\"\",0,0,\"\"\r\n", "ERR CODE:0x01090000\r\n\r\nERROR\r\n"),
            (
                "AT+CWJAP?\r\n",
                "+CWJAP:\"esp-aws-sim\",\"02:e5:a0:00:00:01\",6,-42\r\n\r\nOK\r\n",
            ),
            ("AT+CIPMUX?\r\n", "+CIPMUX:0\r\n\r\nOK\r\n"),
            ("AT+CIPSTATUS\r\n", "STATUS:2\r\n\r\nOK\r\n"),
            ("AT+SYSFLASH?\r\n", SYSFLASH_1_1_3),
            ("AT+CIPSNTPCFG?\r\n", "+CIPSNTPCFG:0\r\n\r\nOK\r\n"),
            ("AT+CIPSNTPTIME?\r\n", "+CIPSNTPTIME:Thu Jan  1 00:00:01 1970\n\r\nOK\r\n"),
            // SNTP syntax: enable digit, timezone -11…13, servers ≤ 32 bytes.
            ("AT+CIPSNTPCFG=1,14\r\n", "ERR CODE:0x01070000\r\n\r\nERROR\r\n"),
            ("AT+CIPSNTPCFG=2,0\r\n", "ERR CODE:0x01070000\r\n\r\nERROR\r\n"),
            ("AT+CIPSNTPCFG=1,\"0\"\r\n", "ERR CODE:0x01050000\r\n\r\nERROR\r\n"),
            ("AT+CIPSNTPCFG=1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\"\r\n", "\r\nOK\r\n"),
            (
                "AT+CIPSNTPCFG?\r\n",
                "+CIPSNTPCFG:1,8,\"cn.ntp.org.cn\",\"ntp.sjtu.edu.cn\"\r\n\r\nOK\r\n",
            ),
            // Strict parameter counts (§5.8).
            ("AT+CIPSSLCCONF=0,0,0\r\n", "ERR CODE:0x01060000\r\n\r\nERROR\r\n"),
            ("AT+CIPSSLCCONF=3\r\n", "ERR CODE:0x01060000\r\n\r\nERROR\r\n"),
            ("AT+CIPSSLCCONF=4,0,0\r\n", "ERR CODE:0x01070000\r\n\r\nERROR\r\n"),
            // Network commands without a link: bare ERROR.
            ("AT+CIPSEND=10\r\n", "\r\nERROR\r\n"),
            ("AT+CIPSEND=2049\r\n", "ERR CODE:0x01070000\r\n\r\nERROR\r\n"),
            ("AT+CIPCLOSE\r\n", "\r\nERROR\r\n"),
            ("AT+CIPSTART=\"SSL\",\"nowhere.example\",8443\r\n", "\r\nERROR\r\n"),
            ("AT+CIPSTART=\"TCP\",\"nowhere.example\",80\r\n", "\r\nERROR\r\n"),
            ("AT+CIPMUX=1\r\n", "\r\nOK\r\n"),
            ("AT+CIPMUX?\r\n", "+CIPMUX:1\r\n\r\nOK\r\n"),
            (
                "AT+CIPSSLCCONF?\r\n",
                "+CIPSSLCCONF:0,0,0,0\r\n+CIPSSLCCONF:1,0,0,0\r\n+CIPSSLCCONF:2,0,0,0\r\n+CIPSSLCCONF:3,0,0,0\r\n+CIPSSLCCONF:4,0,0,0\r\n\r\nOK\r\n",
            ),
            ("AT+CIPSEND=0,10\r\n", "\r\nERROR\r\n"),
            ("AT+CIPCLOSE=0\r\n", "\r\nERROR\r\n"),
            ("AT+CIPSTART=\"SSL\",\"a\",1\r\n", "ERR CODE:0x01050000\r\n\r\nERROR\r\n"),
            ("AT+CIPSTART=\"SSL\",\"a\r\n", "ERR CODE:0x01080000\r\n\r\nERROR\r\n"),
            ("AT+UART_CUR=115200,8,1,0,0\r\n", "\r\nOK\r\n"),
            ("AT+SYSMSG?\r\n", "ERR CODE:0x01090000\r\n\r\nERROR\r\n"),
            ("AT+CWMODE?\r\n", "+CWMODE:1\r\n\r\nOK\r\n"),
            ("AT+GMR=?\r\n", "\r\nOK\r\n"),
        ],
    );
}

#[test]
fn basics_on_2_4() {
    let mut sim = Sim::boot(Generation::V2_4);
    sim.echo_off();
    run(
        &mut sim,
        &[
            ("AT+GMR\r\n", GMR_2_4),
            // ERR CODE lines only with AT+SYSLOG=1.
            ("AT+FOO\r\n", "\r\nERROR\r\n"),
            ("AT+SYSMFG?\r\n", "\r\nERROR\r\n"),
            ("AT+SYSLOG?\r\n", "+SYSLOG:0\r\n\r\nOK\r\n"),
            ("AT+SYSLOG=1\r\n", "\r\nOK\r\n"),
            ("AT+FOO\r\n", "ERR CODE:0x01090000\r\n\r\nERROR\r\n"),
            ("AT+SYSLOG=0\r\n", "\r\nOK\r\n"),
            (
                "AT+CWJAP?\r\n",
                "+CWJAP:\"esp-aws-sim\",\"02:e5:a0:00:00:01\",6,-42,0,1,3,0,1\r\n\r\nOK\r\n",
            ),
            ("AT+SYSTIMESTAMP?\r\n", "+SYSTIMESTAMP:1\r\nOK\r\n"),
            // No trailing \n after asctime in 2.4.
            (
                "AT+CIPSNTPTIME?\r\n",
                "+CIPSNTPTIME:Thu Jan  1 00:00:01 1970\r\nOK\r\n",
            ),
            // Timezone -12…14 or ±hhmm.
            ("AT+CIPSNTPCFG=1,-1200\r\n", "\r\nOK\r\n"),
            ("AT+CIPSNTPCFG=1,15\r\n", "\r\nERROR\r\n"),
            ("AT+CIPSNTPCFG=1,530,\"pool.ntp.org\"\r\n", "\r\nOK\r\n"),
            (
                "AT+CIPSNTPCFG?\r\n",
                "+CIPSNTPCFG:1,530,\"pool.ntp.org\"\r\n\r\nOK\r\n",
            ),
            ("AT+CIPSNTPCFG=0\r\n", "\r\nOK\r\n"),
            ("AT+CIPSNTPCFG?\r\n", "+CIPSNTPCFG:0\r\n\r\nOK\r\n"),
            // Optional indices.
            ("AT+CIPSSLCCONF=0,0,0\r\n", "\r\nOK\r\n"),
            ("AT+CIPSSLCCONF=0,0,0,0\r\n", "\r\nERROR\r\n"),
            ("AT+CIPSSLCSNI=\"a.example\"\r\n", "\r\nOK\r\n"),
            ("AT+CIPSSLCALPN=2,\"h2\"\r\n", "\r\nERROR\r\n"),
            ("AT+CIPRECVMODE?\r\n", "+CIPRECVMODE:0\r\n\r\nOK\r\n"),
            ("AT+CIPRECVMODE=1\r\n", "\r\nOK\r\n"),
            ("AT+CIPRECVMODE?\r\n", "+CIPRECVMODE:1\r\n\r\nOK\r\n"),
            ("AT+CIPRECVLEN?\r\n", "+CIPRECVLEN:0\r\n\r\nOK\r\n"),
            ("AT+CIPRECVDATA=100\r\n", "\r\nERROR\r\n"),
            ("AT+CIPRECVTYPE?\r\n", "\r\nERROR\r\n"),
            ("AT+CIPSEND=8193\r\n", "\r\nERROR\r\n"),
            ("AT+CIPSTATE?\r\n", "\r\nOK\r\n"),
            ("AT+SYSMSG?\r\n", "+SYSMSG:0\r\n\r\nOK\r\n"),
            ("AT+SYSMSG=8\r\n", "\r\nERROR\r\n"),
            ("AT+UART_DEF=115200,8,1,0,3\r\n", "\r\nOK\r\n"),
        ],
    );
    let table = String::from_utf8(sim.cmd("AT+SYSFLASH?")).unwrap();
    let expected = SYSFLASH_1_1_3.replace(
        "+SYSFLASH:\"fatfs\"",
        "+SYSFLASH:\"wpa2_cert\",64,9,0x31000,0x2000\r\n+SYSFLASH:\"wpa2_key\",64,10,0x33000,0x2000\r\n+SYSFLASH:\"wpa2_ca\",64,11,0x35000,0x2000\r\n+SYSFLASH:\"mqtt_cert\",64,12,0x37000,0x2000\r\n+SYSFLASH:\"mqtt_key\",64,13,0x39000,0x2000\r\n+SYSFLASH:\"mqtt_ca\",64,14,0x3b000,0x2000\r\n+SYSFLASH:\"fatfs\"",
    );
    assert_eq!(table, expected);
}

#[test]
fn basics_on_4_1() {
    let mut sim = Sim::boot(Generation::V4_1);
    sim.echo_off();
    run(
        &mut sim,
        &[
            ("AT+GMR\r\n", GMR_4_1),
            (
                "AT+SYSFLASH?\r\n",
                "+SYSFLASH:\"mfg_nvs\",1,2,0x21000,0x1c000\r\n+SYSFLASH:\"fatfs\",1,129,0x70000,0x90000\r\n\r\nOK\r\n",
            ),
            // No PKI partitions any more: unknown partition.
            ("AT+SYSFLASH=2,\"client_cert\",0,4\r\n", "\r\nERROR\r\n"),
            ("AT+SYSLOG=1\r\n", "\r\nOK\r\n"),
            ("AT+SYSFLASH=2,\"client_cert\",0,4\r\n", "ERR CODE:0x010a0000\r\n\r\nERROR\r\n"),
            // Name-only lookup reaches mfg_nvs (type data).
            ("AT+SYSFLASH=2,\"mfg_nvs\",0,4\r\n", "+SYSFLASH:4,EAKV\r\nOK\r\n"),
            ("AT+SYSLOG=0\r\n", "\r\nOK\r\n"),
            ("AT+CIPSNTPCFG?\r\n", "+CIPSNTPCFG:0,0\r\n\r\nOK\r\n"),
            ("AT+CIPRECVTYPE?\r\n", "+CIPRECVTYPE:0,0\r\n\r\nOK\r\n"),
            ("AT+CIPRECVTYPE=1\r\n", "\r\nOK\r\n"),
            ("AT+CIPRECVTYPE?\r\n", "+CIPRECVTYPE:0,1\r\n\r\nOK\r\n"),
            // Still registered although undocumented.
            ("AT+CIPRECVMODE?\r\n", "+CIPRECVMODE:1\r\n\r\nOK\r\n"),
            (
                "AT+SYSMFG?\r\n",
                "+SYSMFG:\"client_ca\"\r\n+SYSMFG:\"client_cert\"\r\n+SYSMFG:\"client_key\"\r\n+SYSMFG:\"factory_param\"\r\n+SYSMFG:\"mqtt_ca\"\r\n+SYSMFG:\"mqtt_cert\"\r\n+SYSMFG:\"mqtt_key\"\r\n+SYSMFG:\"server_ca\"\r\n+SYSMFG:\"server_cert\"\r\n+SYSMFG:\"server_key\"\r\n\r\nOK\r\n",
            ),
            (
                "AT+SYSMFG=1,\"factory_param\",\"uart_baudrate\"\r\n",
                "+SYSMFG:\"factory_param\",\"uart_baudrate\",6,6,115200\r\nOK\r\n",
            ),
            (
                "AT+SYSMFG=1,\"factory_param\",\"module_name\",2,3\r\n",
                "+SYSMFG:\"factory_param\",\"module_name\",7,3,OOM\r\nOK\r\n",
            ),
            ("AT+SYSMFG=2,\"my_ns\",\"answer\",4,-42\r\n", "\r\nOK\r\n"),
            ("AT+SYSMFG=1,\"my_ns\"\r\n", "+SYSMFG:\"my_ns\",\"answer\",4\r\n\r\nOK\r\n"),
            ("AT+SYSMFG=1,\"my_ns\",\"answer\"\r\n", "+SYSMFG:\"my_ns\",\"answer\",4,3,-42\r\nOK\r\n"),
            ("AT+SYSMFG=2,\"my_ns\",\"answer\",1,256\r\n", "\r\nERROR\r\n"),
            ("AT+SYSMFG=2,\"my_ns\",\"note\",7,5\r\n", "\r\nOK\r\n\r\n>"),
            ("hello", "\r\nOK\r\n"),
            ("AT+SYSMFG=1,\"my_ns\",\"note\"\r\n", "+SYSMFG:\"my_ns\",\"note\",7,5,hello\r\nOK\r\n"),
            ("AT+SYSMFG=0,\"my_ns\",\"note\"\r\n", "\r\nOK\r\n"),
            ("AT+SYSMFG=0,\"my_ns\"\r\n", "\r\nOK\r\n"),
            ("AT+SYSMFG=1,\"my_ns\"\r\n", "\r\nERROR\r\n"),
        ],
    );
}

#[test]
fn mfg_nvs_survives_a_restart_and_erase_empties_it() {
    let flash = esp_aws::sim::device::SharedFlash::in_memory(esp_aws::sim::flash::Flash::factory(
        Generation::V4_1,
    ));
    let mut sim = Sim::boot_with(builder(Generation::V4_1).flash(flash.clone()));
    sim.echo_off();
    run(
        &mut sim,
        &[
            (
                "AT+SYSMFG=2,\"client_ca\",\"client_ca.0\",8,3\r\n",
                "\r\nOK\r\n\r\n>",
            ),
            ("PEM", "\r\nOK\r\n"),
        ],
    );
    // A new module on the same flash: the key is still there.
    let mut sim = Sim::boot_with(builder(Generation::V4_1).flash(flash.clone()));
    sim.echo_off();
    run(
        &mut sim,
        &[
            (
                "AT+SYSMFG=1,\"client_ca\",\"client_ca.0\"\r\n",
                "+SYSMFG:\"client_ca\",\"client_ca.0\",8,3,PEM\r\nOK\r\n",
            ),
            // Erasing the whole partition erases every namespace (and stays erased).
            ("AT+SYSFLASH=0,\"mfg_nvs\"\r\n", "\r\nOK\r\n"),
            ("AT+SYSMFG?\r\n", "\r\nOK\r\n"),
        ],
    );
    let mut sim = Sim::boot_with(builder(Generation::V4_1).flash(flash));
    sim.echo_off();
    run(&mut sim, &[("AT+SYSMFG?\r\n", "\r\nOK\r\n")]);
}

#[test]
fn sysflash_rules() {
    for generation in [Generation::V1_1_3, Generation::V2_4] {
        let mut sim = Sim::boot(generation);
        sim.echo_off();
        let code = |c: &str| {
            if generation == Generation::V1_1_3 {
                format!("ERR CODE:0x{c}\r\n\r\nERROR\r\n")
            } else {
                "\r\nERROR\r\n".to_string()
            }
        };
        let steps: Vec<(String, String)> = vec![
            (
                "AT+SYSFLASH=0,\"client_cert\",0,4096\r\n".into(),
                "\r\nOK\r\n".into(),
            ),
            // Erase ranges must be 4 KiB aligned.
            (
                "AT+SYSFLASH=0,\"client_cert\",0,100\r\n".into(),
                code("010a0001"),
            ),
            (
                "AT+SYSFLASH=0,\"client_cert\",2048,4096\r\n".into(),
                code("010a0001"),
            ),
            ("AT+SYSFLASH=0,\"nope\"\r\n".into(), code("010a0000")),
            // fatfs is type data: out of reach for 1.1.3's type+name lookup.
            (
                "AT+SYSFLASH=2,\"fatfs\",0,1\r\n".into(),
                if generation == Generation::V1_1_3 {
                    code("010a0000")
                } else {
                    "+SYSFLASH:1,\u{ff}\r\nOK\r\n".into()
                },
            ),
            (
                "AT+SYSFLASH=1,\"client_cert\",0\r\n".into(),
                code("01060000"),
            ),
            // Bare prompt, then exactly <length> bytes.
            ("AT+SYSFLASH=1,\"client_cert\",0,4\r\n".into(), ">".into()),
            ("\u{f0}\u{0f}".into(), "".into()),
            ("AB".into(), "\r\nOK\r\n".into()),
        ];
        for (input, want) in &steps {
            let input: Vec<u8> = input.chars().map(|c| c as u32 as u8).collect();
            let want: Vec<u8> = want.chars().map(|c| c as u32 as u8).collect();
            assert_bytes!(sim.send(&input), want);
        }
        // No implicit erase: a second write ANDs with what is there.
        assert_bytes!(sim.cmd("AT+SYSFLASH=1,\"client_cert\",0,4"), b">");
        assert_bytes!(sim.send(b"\xff\x0f\x43\xff"), b"\r\nOK\r\n");
        assert_bytes!(
            sim.cmd("AT+SYSFLASH=2,\"client_cert\",0,6"),
            b"+SYSFLASH:6,\xf0\x0f\x41\x42\xff\xff\r\nOK\r\n"
        );
        // The range check reports but does not stop the prompt; the write then fails.
        let range = if generation == Generation::V1_1_3 {
            "ERR CODE:0x01070000\r\n>"
        } else {
            ">"
        };
        assert_bytes!(sim.cmd("AT+SYSFLASH=1,\"client_cert\",8190,4"), range);
        assert_bytes!(sim.send(b"WXYZ"), code("010a0003"));
        assert_bytes!(
            sim.cmd("AT+SYSFLASH=2,\"client_cert\",8190,4"),
            code("01070000")
        );
    }
}

#[test]
fn sysflash_write_of_the_fixture_bins_reads_back() {
    let mut sim = Sim::boot(Generation::V1_1_3);
    sim.echo_off();
    let cert = fixture("cert_rsa.bin");
    sim.sysflash_write("client_cert", &cert);
    let mut want = format!("+SYSFLASH:{},", cert.len()).into_bytes();
    want.extend_from_slice(&cert);
    want.extend_from_slice(b"\r\nOK\r\n");
    assert_bytes!(
        sim.cmd(&format!("AT+SYSFLASH=2,\"client_cert\",0,{}", cert.len())),
        want
    );
    let addr = 0x2a000;
    assert_eq!(
        sim.dev
            .flash()
            .read(|f| f.read(addr, cert.len()).unwrap().to_vec()),
        cert
    );
}

#[test]
fn busy_while_a_command_runs() {
    for (generation, busy) in [
        (
            Generation::V1_1_3,
            "ERR CODE:0x010b0000\r\n\r\nbusy p...\r\n",
        ),
        (Generation::V2_4, "\r\nbusy p...\r\n"),
        (Generation::V4_1, "\r\nbusy p...\r\n"),
    ] {
        let mut sim = Sim::boot(generation);
        sim.echo_off();
        // Joining takes simulated time; input meanwhile is refused.
        assert_bytes!(
            sim.cmd("AT+CWJAP=\"esp-aws-sim\",\"esp-aws-sim\""),
            b"WIFI DISCONNECT\r\n"
        );
        assert_bytes!(sim.cmd("AT"), busy);
        assert_bytes!(
            sim.advance(Duration::from_millis(1000)),
            b"WIFI CONNECTED\r\n"
        );
        assert_bytes!(
            sim.advance(Duration::from_millis(500)),
            b"WIFI GOT IP\r\n\r\nOK\r\n"
        );
        assert_bytes!(sim.cmd("AT"), b"\r\nOK\r\n");
        // A wrong password.
        assert_bytes!(
            sim.cmd("AT+CWJAP=\"esp-aws-sim\",\"nope\""),
            b"WIFI DISCONNECT\r\n"
        );
        assert_bytes!(
            sim.advance(Duration::from_secs(2)),
            b"+CWJAP:2\r\n\r\nERROR\r\n"
        );
        assert_bytes!(sim.cmd("AT+CWJAP?"), b"\r\nOK\r\n");
        assert_bytes!(sim.cmd("AT+CIPSTATUS"), b"STATUS:5\r\n\r\nOK\r\n");
        // A command glued behind one that runs for a while: refused as busy.
        assert_bytes!(sim.send(b"AT+CWJAP=\"other\",\"x\"\r\nAT\r\n"), busy);
        assert_bytes!(
            sim.advance(Duration::from_secs(2)),
            b"+CWJAP:3\r\n\r\nERROR\r\n"
        );
        // AT+RST still gets through.
        assert_bytes!(sim.cmd("AT+CWJAP=\"esp-aws-sim\",\"esp-aws-sim\""), b"");
        assert_bytes!(sim.cmd("AT+RST"), b"\r\nWill force to restart!!!\r\n");
        assert_bytes!(
            sim.advance(Duration::from_secs(1)),
            b"\r\nready\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n"
        );
    }
}

#[test]
fn restart_restores_echo_and_ram_settings() {
    let mut sim = Sim::boot(Generation::V2_4);
    run(
        &mut sim,
        &[
            ("ATE0\r\n", "ATE0\r\n\r\nOK\r\n"),
            ("AT+CIPMUX=1\r\n", "\r\nOK\r\n"),
            ("AT+SYSLOG=1\r\n", "\r\nOK\r\n"),
            ("AT+CIPSSLCCONF=0,2,0,0\r\n", "NO CA FOUND\r\n\r\nOK\r\n"),
            ("AT+RST\r\n", "\r\nOK\r\n"),
            // Input while rebooting is lost.
            ("AT\r\n", ""),
        ],
    );
    assert_bytes!(
        sim.advance(Duration::from_millis(300)),
        b"\r\nready\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n"
    );
    run(
        &mut sim,
        &[
            ("AT\r\n", "AT\r\n\r\nOK\r\n"),
            ("ATE0\r\n", "ATE0\r\n\r\nOK\r\n"),
            ("AT+CIPMUX?\r\n", "+CIPMUX:0\r\n\r\nOK\r\n"),
            ("AT+SYSLOG?\r\n", "+SYSLOG:0\r\n\r\nOK\r\n"),
            // NVS-backed: survives.
            ("AT+CIPSSLCCONF?\r\n", "+CIPSSLCCONF:0,2,0,0\r\n\r\nOK\r\n"),
            // Factory reset clears NVS and reboots; Wi-Fi is forgotten too.
            ("AT+RESTORE\r\n", "\r\nOK\r\n"),
        ],
    );
    assert_bytes!(sim.advance(Duration::from_millis(300)), b"\r\nready\r\n");
    sim.echo_off();
    run(
        &mut sim,
        &[
            ("AT+CIPSSLCCONF?\r\n", "+CIPSSLCCONF:0,0,0,0\r\n\r\nOK\r\n"),
            ("AT+CWJAP?\r\n", "\r\nOK\r\n"),
            ("AT+CIPSTART=\"SSL\",\"a.example\",443\r\n", "\r\nERROR\r\n"),
        ],
    );
    assert_eq!(sim.dev.take_log().last().map(String::as_str), Some("no ip"));
}

#[test]
fn sntp_sync_and_time_updated() {
    for generation in Generation::ALL {
        let mut sim = Sim::boot(generation);
        sim.echo_off();
        assert_bytes!(sim.cmd("AT+CIPSNTPCFG=1,0,\"pool.ntp.org\""), b"\r\nOK\r\n");
        // OK means configured, not synced.
        assert_bytes!(sim.advance(Duration::from_millis(1999)), b"");
        let urc: &[u8] = if generation == Generation::V4_1 {
            b"+TIME_UPDATED\r\n"
        } else {
            b""
        };
        assert_bytes!(sim.advance(Duration::from_millis(1)), urc);
        let nl = if generation == Generation::V1_1_3 {
            "\n"
        } else {
            ""
        };
        assert_bytes!(
            sim.cmd("AT+CIPSNTPTIME?"),
            format!("+CIPSNTPTIME:Tue Dec  1 00:00:03 2026{nl}\r\nOK\r\n")
        );
        // The RTC keeps running across a software reset.
        sim.cmd("AT+RST");
        sim.advance(Duration::from_secs(1));
        sim.echo_off();
        assert_bytes!(
            sim.cmd("AT+CIPSNTPTIME?"),
            format!("+CIPSNTPTIME:Tue Dec  1 00:00:04 2026{nl}\r\nOK\r\n")
        );
        assert_eq!(sim.dev.unix_time(sim.now), super::UTC_AT_POWER_ON + 4);
    }
}

#[test]
fn overlong_lines_are_refused() {
    let mut sim = Sim::boot(Generation::V1_1_3);
    sim.echo_off();
    let long = format!("AT+{}\r\n", "X".repeat(300));
    assert_bytes!(
        sim.send(long.as_bytes()),
        b"ERR CODE:0x01040000\r\n\r\nERROR\r\n"
    );
    assert_bytes!(sim.cmd("AT"), b"\r\nOK\r\n");
    // Written in pieces: one refusal, and the rest of the line is dropped with it.
    assert_bytes!(sim.send(&[b'A'; 200]), b"");
    assert_bytes!(
        sim.send(&[b'A'; 200]),
        b"ERR CODE:0x01040000\r\n\r\nERROR\r\n"
    );
    assert_bytes!(sim.send(&[b'A'; 200]), b"");
    assert_bytes!(sim.send(b"\r"), b"");
    assert_bytes!(sim.send(b"\n"), b"");
    assert_bytes!(sim.cmd("AT"), b"\r\nOK\r\n");
}

#[test]
fn device_never_asks_for_polls_when_idle() {
    let mut sim = Sim::boot(Generation::V2_4);
    let mut out = Vec::new();
    assert_eq!(sim.dev.poll(sim.now, &mut out), None);
    assert!(out.is_empty());
}

#[test]
fn hardware_reset_restarts_the_clock_and_rereads_nvs() {
    let mut sim = Sim::boot(Generation::V1_1_3);
    sim.echo_off();
    assert_bytes!(sim.cmd("AT+CIPSNTPCFG=1,0"), b"\r\nOK\r\n");
    sim.advance(Duration::from_secs(3));
    assert_eq!(sim.dev.unix_time(sim.now), super::UTC_AT_POWER_ON + 4);
    assert_bytes!(sim.cmd("AT+CIPSSLCCONF=0"), b"\r\nERROR\r\n");
    // Something else (the ROM bootloader) rewrites the flash, then EN is pulsed.
    sim.dev
        .flash()
        .modify(|f| f.erase(0x12000, 0xe000).unwrap());
    sim.dev.hardware_reset(sim.now);
    assert_bytes!(
        sim.advance(Duration::from_millis(300)),
        b"\r\nready\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n"
    );
    assert_eq!(sim.dev.unix_time(sim.now), 0);
    sim.echo_off();
    assert_bytes!(
        sim.cmd("AT+CIPSNTPTIME?"),
        b"+CIPSNTPTIME:Thu Jan  1 00:00:00 1970\n\r\nOK\r\n"
    );
    assert_bytes!(
        sim.cmd("AT+CIPSSLCCONF?"),
        b"+CIPSSLCCONF:0,0,0,0\r\n\r\nOK\r\n"
    );
}
