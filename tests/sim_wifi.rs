//! The virtual module's Wi-Fi, byte for byte, on every generation: joining and its errors,
//! the station queries, and what does not happen without a network (SNTP, name resolution,
//! links).

use std::time::Duration;

use esp_aws::firmware::Generation;
use esp_aws::sim::at_firmware::{TcpNetwork, WifiSwitch};

use crate::assert_bytes;
use crate::sim_at::{builder, Sim};

/// A module that powers on with no saved network, echo off.
fn unjoined(generation: Generation) -> Sim {
    let network = TcpNetwork::new().resolve("endpoint.example", "10.1.2.3".parse().unwrap());
    let mut sim = Sim::power_on(builder(generation).network(network).wifi_joined(false));
    assert_bytes!(sim.advance(Duration::from_secs(1)), b"\r\nready\r\n");
    sim.echo_off();
    sim
}

/// Joins the simulated AP with the right password, checking every byte.
fn join(sim: &mut Sim) {
    assert_bytes!(sim.cmd("AT+CWJAP=\"esp-aws-sim\",\"esp-aws-sim\""), b"");
    assert_bytes!(
        sim.advance(Duration::from_millis(1000)),
        b"WIFI CONNECTED\r\n"
    );
    assert_bytes!(
        sim.advance(Duration::from_millis(500)),
        b"WIFI GOT IP\r\n\r\nOK\r\n"
    );
}

fn cipdomain_ok(generation: Generation) -> &'static [u8] {
    if generation == Generation::V1_1_3 {
        b"+CIPDOMAIN:10.1.2.3\r\n\r\nOK\r\n"
    } else {
        b"+CIPDOMAIN:\"10.1.2.3\"\r\n\r\nOK\r\n"
    }
}

const NO_IP: &[u8] =
    b"+CIPSTA:ip:\"0.0.0.0\"\r\n+CIPSTA:gateway:\"0.0.0.0\"\r\n+CIPSTA:netmask:\"0.0.0.0\"\r\n\r\nOK\r\n";
const HAS_IP: &[u8] = b"+CIPSTA:ip:\"192.168.4.2\"\r\n+CIPSTA:gateway:\"192.168.4.1\"\r\n+CIPSTA:netmask:\"255.255.255.0\"\r\n\r\nOK\r\n";

#[test]
fn without_wifi_there_is_no_ip_no_name_and_no_link() {
    for generation in Generation::ALL {
        let mut sim = unjoined(generation);
        let v2 = generation != Generation::V1_1_3;
        assert_bytes!(sim.cmd("AT+CWJAP?"), b"\r\nOK\r\n");
        if v2 {
            assert_bytes!(sim.cmd("AT+CWSTATE?"), b"+CWSTATE:0,\"\"\r\n\r\nOK\r\n");
        }
        assert_bytes!(sim.cmd("AT+CIPSTA?"), NO_IP);
        assert_bytes!(
            sim.cmd("AT+CIFSR"),
            b"+CIFSR:STAIP,\"0.0.0.0\"\r\n+CIFSR:STAMAC,\"24:0a:c4:00:00:01\"\r\n\r\nOK\r\n"
        );
        assert_bytes!(sim.cmd("AT+CIPSTATUS"), b"STATUS:5\r\n\r\nOK\r\n");
        // Name resolution and links fail with a bare ERROR; the reason is on the log port.
        assert_bytes!(
            sim.cmd("AT+CIPDOMAIN=\"endpoint.example\""),
            b"\r\nERROR\r\n"
        );
        assert!(
            sim.dev.take_log().iter().any(|l| l.contains("DNS Fail")),
            "{generation}"
        );
        assert_bytes!(
            sim.cmd("AT+CIPSTART=\"SSL\",\"endpoint.example\",8443"),
            b"\r\nERROR\r\n"
        );
        // SNTP is accepted but never syncs while there is no network.
        assert_bytes!(sim.cmd("AT+CIPSNTPCFG=1,0"), b"\r\nOK\r\n");
        sim.advance(Duration::from_secs(10));
        assert!(
            sim.dev.unix_time(sim.now) < 1_000_000,
            "{generation}: the clock synced without a network"
        );

        // Joined, everything works, and the waiting SNTP client syncs.
        join(&mut sim);
        if v2 {
            assert_bytes!(
                sim.cmd("AT+CWSTATE?"),
                b"+CWSTATE:2,\"esp-aws-sim\"\r\n\r\nOK\r\n"
            );
        }
        assert_bytes!(sim.cmd("AT+CIPSTA?"), HAS_IP);
        assert_bytes!(
            sim.cmd("AT+CIPDOMAIN=\"endpoint.example\""),
            cipdomain_ok(generation)
        );
        // A name outside the simulator's table does not resolve.
        assert_bytes!(
            sim.cmd("AT+CIPDOMAIN=\"elsewhere.example\""),
            b"\r\nERROR\r\n"
        );
        let synced = sim.advance(Duration::from_secs(3));
        if generation == Generation::V4_1 {
            assert_bytes!(synced, b"+TIME_UPDATED\r\n");
        }
        assert!(
            sim.dev.unix_time(sim.now) > 1_700_000_000,
            "{generation}: the clock did not sync once joined"
        );
    }
}

