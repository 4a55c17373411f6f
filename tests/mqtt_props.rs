//! The MQTT codec (`esp_aws::mqtt`) in property-test form, like `fuzz_props.rs` for the other
//! parsers: the decoder fed arbitrary bytes cut into arbitrary reads, and length fields up to
//! the largest MQTT can express, never panics and, drained, holds at most the start of one packet; every
//! packet the encoder accepts decodes back to itself, however the stream is cut; the
//! encoder never panics on hostile field values.
//!
//! Case count: `PROPTEST_CASES` (default [`DEFAULT_CASES`]).

use esp_aws::mqtt::packet::{encode_remaining_length, MAX_REMAINING_LENGTH};
use esp_aws::mqtt::{
    Connect, DecodeError, Decoder, Packet, Publish, QoS, Subscribe, SubscribeReturn, Will,
};
use proptest::prelude::*;

use crate::props_config::config;

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 1000;

/// Cuts `data` at `cuts` (taken modulo its length) into reads.
fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points
        .windows(2)
        .map(|w| data[w[0]..w[1]].to_vec())
        .collect()
}

/// Feeds `reads` to a decoder, collecting packets until the first error. Checks after every
/// read, once the packets are drained, that what is left is the start of one packet within
/// the maximum, and that an error drops the buffer and sticks.
fn run(reads: &[Vec<u8>], max: usize) -> (Vec<Packet>, Option<DecodeError>) {
    let mut d = Decoder::new(max);
    let mut packets = Vec::new();
    for read in reads {
        d.push(read);
        loop {
            match d.next_packet() {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(d.buffered(), 0, "an error drops the buffer");
                    d.push(b"\xc0\x00");
                    assert_eq!(d.next_packet(), Err(e.clone()), "the error sticks");
                    return (packets, Some(e));
                }
            }
        }
        // What is left is the start of one packet, shorter than its header plus the maximum.
        assert!(d.buffered() <= max + 5, "{} buffered", d.buffered());
    }
    (packets, None)
}

fn text() -> impl Strategy<Value = String> {
    // Mostly plain topic characters, with the ones MQTT treats specially.
    proptest::string::string_regex("[a-z0-9/]{0,12}|[a-z/+#$\u{0}é]{0,8}").unwrap()
}

fn topic() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9_$/-]{1,40}").unwrap()
}

fn filter() -> impl Strategy<Value = String> {
    proptest::string::string_regex("(([a-z0-9]{1,6}|\\+)/){0,4}([a-z0-9]{1,6}|\\+|#)").unwrap()
}

fn qos01() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]
}

fn id() -> impl Strategy<Value = u16> {
    1u16..=u16::MAX
}

