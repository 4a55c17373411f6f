//! Property tests for the ROM codec and the simulated ROM: no input bytes, split anywhere,
//! make them panic, and encoding then decoding is the identity.

use std::time::Duration;

use proptest::prelude::*;

use esp_aws::rom::command::Command;
use esp_aws::rom::packet::{RequestPacket, Response, HEADER_LEN, ROM_STATUS_LEN};
use esp_aws::rom::slip::{self, SlipDecoder};
use esp_aws::sim::device::{Device, SharedFlash};
use esp_aws::sim::flash::Flash;
use esp_aws::sim::rom_device::{FlashTiming, RomDevice};

fn drain(d: &mut SlipDecoder) -> Vec<Result<Vec<u8>, slip::SlipError>> {
    std::iter::from_fn(|| d.pop()).collect()
}

proptest! {
    #[test]
    fn slip_decoder_is_split_invariant(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                       cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let mut whole = SlipDecoder::new(64);
        whole.push(&bytes);
        let expected = drain(&mut whole);

        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = SlipDecoder::new(64);
        let mut start = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            pieces.push(&bytes[start..p]);
            start = p;
        }
        prop_assert_eq!(drain(&mut pieces), expected);
    }

    #[test]
    fn slip_encode_then_decode_is_identity(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..80), 0..6),
        noise in proptest::collection::vec(any::<u8>().prop_filter("not END", |b| *b != slip::END), 0..16),
    ) {
        let mut wire = noise.clone();
        for f in &frames {
            slip::encode(f, &mut wire);
        }
        let mut d = SlipDecoder::default();
        for byte in &wire {
            d.push(std::slice::from_ref(byte));
        }
        let got: Vec<Vec<u8>> = drain(&mut d).into_iter().map(Result::unwrap).collect();
        prop_assert_eq!(got, frames);
        prop_assert_eq!(d.take_noise(), noise);
    }

    #[test]
    fn packet_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        if let Ok(r) = Response::decode(&bytes) {
            prop_assert_eq!(r.data.len() + ROM_STATUS_LEN + HEADER_LEN, bytes.len());
        }
        if let Ok(req) = RequestPacket::decode(&bytes) {
            prop_assert_eq!(req.data.len() + HEADER_LEN, bytes.len());
            if let Some(p) = req.payload() {
                prop_assert!(p.len() <= req.data.len());
            }
            let _ = (req.kind(), req.word(0), req.word(usize::MAX / 2));
        }
    }

    #[test]
    fn rom_survives_arbitrary_packets(
        packets in proptest::collection::vec(
            (0u8..0x18, proptest::collection::vec(any::<u8>(), 0..48), any::<u32>(), any::<bool>()),
            0..24),
        junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let flash = SharedFlash::in_memory(Flash::erased(0x10000));
        let mut rom = RomDevice::builder()
            .power_on_banner(false)
            .flash_timing(FlashTiming::INSTANT)
            .build(flash);
        let mut now = Duration::ZERO;
        rom.receive(now, &junk);
        for (op, data, checksum, honest_size) in packets {
            let size = if honest_size { data.len() as u16 } else { checksum as u16 };
            let mut packet = vec![0, op];
            packet.extend(size.to_le_bytes());
            packet.extend(checksum.to_le_bytes());
            packet.extend(&data);
            rom.receive(now, &slip::encode_to_vec(&packet));
            let mut out = Vec::new();
            while let Some(at) = rom.poll(now, &mut out) {
                now = now.max(at) + Duration::from_millis(1);
            }
            // Whatever the ROM answered is well-formed SLIP carrying well-formed replies
            // (a reboot banner aside).
            let mut d = SlipDecoder::default();
            d.push(&out);
            for frame in drain(&mut d) {
                prop_assert!(Response::decode(&frame.unwrap()).is_ok());
            }
        }
    }

    #[test]
    fn rom_inflater_survives_arbitrary_streams(
        pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..256), 1..6),
        zlib_header in any::<bool>(),
    ) {
        let flash = SharedFlash::in_memory(Flash::erased(0x20000));
        let mut rom = RomDevice::builder()
            .power_on_banner(false)
            .flash_timing(FlashTiming::INSTANT)
            .build(flash);
        let mut wire = Vec::new();
        slip::encode(&Command::FlashDeflBegin {
            erase_size: 0x10000,
            packets: pieces.len() as u32,
            packet_size: 0x400,
            offset: 0x10000,
        }.to_bytes(), &mut wire);
        for (seq, piece) in pieces.iter().enumerate() {
            let mut data = piece.clone();
            if zlib_header && seq == 0 {
                // A valid zlib header, so the inflater gets into the deflate blocks.
                data.splice(0..0, [0x78, 0xDA]);
            }
            slip::encode(&Command::FlashDeflData { seq: seq as u32, data: &data }.to_bytes(), &mut wire);
        }
        rom.receive(Duration::ZERO, &wire);
        let mut out = Vec::new();
        prop_assert_eq!(rom.poll(Duration::ZERO, &mut out), None);
        let mut d = SlipDecoder::default();
        d.push(&out);
        let replies: Vec<Response> = drain(&mut d)
            .into_iter()
            .map(|f| Response::decode(&f.unwrap()).unwrap())
            .collect();
        prop_assert_eq!(replies.len(), pieces.len() + 1);
    }
}
