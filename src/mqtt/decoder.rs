//! Reassembles MQTT packets from a byte stream cut anywhere: `+IPD` frames split packets,
//! and one frame may hold several.
//!
//! Spec: MQTT 3.1.1 §2.2 (fixed header: one type/flags byte, then a Remaining Length of one
//! to four bytes, seven bits each). The length is checked against the decoder's maximum as
//! soon as its last byte is in, so an announced 256 MiB packet is an error after five bytes,
//! not an allocation. The decoder holds what it was given and not yet returned; a caller
//! that calls [`Decoder::next_packet`] until `Ok(None)` after each push keeps that to one
//! read plus the start of one packet (at most the maximum plus its five header bytes), and
//! a push costs time in its own size however many packets it holds. After an error the stream is unusable (MQTT has no resynchronisation): the
//! decoder drops its buffer, ignores further input and returns the same error again.

use super::limits::PAYLOAD_MAX;
use super::packet::{DecodeError, Packet, MAX_REMAINING_LENGTH};

/// Default largest Remaining Length accepted: AWS IoT's 128 KiB payload with room for the
/// topic (256 bytes, plus a Basic Ingest prefix) and the packet identifier.
pub const DEFAULT_MAX_PACKET: usize = PAYLOAD_MAX + 1024;

/// An incremental MQTT packet decoder.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes received; those before `start` are already returned.
    buf: Vec<u8>,
    /// Where the next packet begins in `buf`. Returned packets are not moved out one by
    /// one (that is quadratic in the packets of one read): `buf` is compacted once per push.
    start: usize,
    /// Bytes moved by compaction, to test that it happens once per push.
    #[cfg(test)]
    moved: usize,
    max: usize,
    failed: Option<DecodeError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_PACKET)
    }
}

/// What the fixed header at the front of a buffer says.
enum Header {
    /// More bytes are needed to know.
    Incomplete,
    /// The packet's first byte, the header's length and the body's length.
    Complete {
        first: u8,
        header_len: usize,
        body_len: usize,
    },
}

/// Reads the fixed header at the front of `buf`, checking the length against `max`.
fn header(buf: &[u8], max: usize) -> Result<Header, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(Header::Incomplete);
    };
    let kind = first >> 4;
    if kind == 0 || kind == 15 {
        // Known from the first byte: no need to wait for a length that may never come.
        return Err(DecodeError::ReservedType(kind));
    }
    let mut length = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(Header::Incomplete);
        };
        length |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            debug_assert!(length <= MAX_REMAINING_LENGTH);
            if length > max {
                return Err(DecodeError::TooLarge { length, max });
            }
            return Ok(Header::Complete {
                first,
                header_len: 2 + i,
                body_len: length,
            });
        }
    }
    Err(DecodeError::BadLength)
}

