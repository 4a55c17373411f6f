//! The single integration-test binary: each topic lives in its own module.

mod aws_util;
mod peers;
mod sim_util;
mod util;

mod hermetic;
mod virtual_port;

mod pki;
mod pki_check;
mod pki_props;

mod at_digest;
mod at_session;
mod layers;
mod session_recovery;
mod shadow_client;

mod fault_soak;
mod interrupt_soak;

mod document_cli;
mod document_rules;
mod endpoint;
mod endpoint_cli;
mod endpoint_flood;
mod endpoint_mqtt;
mod endpoint_mqtt_peers;
mod endpoint_tls;
mod endpoint_util;
mod policy_endpoint;
mod sim_control;
mod sim_control_client;

mod sim_at;
mod sim_at_mqtt;
mod sim_wifi;
mod wifi_e2e;

mod esptool;
mod rom;
mod rom_loader;
mod rom_props;
mod rom_pty;

mod adversarial_cli;
mod classic_guide;
mod cli_conventions;
mod cli_from;
mod cli_misc;
mod demo;
mod doctor_e2e;
mod injection_e2e;
mod profiles;
mod provision_e2e;
mod shadow_e2e;
mod shadow_watch;
mod sim_cli;
mod sim_defaults;
mod sim_life;
mod trace_shape;
mod watch_soak;

mod flash_cli;
mod hostile_module;
mod keys_exposed;
mod mitm;
mod provision_lib;
mod provision_mqtt_slots;
mod provision_rom;
mod redaction;

mod net_codec;
mod net_peers;
mod net_ports;

mod aws_doctor;
mod aws_errors;
mod aws_moto;
mod aws_moto_register;
mod aws_refused;
mod aws_server_text;
mod aws_sim_profile;
mod aws_tls;
mod drivers_atcontrol;
mod mqtt_client;
mod mqtt_mosquitto;
mod mqtt_props;
mod props_config;
