//! MQTT 3.1.1, sans-I/O: the packets a client and a broker exchange, their encoder, an
//! incremental decoder, AWS IoT's broker limits, and the Device Shadow topics.
//!
//! The host speaks MQTT through the module's TLS socket (`AT+CIPSTART="SSL"`, `AT+CIPSEND`,
//! `+IPD`), so the bytes arrive in whatever pieces the module's `+IPD` frames cut them into:
//! [`Decoder`] takes arbitrary chunks and yields whole packets. It is bounded: a packet
//! whose announced length exceeds the decoder's maximum is an error as soon as its header is
//! read, before anything is allocated for it, and nothing it is given makes it panic.
//!
//! The codec does no I/O and keeps no time: the driver ([`client`]) owns the link and the
//! keep-alive clock.
//!
//! | module | what | spec |
//! |---|---|---|
//! | [`packet`] | the 14 control packets, encoding, decoding one packet | OASIS MQTT 3.1.1 (2014), §2–§3 |
//! | [`decoder`] | reassembling packets from a byte stream | §2.2.3 (Remaining Length) |
//! | [`limits`] | what AWS IoT Core refuses, checked before sending | AWS IoT Core quotas, reserved topics |
//! | [`shadow`] | `$aws/things/<thing>/shadow[/name/<name>]/…` topics, built and parsed | `aws-iot-shadow.md` §5, AWS "Device Shadow MQTT topics" |
//! | [`client`] | the host's MQTT client over a [`client::Link`] (the module's TLS link through `at::session`, or a scripted one): keep-alive, QoS 0/1, reconnection with resubscription, AWS limits checked first | §3, §4.4; `account-mqtt-nvs-fleet.md` §2 |
//! | [`shadow_client`] | shadow get/update/delete over MQTT, answers matched by clientToken | AWS "Device Shadow MQTT topics" |
//!
//! The codec files (`packet`, `decoder`, `limits`, `shadow`) import nothing from `at`, so
//! that the simulated endpoint can use them; `client` and `shadow_client` are host-side.
//!
//! Why our own codec and not a crate (checked December 2026): `mqttbytes` 0.6 (2021) is no
//! longer published (rumqttc carries it as an internal module); `mqtt-protocol` 0.12 reads
//! from `io::Read` (no incremental decoder) and allocates `vec![0; remaining_length]` from
//! the length field before reading the body; `mqttrs` 0.4 (2021) and `mqtt-format` 0.4
//! (nom, futures) are unmaintained or pull more than they give. MQTT 3.1.1 is small; its
//! decoder is fuzzed here like the other parsers (`tests/mqtt_props.rs`).

pub mod client;
pub mod decoder;
pub mod limits;
pub mod packet;
pub mod shadow;
pub mod shadow_client;

pub use decoder::Decoder;
pub use packet::{
    Connect, ConnectRefusal, DecodeError, EncodeError, Packet, Publish, QoS, Subscribe,
    SubscribeReturn, Will,
};
