//! The RFC 2217 / Telnet codec on its own (IAC doubling, subnegotiations, negotiation
//! answers, input split anywhere) and the `--port` name parser for network ports.

use esp_aws::transport::net::{PortSpec, Scheme};
use esp_aws::transport::rfc2217::{
    self, command, Client, Decoder, Event, Notice, Verb, BINARY, COM_PORT_OPTION, DO, DONT, ECHO,
    IAC, SB, SE, SGA, WILL, WONT,
};
use esp_aws::transport::OpenError;
use proptest::prelude::*;

fn decode_in_chunks(input: &[u8], chunk: usize) -> (Vec<u8>, Vec<(usize, Event)>) {
    let mut decoder = Decoder::new();
    let mut data = Vec::new();
    let mut events = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        decoder.feed(piece, &mut data, &mut events);
    }
    (data, events)
}

#[test]
fn data_0xff_is_doubled_on_the_way_out_and_undoubled_on_the_way_in() {
    let mut out = Vec::new();
    rfc2217::escape(&[0x01, 0xFF, 0xFF, 0x02], &mut out);
    assert_eq!(out, [0x01, IAC, IAC, IAC, IAC, 0x02]);
    let (data, events) = decode_in_chunks(&out, 1);
    assert_eq!(data, [0x01, 0xFF, 0xFF, 0x02]);
    assert!(events.is_empty());
}

#[test]
fn a_baud_rate_with_an_0xff_byte_is_escaped_inside_the_subnegotiation() {
    let mut out = Vec::new();
    rfc2217::com_port(
        command::SET_BAUDRATE,
        &0x0001_C2FFu32.to_be_bytes(),
        &mut out,
    );
    assert_eq!(
        out,
        [
            IAC,
            SB,
            COM_PORT_OPTION,
            1,
            0x00,
            0x01,
            0xC2,
            IAC,
            IAC,
            IAC,
            SE
        ]
    );
    // The server's echo of it, split at every byte, decodes to that rate.
    let mut reply = Vec::new();
    rfc2217::com_port(101, &0x0001_C2FFu32.to_be_bytes(), &mut reply);
    let mut client = Client::new();
    let (mut data, mut answer, mut notices) = (Vec::new(), Vec::new(), Vec::new());
    for b in &reply {
        client.receive(
            std::slice::from_ref(b),
            &mut data,
            &mut answer,
            &mut notices,
        );
    }
    assert!(data.is_empty());
    assert_eq!(notices, [(0, Notice::Baud(0x0001_C2FF))]);
}

#[test]
fn subnegotiations_and_commands_are_taken_out_of_the_data_in_order() {
    let mut input = b"ab".to_vec();
    input.extend([IAC, SB, COM_PORT_OPTION, 107, 0x30, IAC, SE]); // NOTIFY-MODEMSTATE
    input.extend(b"cd");
    input.extend([IAC, 241]); // NOP
    input.extend([IAC, WILL, SGA]);
    input.extend(b"e");
    for chunk in 1..=input.len() {
        let (data, events) = decode_in_chunks(&input, chunk);
        assert_eq!(data, b"abcde", "chunk {chunk}");
        assert_eq!(
            events,
            [
                (2, Event::Subnegotiation(vec![COM_PORT_OPTION, 107, 0x30])),
                (4, Event::Command(241)),
                (4, Event::Negotiate(Verb::Will, SGA)),
            ],
            "chunk {chunk}"
        );
    }
}