impl Decoder {
    /// A decoder accepting packets whose Remaining Length is at most `max_packet` bytes.
    pub fn new(max_packet: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            start: 0,
            #[cfg(test)]
            moved: 0,
            max: max_packet.min(MAX_REMAINING_LENGTH),
            failed: None,
        }
    }

    /// The largest Remaining Length accepted.
    pub fn max_packet(&self) -> usize {
        self.max
    }

    /// Bytes held: received and not yet returned as a packet.
    /// Non-zero after the packets are drained means a connection closing now cut one.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Adds received bytes. Ignored after an error.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 {
            #[cfg(test)]
            {
                self.moved += self.buf.len() - self.start;
            }
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete packet, `Ok(None)` if more bytes are needed, or the error that
    /// ended the stream (returned again on every later call).
    pub fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.try_next() {
            Ok(p) => Ok(p),
            Err(e) => {
                self.buf = Vec::new();
                self.start = 0;
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn try_next(&mut self) -> Result<Option<Packet>, DecodeError> {
        let held = &self.buf[self.start..];
        let (first, header_len, body_len) = match header(held, self.max)? {
            Header::Incomplete => return Ok(None),
            Header::Complete {
                first,
                header_len,
                body_len,
            } => (first, header_len, body_len),
        };
        let total = header_len + body_len;
        if held.len() < total {
            return Ok(None);
        }
        let packet = Packet::decode(first, &held[header_len..total])?;
        self.start += total;
        if self.start == self.buf.len() {
            // A large packet's capacity is not kept for the small ones that follow.
            self.buf = Vec::new();
            self.start = 0;
        }
        Ok(Some(packet))
    }

    /// Forgets everything, errors included: for a new connection.
    pub fn reset(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
        self.failed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::packet::{Publish, QoS};

    fn stream() -> (Vec<u8>, Vec<Packet>) {
        let packets = vec![
            Packet::ConnAck {
                session_present: false,
                return_code: 0,
            },
            Packet::Publish(Publish::at_least_once("a/b", vec![1u8; 300], 5)),
            Packet::PingResp,
            Packet::PubAck(5),
        ];
        let bytes = packets.iter().flat_map(|p| p.encode().unwrap()).collect();
        (bytes, packets)
    }

    #[test]
    fn every_split_point_and_byte_by_byte() {
        let (bytes, packets) = stream();
        for cut in 0..=bytes.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for part in [&bytes[..cut], &bytes[cut..]] {
                d.push(part);
                while let Some(p) = d.next_packet().unwrap() {
                    got.push(p);
                }
            }
            assert_eq!(got, packets, "cut at {cut}");
            assert_eq!(d.buffered(), 0);
        }
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            while let Some(p) = d.next_packet().unwrap() {
                got.push(p);
            }
        }
        assert_eq!(got, packets);
    }

    #[test]
    fn a_huge_length_is_an_error_after_five_bytes() {
        let mut d = Decoder::new(1000);
        d.push(&[0x30, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(
            d.next_packet(),
            Err(DecodeError::TooLarge {
                length: MAX_REMAINING_LENGTH,
                max: 1000
            })
        );
        assert_eq!(d.buffered(), 0);
        d.push(&[0xc0, 0]);
        assert_eq!(d.buffered(), 0, "input after an error is ignored");
        assert!(d.next_packet().is_err(), "the error stays");
        d.reset();
        d.push(&[0xd0, 0]);
        assert_eq!(d.next_packet(), Ok(Some(Packet::PingResp)));
    }

    #[test]
    fn limit_is_inclusive() {
        let p = Packet::Publish(Publish::at_most_once("t", vec![0u8; 97]));
        let bytes = p.encode().unwrap();
        assert_eq!(bytes.len() - 2, 100);
        let mut d = Decoder::new(100);
        d.push(&bytes);
        assert_eq!(d.next_packet(), Ok(Some(p.clone())));
        let mut d = Decoder::new(99);
        d.push(&bytes[..2]);
        assert_eq!(
            d.next_packet(),
            Err(DecodeError::TooLarge {
                length: 100,
                max: 99
            })
        );
    }

    #[test]
    fn header_errors() {
        let mut d = Decoder::default();
        d.push(&[0x30, 0x80, 0x80, 0x80, 0x80]);
        assert_eq!(d.next_packet(), Err(DecodeError::BadLength));
        let mut d = Decoder::default();
        d.push(&[0xf0]);
        assert_eq!(d.next_packet(), Err(DecodeError::ReservedType(15)));
        let mut d = Decoder::default();
        d.push(&[0x30, 0x80]);
        assert_eq!(d.next_packet(), Ok(None));
        assert_eq!(d.buffered(), 2);
    }

    #[test]
    fn many_packets_in_one_read_are_not_moved_one_by_one() {
        // 100 000 PINGRESPs and half of one more in one read: taking each packet out by
        // moving the rest forward would move about 10^10 bytes.
        let mut bytes = [0xd0u8, 0].repeat(100_000);
        bytes.push(0xd0);
        let mut d = Decoder::default();
        d.push(&bytes);
        let mut n = 0;
        while let Some(p) = d.next_packet().unwrap() {
            assert_eq!(p, Packet::PingResp);
            n += 1;
        }
        assert_eq!(n, 100_000);
        assert_eq!(d.buffered(), 1);
        assert_eq!(d.moved, 0, "nothing is moved before the next push");
        d.push(&[0]);
        assert_eq!(d.moved, 1, "the next push moves the one byte left");
        assert_eq!(d.next_packet(), Ok(Some(Packet::PingResp)));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn qos_survives() {
        let p = Packet::Publish(Publish::at_least_once("x", Vec::new(), 1));
        let mut d = Decoder::default();
        d.push(&p.encode().unwrap());
        match d.next_packet() {
            Ok(Some(Packet::Publish(got))) => {
                assert_eq!(got.qos, QoS::AtLeastOnce);
                assert!(got.payload.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}
