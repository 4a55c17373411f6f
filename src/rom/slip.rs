//! SLIP framing as the ESP32 ROM bootloader uses it (`rom-bootloader.md` §2).
//!
//! Every packet travels as `C0 … C0`; inside a frame `C0` is sent as `DB DC` and `DB` as
//! `DB DD`. The decoder is incremental (push any slice of bytes, pop complete frames) so it
//! serves both the flasher reading a serial port and the simulated ROM fed by a pty pump.

use std::collections::VecDeque;

/// Frame delimiter.
pub const END: u8 = 0xC0;
/// Escape introducer.
pub const ESC: u8 = 0xDB;
/// `ESC ESC_END` stands for a literal `END` inside a frame.
pub const ESC_END: u8 = 0xDC;
/// `ESC ESC_ESC` stands for a literal `ESC` inside a frame.
pub const ESC_ESC: u8 = 0xDD;

/// Appends `frame` to `out` as one SLIP packet, delimiters included.
pub fn encode(frame: &[u8], out: &mut Vec<u8>) {
    out.reserve(frame.len() + 2 + frame.len() / 64);
    out.push(END);
    for &b in frame {
        match b {
            END => out.extend_from_slice(&[ESC, ESC_END]),
            ESC => out.extend_from_slice(&[ESC, ESC_ESC]),
            _ => out.push(b),
        }
    }
    out.push(END);
}

/// Encodes `frame` into a new buffer.
pub fn encode_to_vec(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(frame, &mut out);
    out
}

/// A frame that could not be decoded; the decoder has already resynchronised on the next
/// `END`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlipError {
    /// `ESC` followed by something other than `ESC_END` / `ESC_ESC` (esptool: "Invalid SLIP
    /// escape").
    #[error("invalid SLIP escape 0xdb 0x{0:02x}")]
    InvalidEscape(u8),
    /// The frame grew past the decoder's limit; its bytes were dropped.
    #[error("SLIP frame longer than {limit} bytes")]
    TooLong {
        /// The decoder's limit.
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames: everything but `END` is noise (a boot log, for instance).
    Idle,
    /// Inside a frame.
    Frame,
    /// Inside a frame, right after `ESC`.
    Escape,
    /// Inside a frame that already failed; skip to the closing `END`.
    Discard,
}

/// Incremental SLIP decoder: [`push`](SlipDecoder::push) bytes as they arrive,
/// [`pop`](SlipDecoder::pop) complete frames.
///
/// Empty frames (`C0 C0`) are ignored, as the ROM does. Bytes outside frames are kept (up to
/// a bound) so a client can show what the chip printed instead of answering, e.g. a boot
/// banner.
#[derive(Debug, Clone)]
pub struct SlipDecoder {
    state: State,
    current: Vec<u8>,
    limit: usize,
    frames: VecDeque<Result<Vec<u8>, SlipError>>,
    noise: Vec<u8>,
}

/// How much inter-frame noise a decoder remembers (at least the most recent half of it).
const NOISE_LIMIT: usize = 4096;

impl Default for SlipDecoder {
    fn default() -> Self {
        SlipDecoder::new(Self::DEFAULT_LIMIT)
    }
}

impl SlipDecoder {
    /// Default frame size limit: room for the largest packet either side of the ROM protocol
    /// sends, with margin for stub-sized blocks.
    pub const DEFAULT_LIMIT: usize = 0x1_0000 + 64;

    /// A decoder that rejects frames longer than `limit` decoded bytes.
    pub fn new(limit: usize) -> SlipDecoder {
        SlipDecoder {
            state: State::Idle,
            current: Vec::new(),
            limit,
            frames: VecDeque::new(),
            noise: Vec::new(),
        }
    }