/// Packets the encoder accepts.
fn valid_packet() -> impl Strategy<Value = Packet> {
    let connect = (
        proptest::string::string_regex("[a-zA-Z0-9_:-]{1,30}").unwrap(),
        any::<u16>(),
        any::<bool>(),
        proptest::option::of("[a-z]{0,10}"),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        proptest::option::of((
            topic(),
            proptest::collection::vec(any::<u8>(), 0..20),
            qos01(),
            any::<bool>(),
        )),
    )
        .prop_map(|(client_id, keep_alive, clean, user, pass, will)| {
            let username = user.or_else(|| pass.as_ref().map(|_| "u".to_string()));
            Packet::Connect(Connect {
                client_id,
                keep_alive,
                clean_session: clean,
                username,
                password: pass,
                will: will.map(|(topic, message, qos, retain)| Will {
                    topic,
                    message,
                    qos,
                    retain,
                }),
            })
        });
    let publish = (
        topic(),
        proptest::collection::vec(any::<u8>(), 0..600),
        qos01(),
        id(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(topic, payload, qos, id, retain, dup)| {
            Packet::Publish(Publish {
                topic,
                payload,
                qos,
                packet_id: if qos == QoS::AtMostOnce { 0 } else { id },
                retain,
                dup: dup && qos != QoS::AtMostOnce,
            })
        });
    let subscribe = (id(), proptest::collection::vec((filter(), qos01()), 1..10))
        .prop_map(|(packet_id, filters)| Packet::Subscribe(Subscribe { packet_id, filters }));
    let suback = (
        id(),
        proptest::collection::vec(
            prop_oneof![
                Just(SubscribeReturn::Failure),
                Just(SubscribeReturn::Granted(QoS::AtMostOnce)),
                Just(SubscribeReturn::Granted(QoS::AtLeastOnce)),
                Just(SubscribeReturn::Granted(QoS::ExactlyOnce)),
            ],
            1..10,
        ),
    )
        .prop_map(|(packet_id, returns)| Packet::SubAck { packet_id, returns });
    let unsubscribe = (id(), proptest::collection::vec(filter(), 1..5))
        .prop_map(|(packet_id, filters)| Packet::Unsubscribe { packet_id, filters });
    prop_oneof![
        connect,
        (any::<bool>(), 0u8..=5).prop_map(|(s, rc)| Packet::ConnAck {
            session_present: s && rc == 0,
            return_code: rc
        }),
        publish,
        id().prop_map(Packet::PubAck),
        id().prop_map(Packet::PubRec),
        id().prop_map(Packet::PubRel),
        id().prop_map(Packet::PubComp),
        subscribe,
        suback,
        unsubscribe,
        id().prop_map(Packet::UnsubAck),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

/// Packets with any field values, valid or not.
fn any_packet() -> impl Strategy<Value = Packet> {
    let qos = prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ];
    prop_oneof![
        (
            text(),
            any::<u16>(),
            any::<bool>(),
            proptest::option::of(text()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            proptest::option::of((text(), qos.clone()))
        )
            .prop_map(
                |(client_id, keep_alive, clean_session, username, password, will)| {
                    Packet::Connect(Connect {
                        client_id,
                        keep_alive,
                        clean_session,
                        username,
                        password,
                        will: will.map(|(topic, qos)| Will {
                            topic,
                            message: Vec::new(),
                            qos,
                            retain: false,
                        }),
                    })
                }
            ),
        (any::<bool>(), any::<u8>()).prop_map(|(session_present, return_code)| {
            Packet::ConnAck {
                session_present,
                return_code,
            }
        }),
        (
            text(),
            qos.clone(),
            any::<u16>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(
                |(topic, qos, packet_id, retain, dup)| Packet::Publish(Publish {
                    topic,
                    payload: b"x".to_vec(),
                    qos,
                    packet_id,
                    retain,
                    dup,
                })
            ),
        (any::<u16>(), proptest::collection::vec((text(), qos), 0..4))
            .prop_map(|(packet_id, filters)| Packet::Subscribe(Subscribe { packet_id, filters })),
        (any::<u16>(), proptest::collection::vec(text(), 0..4))
            .prop_map(|(packet_id, filters)| Packet::Unsubscribe { packet_id, filters }),
        any::<u16>().prop_map(Packet::PubAck),
    ]
}

/// A Remaining Length field: any value up to MQTT's maximum, one byte too many, or bytes
/// that never end.
fn length_field() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0usize..=MAX_REMAINING_LENGTH).prop_map(|n| {
            let mut out = Vec::new();
            encode_remaining_length(&mut out, n);
            out
        }),
        proptest::collection::vec(128u8..=255, 1..8),
        Just(vec![0xff, 0xff, 0xff, 0x7f]),
    ]
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    #[test]
    fn decoder_survives_arbitrary_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        max in prop_oneof![Just(0usize), 1usize..300, Just(128 * 1024)],
    ) {
        let (packets, _) = run(&chunks(&data, &cuts), max);
        for p in packets {
            // Whatever decoded re-encodes to a packet that decodes the same (QoS 2 and
            // the broker-only CONNACK codes aside, which encoding refuses).
            if let Ok(bytes) = p.encode() {
                let (again, err) = run(&[bytes], max.max(1 << 20));
                prop_assert_eq!(err, None);
                prop_assert_eq!(again, vec![p]);
            }
        }
    }

    #[test]
    fn valid_packet_bytes_mutated_never_panic(
        packets in proptest::collection::vec(valid_packet(), 1..6),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        // Bytes close to valid reach deeper into the packet decoders than random ones.
        let mut data: Vec<u8> = packets.iter().flat_map(|p| p.encode().unwrap()).collect();
        for (at, x) in flips {
            let i = at % data.len();
            data[i] ^= x;
        }
        run(&chunks(&data, &cuts), 4096);
    }

    #[test]
    fn length_fields_over_the_maximum_or_too_long_are_refused_at_once(
        first in 0x10u8..0xf0,
        length in length_field(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        max in 0usize..100_000,
    ) {
        let mut data = vec![first];
        data.extend_from_slice(&length);
        data.extend_from_slice(&tail);
        let mut d = Decoder::new(max);
        d.push(&data);
        let result = d.next_packet();
        // The length the field announces, if it ends within MQTT's four bytes.
        let mut announced = None;
        let mut value = 0usize;
        for (i, b) in data[1..].iter().take(4).enumerate() {
            value |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                announced = Some(value);
                break;
            }
        }
        match announced {
            Some(n) if n > max => {
                prop_assert_eq!(result, Err(DecodeError::TooLarge { length: n, max }));
            }
            None if data.len() >= 5 => prop_assert_eq!(result, Err(DecodeError::BadLength)),
            _ => {}
        }
    }

    #[test]
    fn round_trip_however_the_stream_is_cut(
        packets in proptest::collection::vec(valid_packet(), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let data: Vec<u8> = packets.iter().flat_map(|p| p.encode().unwrap()).collect();
        let (decoded, err) = run(&chunks(&data, &cuts), 4096);
        prop_assert_eq!(err, None);
        prop_assert_eq!(decoded, packets);
    }

    #[test]
    fn encoder_never_panics_and_what_it_sends_decodes(packet in any_packet()) {
        let mut out = b"prefix".to_vec();
        match packet.encode_into(&mut out) {
            Ok(()) => {
                let (decoded, err) = run(&[out[6..].to_vec()], 1 << 20);
                prop_assert_eq!(err, None, "{:?}", packet);
                prop_assert_eq!(decoded, vec![packet]);
            }
            Err(e) => {
                prop_assert_eq!(&out, b"prefix");
                prop_assert!(!e.to_string().contains('\n'));
            }
        }
    }

    #[test]
    fn packet_decode_never_panics(first in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Packet::decode(first, &body);
    }
}