#[test]
fn sntp_does_not_sync_after_the_module_leaves_its_network() {
    for generation in Generation::ALL {
        // Booted joined (the default), then told to leave.
        let mut sim = Sim::boot(generation);
        sim.echo_off();
        assert_bytes!(sim.cmd("AT+CWQAP"), b"WIFI DISCONNECT\r\n\r\nOK\r\n");
        assert_bytes!(sim.cmd("AT+CIPSNTPCFG=1,0"), b"\r\nOK\r\n");
        sim.advance(Duration::from_secs(10));
        assert!(
            sim.dev.unix_time(sim.now) < 1_000_000,
            "{generation}: the clock synced without a network"
        );
        if generation != Generation::V1_1_3 {
            assert_bytes!(
                sim.cmd("AT+CWSTATE?"),
                b"+CWSTATE:4,\"esp-aws-sim\"\r\n\r\nOK\r\n"
            );
        }
    }
}

#[test]
fn join_errors_have_their_codes() {
    for generation in Generation::ALL {
        let mut sim = unjoined(generation);
        // Wrong password: +CWJAP:2 then ERROR (ESP32 firmware prints ERROR, not the
        // ESP8266 NonOS FAIL).
        assert_bytes!(sim.cmd("AT+CWJAP=\"esp-aws-sim\",\"wrong\""), b"");
        assert_bytes!(
            sim.advance(Duration::from_secs(2)),
            b"+CWJAP:2\r\n\r\nERROR\r\n"
        );
        // Unknown SSID: 3, AP not found.
        assert_bytes!(sim.cmd("AT+CWJAP=\"no-such-ap\",\"x\""), b"");
        assert_bytes!(
            sim.advance(Duration::from_secs(2)),
            b"+CWJAP:3\r\n\r\nERROR\r\n"
        );
        if generation != Generation::V1_1_3 {
            assert_bytes!(
                sim.cmd("AT+CWSTATE?"),
                b"+CWSTATE:4,\"no-such-ap\"\r\n\r\nOK\r\n"
            );
        }
        assert_bytes!(sim.cmd("AT+CIPSTA?"), NO_IP);
        // A station-less mode refuses to join.
        assert_bytes!(sim.cmd("AT+CWMODE=2"), b"\r\nOK\r\n");
        assert_bytes!(sim.cmd("AT+CWMODE?"), b"+CWMODE:2\r\n\r\nOK\r\n");
        assert_bytes!(
            sim.cmd("AT+CWJAP=\"esp-aws-sim\",\"esp-aws-sim\""),
            b"\r\nERROR\r\n"
        );
        assert_bytes!(sim.cmd("AT+CWMODE=1"), b"\r\nOK\r\n");
        join(&mut sim);
    }
}

#[test]
fn the_access_point_going_away_drops_the_network_and_it_comes_back() {
    for generation in Generation::ALL {
        let switch = WifiSwitch::default();
        let mut sim = Sim::boot_with(builder(generation).wifi_switch(switch.clone()));
        sim.echo_off();
        switch.set_up(false);
        assert_bytes!(
            sim.advance(Duration::from_millis(10)),
            b"WIFI DISCONNECT\r\n"
        );
        assert_bytes!(sim.cmd("AT+CWJAP?"), b"\r\nOK\r\n");
        assert_bytes!(sim.cmd("AT+CIPSTA?"), NO_IP);
        // SNTP waits for the network.
        assert_bytes!(sim.cmd("AT+CIPSNTPCFG=1,0"), b"\r\nOK\r\n");
        sim.advance(Duration::from_secs(10));
        assert!(sim.dev.unix_time(sim.now) < 1_000_000, "{generation}");
        // Back on: the saved network is joined again, and SNTP syncs.
        switch.set_up(true);
        assert_bytes!(
            sim.advance(Duration::from_millis(10)),
            b"WIFI CONNECTED\r\nWIFI GOT IP\r\n"
        );
        sim.advance(Duration::from_secs(3));
        assert!(sim.dev.unix_time(sim.now) > 1_700_000_000, "{generation}");
        // While it is off, a join finds no AP.
        switch.set_up(false);
        assert_bytes!(
            sim.advance(Duration::from_millis(10)),
            b"WIFI DISCONNECT\r\n"
        );
        assert_bytes!(sim.cmd("AT+CWJAP=\"esp-aws-sim\",\"esp-aws-sim\""), b"");
        assert_bytes!(
            sim.advance(Duration::from_secs(2)),
            b"+CWJAP:3\r\n\r\nERROR\r\n"
        );
    }
}

#[test]
fn a_module_that_left_its_network_stays_off_it() {
    for generation in Generation::ALL {
        let switch = WifiSwitch::default();
        let mut sim = Sim::boot_with(builder(generation).wifi_switch(switch.clone()));
        sim.echo_off();
        assert_bytes!(sim.cmd("AT+CWQAP"), b"WIFI DISCONNECT\r\n\r\nOK\r\n");
        switch.set_up(false);
        sim.advance(Duration::from_millis(10));
        switch.set_up(true);
        assert_bytes!(sim.advance(Duration::from_secs(2)), b"");
        // The saved network is still joined at the next boot.
        assert_bytes!(sim.cmd("AT+RST"), b"\r\nOK\r\n");
        assert_bytes!(
            sim.advance(Duration::from_secs(1)),
            b"\r\nready\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n"
        );
    }
}

#[test]
fn a_join_is_saved_and_survives_a_reboot() {
    for generation in Generation::ALL {
        let mut sim = unjoined(generation);
        assert_bytes!(sim.cmd("AT+RST"), b"\r\nOK\r\n");
        assert_bytes!(sim.advance(Duration::from_secs(1)), b"\r\nready\r\n");
        sim.echo_off();
        join(&mut sim);
        assert_bytes!(sim.cmd("AT+RST"), b"\r\nOK\r\n");
        assert_bytes!(
            sim.advance(Duration::from_secs(1)),
            b"\r\nready\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n"
        );
    }
}