    /// Feeds bytes from the line.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push_byte(b);
        }
    }

    fn push_byte(&mut self, b: u8) {
        match (self.state, b) {
            (State::Idle, END) => self.state = State::Frame,
            (State::Idle, _) => {
                // Keep the most recent text; dropping half at a time keeps this cheap for a
                // chatty line.
                if self.noise.len() == NOISE_LIMIT {
                    self.noise.drain(..NOISE_LIMIT / 2);
                }
                self.noise.push(b);
            }
            (State::Frame, END) => {
                // `C0 C0` is an empty frame, ignored; its second `C0` opens the next frame.
                // After a non-empty frame the closing `C0` ends it and the decoder waits for
                // a new opening `C0`, as the ROM and esptool's reader do.
                if !self.current.is_empty() {
                    self.frames.push_back(Ok(std::mem::take(&mut self.current)));
                    self.state = State::Idle;
                }
            }
            (State::Frame, ESC) => self.state = State::Escape,
            (State::Frame, _) => self.store(b),
            (State::Escape, ESC_END) => {
                self.state = State::Frame;
                self.store(END);
            }
            (State::Escape, ESC_ESC) => {
                self.state = State::Frame;
                self.store(ESC);
            }
            (State::Escape, END) => {
                self.fail(SlipError::InvalidEscape(END));
                self.state = State::Idle;
            }
            (State::Escape, other) => {
                self.fail(SlipError::InvalidEscape(other));
                self.state = State::Discard;
            }
            (State::Discard, END) => self.state = State::Idle,
            (State::Discard, _) => {}
        }
    }

    fn store(&mut self, b: u8) {
        if self.current.len() == self.limit {
            self.fail(SlipError::TooLong { limit: self.limit });
            self.state = State::Discard;
        } else {
            self.current.push(b);
        }
    }

    fn fail(&mut self, error: SlipError) {
        self.current.clear();
        self.frames.push_back(Err(error));
    }

    /// The next complete frame (or the error that replaced it), oldest first.
    pub fn pop(&mut self) -> Option<Result<Vec<u8>, SlipError>> {
        self.frames.pop_front()
    }

    /// Whether a frame has started but not yet ended.
    pub fn in_frame(&self) -> bool {
        self.state != State::Idle && !(self.state == State::Frame && self.current.is_empty())
    }

    /// Takes the bytes seen outside any frame since the last call.
    pub fn take_noise(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.noise)
    }

    /// Forgets any partial frame, queued frames and noise (after a reset or a baud change).
    pub fn clear(&mut self) {
        self.state = State::Idle;
        self.current.clear();
        self.frames.clear();
        self.noise.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Result<Vec<u8>, SlipError>> {
        let mut d = SlipDecoder::default();
        d.push(bytes);
        std::iter::from_fn(|| d.pop()).collect()
    }

    #[test]
    fn escapes_both_special_bytes() {
        assert_eq!(
            encode_to_vec(&[0x01, 0xC0, 0x02, 0xDB, 0x03]),
            [0xC0, 0x01, 0xDB, 0xDC, 0x02, 0xDB, 0xDD, 0x03, 0xC0]
        );
        assert_eq!(encode_to_vec(&[]), [0xC0, 0xC0]);
    }

    #[test]
    fn decodes_escapes_and_skips_noise_and_empty_frames() {
        let mut d = SlipDecoder::default();
        d.push(b"boot:0x13\r\n\xC0\xC0\xC0\x01\xDB\xDC\xDB\xDD\xC0");
        assert_eq!(d.pop(), Some(Ok(vec![0x01, 0xC0, 0xDB])));
        assert_eq!(d.pop(), None);
        assert_eq!(d.take_noise(), b"boot:0x13\r\n");
        assert!(!d.in_frame());
    }

    #[test]
    fn bytes_after_a_closing_end_are_noise() {
        let mut d = SlipDecoder::default();
        d.push(&[0xC0, 1, 0xC0, 2, 0xC0, 3, 0xC0]);
        assert_eq!(d.pop(), Some(Ok(vec![1])));
        assert_eq!(d.pop(), Some(Ok(vec![3])));
        assert_eq!(d.take_noise(), [2]);
    }

    #[test]
    fn frames_split_anywhere() {
        let wire = [0xC0, 0x01, 0xDB, 0xDC, 0x02, 0xC0];
        for split in 0..=wire.len() {
            let mut d = SlipDecoder::default();
            d.push(&wire[..split]);
            assert_eq!(d.in_frame(), (2..wire.len()).contains(&split), "{split}");
            d.push(&wire[split..]);
            assert_eq!(d.pop(), Some(Ok(vec![0x01, 0xC0, 0x02])));
        }
    }

    #[test]
    fn invalid_escape_drops_the_frame_and_resyncs() {
        assert_eq!(
            decode_all(&[0xC0, 1, 0xDB, 0x41, 2, 0xC0, 0xC0, 3, 0xC0]),
            vec![Err(SlipError::InvalidEscape(0x41)), Ok(vec![3])]
        );
        assert_eq!(
            decode_all(&[0xC0, 1, 0xDB, 0xC0, 0xC0, 4, 0xC0]),
            vec![Err(SlipError::InvalidEscape(0xC0)), Ok(vec![4])]
        );
    }

    #[test]
    fn overlong_frame_is_reported_once() {
        let mut d = SlipDecoder::new(3);
        d.push(&[0xC0, 1, 2, 3, 4, 5, 0xC0, 0xC0, 9, 0xC0]);
        assert_eq!(d.pop(), Some(Err(SlipError::TooLong { limit: 3 })));
        assert_eq!(d.pop(), Some(Ok(vec![9])));
        assert_eq!(d.pop(), None);
    }

    #[test]
    fn noise_is_bounded_and_keeps_the_latest_text() {
        let mut d = SlipDecoder::default();
        let text: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        d.push(&text);
        let noise = d.take_noise();
        assert!(noise.len() <= NOISE_LIMIT && noise.len() >= NOISE_LIMIT / 2);
        assert!(text.ends_with(&noise));
    }
}