#[test]
fn an_oversized_subnegotiation_is_dropped_whole_and_the_stream_goes_on() {
    let mut input = vec![IAC, SB, COM_PORT_OPTION, 100];
    input.extend(std::iter::repeat_n(b'x', rfc2217::MAX_SUBNEGOTIATION + 10));
    input.extend([IAC, SE]);
    input.extend(b"ok");
    let (data, events) = decode_in_chunks(&input, 7);
    assert_eq!(data, b"ok");
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn the_client_offers_binary_sga_and_the_com_port_and_waits_for_do() {
    let mut client = Client::new();
    let mut out = Vec::new();
    client.start(&mut out);
    assert_eq!(
        out,
        [
            IAC,
            WILL,
            BINARY,
            IAC,
            DO,
            BINARY,
            IAC,
            WILL,
            SGA,
            IAC,
            DO,
            SGA,
            IAC,
            WILL,
            COM_PORT_OPTION
        ]
    );
    assert!(!client.com_port_accepted());
    // The server agrees to everything; agreements to our own requests need no answer.
    let mut server = Vec::new();
    for (verb, option) in [
        (DO, BINARY),
        (WILL, BINARY),
        (DO, SGA),
        (WILL, SGA),
        (DO, COM_PORT_OPTION),
    ] {
        server.extend([IAC, verb, option]);
    }
    let (mut data, mut answer, mut notices) = (Vec::new(), Vec::new(), Vec::new());
    client.receive(&server, &mut data, &mut answer, &mut notices);
    assert!(answer.is_empty(), "{answer:?}");
    assert!(client.com_port_accepted());
    assert!(client.binary());
}

#[test]
fn the_client_refuses_echo_and_unknown_options_once_and_never_loops() {
    let mut client = Client::new();
    let mut out = Vec::new();
    client.start(&mut out);
    // pyserial's server offers ECHO and asks for an option we do not know; it also offers
    // the com port from its side, which a client may accept.
    let server = [
        IAC,
        WILL,
        ECHO,
        IAC,
        DO,
        24,
        IAC,
        WILL,
        COM_PORT_OPTION,
        IAC,
        DO,
        COM_PORT_OPTION,
    ];
    let (mut data, mut answer, mut notices) = (Vec::new(), Vec::new(), Vec::new());
    client.receive(&server, &mut data, &mut answer, &mut notices);
    assert_eq!(
        answer,
        [IAC, DONT, ECHO, IAC, WONT, 24, IAC, DO, COM_PORT_OPTION]
    );
    // The server's confirmations of our refusals change nothing: no answer, no loop.
    answer.clear();
    client.receive(
        &[IAC, WONT, ECHO, IAC, DONT, 24],
        &mut data,
        &mut answer,
        &mut notices,
    );
    assert!(answer.is_empty(), "{answer:?}");
    assert!(client.com_port_accepted());
}

#[test]
fn a_server_that_refuses_the_com_port_is_seen_as_such() {
    let mut client = Client::new();
    let mut out = Vec::new();
    client.start(&mut out);
    let (mut data, mut answer, mut notices) = (Vec::new(), Vec::new(), Vec::new());
    client.receive(
        &[IAC, DONT, COM_PORT_OPTION],
        &mut data,
        &mut answer,
        &mut notices,
    );
    assert!(client.com_port_refused());
    assert!(!client.com_port_accepted());
    assert!(answer.is_empty());
}

#[test]
fn server_notices_carry_their_position_in_the_data() {
    let mut client = Client::new();
    let mut input = b"stale".to_vec();
    rfc2217::com_port(112, &[1], &mut input); // PURGE-DATA reply
    input.extend(b"new");
    rfc2217::com_port(107, &[0xB0], &mut input);
    let (mut data, mut answer, mut notices) = (Vec::new(), Vec::new(), Vec::new());
    client.receive(&input, &mut data, &mut answer, &mut notices);
    assert_eq!(data, b"stalenew");
    assert_eq!(
        notices,
        [(5, Notice::Purge(1)), (8, Notice::ModemState(0xB0))]
    );
    assert_eq!(client.modem_state(), Some(0xB0));
}

proptest! {
    #[test]
    fn escaped_data_decodes_to_itself_however_it_is_split(
        data in proptest::collection::vec(prop_oneof![Just(0xFFu8), any::<u8>()], 0..300),
        chunk in 1usize..20,
    ) {
        let mut wire = Vec::new();
        rfc2217::escape(&data, &mut wire);
        let (decoded, events) = decode_in_chunks(&wire, chunk);
        prop_assert_eq!(decoded, data);
        prop_assert!(events.is_empty());
    }

    #[test]
    fn the_decoder_takes_any_bytes_without_panicking_or_growing(
        input in proptest::collection::vec(any::<u8>(), 0..2000),
        chunk in 1usize..50,
    ) {
        let (data, events) = decode_in_chunks(&input, chunk);
        prop_assert!(data.len() <= input.len());
        for (_, e) in events {
            if let Event::Subnegotiation(s) = e {
                prop_assert!(s.len() <= rfc2217::MAX_SUBNEGOTIATION);
            }
        }
    }
}

#[test]
fn network_port_names_parse_like_pyserial_urls() {
    let net = |scheme, host: &str, port| PortSpec::Net {
        scheme,
        host: host.to_string(),
        port,
    };
    assert_eq!(
        PortSpec::parse("socket://127.0.0.1:5555").unwrap(),
        net(Scheme::Socket, "127.0.0.1", 5555)
    );
    assert_eq!(
        PortSpec::parse("RFC2217://pi.lab.example:2217").unwrap(),
        net(Scheme::Rfc2217, "pi.lab.example", 2217)
    );
    let v6 = PortSpec::parse("rfc2217://[::1]:4000").unwrap();
    assert_eq!(v6, net(Scheme::Rfc2217, "::1", 4000));
    assert_eq!(v6.to_string(), "rfc2217://[::1]:4000");
    assert_eq!(
        PortSpec::parse("/dev/ttyUSB0").unwrap(),
        PortSpec::Device("/dev/ttyUSB0".into())
    );
    assert_eq!(
        PortSpec::parse("COM3").unwrap(),
        PortSpec::Device("COM3".into())
    );
}

#[test]
fn malformed_network_port_names_are_refused_with_the_reason() {
    let reason = |text: &str| match PortSpec::parse(text) {
        Err(e @ OpenError::Address { .. }) => e.to_string(),
        other => panic!("{text}: {other:?}"),
    };
    assert!(reason("socket://host:0").contains("'0' is not a TCP port (1 to 65535)"));
    assert!(reason("socket://host:65536").contains("not a TCP port"));
    assert!(reason("socket://host:+80").contains("not a TCP port"));
    assert!(reason("socket://host").contains("give the TCP port"));
    assert!(reason("socket://:80").contains("the host is missing"));
    assert!(reason("rfc2217://::1:80").contains("IPv6 address goes in brackets"));
    assert!(reason("rfc2217://[::1:80").contains("not closed"));
    assert!(reason("rfc2217://[fe80::zz]:80").contains("is not an IPv6 address"));
    assert!(reason("rfc2217://[::1]").contains("give the TCP port after the address"));
    assert!(reason("socket://host:80?logging=debug").contains("only HOST:PORT may follow"));
    assert!(reason("socket://user@host:80").contains("only HOST:PORT may follow"));
    assert!(reason("socket://host:80/path").contains("only HOST:PORT may follow"));
    assert!(reason("socket://ho st:80").contains("only HOST:PORT may follow"));
    assert!(reason("socket://host;rm -rf:80").contains("only HOST:PORT may follow"));
    assert!(reason("socket://-bad-.example:80").contains("is not a host name"));
    assert!(reason("socket://a_b:80").contains("is not a host name"));
    assert!(reason("telnet://host:23").contains("'telnet://' is not a port type"));
}
