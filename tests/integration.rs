//! The single integration-test binary: each topic lives in its own module.

mod peers;
mod sim_util;
mod util;
mod virtual_port;

mod pki;
mod pki_check;
mod pki_props;

mod at_digest;
mod at_session;
mod session_recovery;

mod fault_soak;
mod interrupt_soak;

mod document_cli;
mod document_rules;
mod endpoint;
mod endpoint_cli;
mod endpoint_flood;
mod endpoint_tls;
mod endpoint_util;

mod sim_at;
mod sim_wifi;
mod wifi_e2e;

mod esptool;
mod rom;
mod rom_loader;
mod rom_props;
mod rom_pty;

mod adversarial_cli;
mod classic_guide;
mod cli_misc;
mod demo;
mod doctor_e2e;
mod injection_e2e;
mod profiles;
mod provision_e2e;
mod shadow_e2e;
mod sim_cli;

mod flash_cli;
mod hostile_module;
mod keys_exposed;
mod mitm;
mod provision_rom;

mod net_codec;
mod net_peers;
mod net_ports;

mod mqtt_mosquitto;
mod mqtt_props;
