//! Links and the network: an open TLS link closes when the access point goes away, and no
//! new one opens until the module has rejoined.

use std::time::Duration;

use esp_aws::firmware::Generation;
use esp_aws::sim::at_firmware::WifiSwitch;

use super::builder;
use super::server::{ServerPki, ENDPOINT};
use super::tls_flow::{cipstart, fixture_net, provisioned_with};
use crate::assert_bytes;

#[test]
fn an_open_link_closes_when_the_network_goes_and_none_opens_without_it() {
    for generation in Generation::ALL {
        let pki = ServerPki::new(ENDPOINT);
        let switch = WifiSwitch::default();
        let mut sim = provisioned_with(
            generation,
            builder(generation)
                .network(fixture_net(&pki))
                .wifi_switch(switch.clone()),
            &pki.ca_bin(),
        );
        assert_bytes!(cipstart(&mut sim, 8443), b"CONNECT\r\n\r\nOK\r\n");
        switch.set_up(false);
        assert_bytes!(
            sim.advance(Duration::from_millis(10)),
            b"WIFI DISCONNECT\r\nCLOSED\r\n"
        );
        assert_bytes!(cipstart(&mut sim, 8443), b"\r\nERROR\r\n");
        assert!(
            sim.dev.take_log().iter().any(|l| l == "no ip"),
            "{generation}"
        );
        switch.set_up(true);
        assert_bytes!(
            sim.advance(Duration::from_millis(10)),
            b"WIFI CONNECTED\r\nWIFI GOT IP\r\n"
        );
        assert_bytes!(cipstart(&mut sim, 8443), b"CONNECT\r\n\r\nOK\r\n");
    }
}
