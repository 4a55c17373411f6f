//! The client side of RFC 2217 (Telnet Com Port Control Option), sans I/O: the Telnet
//! byte-stream decoder, option negotiation, and the encoders for data and COM-PORT-OPTION
//! commands. [`super::net::Rfc2217Transport`] puts it on a TCP stream.
//!
//! Spec: RFC 854 (Telnet: IAC, commands, subnegotiation), RFC 855 (SB … SE), RFC 856
//! (BINARY), RFC 858 (SUPPRESS-GO-AHEAD), RFC 1143 (the Q method of negotiating without
//! loops, simplified here to the states No / WantYes / Yes), RFC 2217 (COM-PORT-OPTION 44:
//! SET-BAUDRATE, SET-CONTROL, PURGE-DATA, NOTIFY-MODEMSTATE; the server's replies are the
//! client's command codes + 100).
//!
//! Data bytes 0xFF are sent as IAC IAC and received the same way; everything else between
//! IAC and the end of a command or subnegotiation is protocol, never data. Input may be
//! split anywhere (mid-IAC, mid-subnegotiation): the decoder keeps its state between calls.

/// Interpret As Command.
pub const IAC: u8 = 255;
/// Refuse or stop an option on the other side.
pub const DONT: u8 = 254;
/// Ask the other side to use an option.
pub const DO: u8 = 253;
/// Refuse or stop an option on our side.
pub const WONT: u8 = 252;
/// Offer an option on our side.
pub const WILL: u8 = 251;
/// Subnegotiation begins.
pub const SB: u8 = 250;
/// Subnegotiation ends.
pub const SE: u8 = 240;

/// Telnet option: 8-bit transparent data (RFC 856).
pub const BINARY: u8 = 0;
/// Telnet option: remote echo (RFC 857), refused: a serial line must not see its data back.
pub const ECHO: u8 = 1;
/// Telnet option: suppress go-ahead (RFC 858).
pub const SGA: u8 = 3;
/// Telnet option: RFC 2217 COM-PORT-OPTION.
pub const COM_PORT_OPTION: u8 = 44;

/// COM-PORT-OPTION commands, client to server; the server answers with the code + 100.
pub mod command {
    /// Ask for (or send) the product signature.
    pub const SIGNATURE: u8 = 0;
    /// Line speed, 4 bytes big-endian (0 asks for the current one).
    pub const SET_BAUDRATE: u8 = 1;
    /// Data bits (5..8; 0 asks).
    pub const SET_DATASIZE: u8 = 2;
    /// Parity (1 none, 2 odd, 3 even, 4 mark, 5 space; 0 asks).
    pub const SET_PARITY: u8 = 3;
    /// Stop bits (1 one, 2 two, 3 one and a half; 0 asks).
    pub const SET_STOPSIZE: u8 = 4;
    /// Flow control, BREAK, DTR, RTS: see [`super::control`].
    pub const SET_CONTROL: u8 = 5;
    /// Server: line state changed.
    pub const NOTIFY_LINESTATE: u8 = 6;
    /// Server: modem state (CTS, DSR, RI, CD) changed.
    pub const NOTIFY_MODEMSTATE: u8 = 7;
    /// Stop sending data.
    pub const FLOWCONTROL_SUSPEND: u8 = 8;
    /// Data may flow again.
    pub const FLOWCONTROL_RESUME: u8 = 9;
    /// Which line-state changes to notify.
    pub const SET_LINESTATE_MASK: u8 = 10;
    /// Which modem-state changes to notify.
    pub const SET_MODEMSTATE_MASK: u8 = 11;
    /// Drop buffered data: see [`super::purge`].
    pub const PURGE_DATA: u8 = 12;
    /// A server reply's code is the command's + this.
    pub const SERVER_OFFSET: u8 = 100;
}

/// SET-CONTROL values.
pub mod control {
    /// No flow control.
    pub const NO_FLOW_CONTROL: u8 = 1;
    /// DTR asserted.
    pub const DTR_ON: u8 = 8;
    /// DTR deasserted.
    pub const DTR_OFF: u8 = 9;
    /// RTS asserted.
    pub const RTS_ON: u8 = 11;
    /// RTS deasserted.
    pub const RTS_OFF: u8 = 12;
}

/// PURGE-DATA values.
pub mod purge {
    /// The access server's receive buffer: what the device sent that the client has not got.
    pub const RECEIVE: u8 = 1;
    /// The access server's transmit buffer.
    pub const TRANSMIT: u8 = 2;
    /// Both.
    pub const BOTH: u8 = 3;
}

/// Longest subnegotiation kept (a signature string is the longest legitimate one); longer
/// ones are dropped whole, so a hostile server cannot make the client buffer without bound.
pub const MAX_SUBNEGOTIATION: usize = 256;

/// A negotiation verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// IAC WILL.
    Will,
    /// IAC WONT.
    Wont,
    /// IAC DO.
    Do,
    /// IAC DONT.
    Dont,
}

impl Verb {
    fn from_byte(b: u8) -> Option<Verb> {
        match b {
            WILL => Some(Verb::Will),
            WONT => Some(Verb::Wont),
            DO => Some(Verb::Do),
            DONT => Some(Verb::Dont),
            _ => None,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Verb::Will => WILL,
            Verb::Wont => WONT,
            Verb::Do => DO,
            Verb::Dont => DONT,
        }
    }
}

/// Something other than data in the Telnet stream, in the order it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// IAC WILL/WONT/DO/DONT option.
    Negotiate(Verb, u8),
    /// IAC SB … IAC SE: the option byte and its payload, IAC IAC already undoubled.
    Subnegotiation(Vec<u8>),
    /// Any other IAC command (NOP, BRK, AYT, …).
    Command(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Iac,
    Negotiate(Verb),
    Sub,
    SubIac,
}

/// The Telnet stream decoder: data bytes out, protocol [`Event`]s aside.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    sub: Vec<u8>,
    sub_overflow: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::Data,
            sub: Vec::new(),
            sub_overflow: false,
        }
    }
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes `input`, appending data bytes to `data` and events to `events` as
    /// `(data.len() when the event ended, event)`, so that a caller can tell which data came
    /// before an event (a PURGE-DATA reply marks where stale data ends).
    pub fn feed(&mut self, input: &[u8], data: &mut Vec<u8>, events: &mut Vec<(usize, Event)>) {
        for &b in input {
            self.state = match self.state {
                State::Data if b == IAC => State::Iac,
                State::Data => {
                    data.push(b);
                    State::Data
                }
                State::Iac => match b {
                    IAC => {
                        data.push(IAC);
                        State::Data
                    }
                    SB => {
                        self.sub.clear();
                        self.sub_overflow = false;
                        State::Sub
                    }
                    _ => match Verb::from_byte(b) {
                        Some(verb) => State::Negotiate(verb),
                        None => {
                            events.push((data.len(), Event::Command(b)));
                            State::Data
                        }
                    },
                },
                State::Negotiate(verb) => {
                    events.push((data.len(), Event::Negotiate(verb, b)));
                    State::Data
                }
                State::Sub if b == IAC => State::SubIac,
                State::Sub => {
                    self.push_sub(b);
                    State::Sub
                }
                State::SubIac => match b {
                    IAC => {
                        self.push_sub(IAC);
                        State::Sub
                    }
                    SE => {
                        if !self.sub_overflow {
                            events.push((
                                data.len(),
                                Event::Subnegotiation(std::mem::take(&mut self.sub)),
                            ));
                        }
                        self.sub.clear();
                        State::Data
                    }
                    // RFC 855 allows nothing else here; a sender that breaks off a
                    // subnegotiation with another command has abandoned it.
                    SB => {
                        self.sub.clear();
                        self.sub_overflow = false;
                        State::Sub
                    }
                    other => match Verb::from_byte(other) {
                        Some(verb) => State::Negotiate(verb),
                        None => {
                            events.push((data.len(), Event::Command(other)));
                            State::Data
                        }
                    },
                },
            };
        }
    }

    fn push_sub(&mut self, b: u8) {
        if self.sub.len() < MAX_SUBNEGOTIATION {
            self.sub.push(b);
        } else {
            self.sub_overflow = true;
        }
    }
}

/// Appends `data` to `out` with every 0xFF doubled (IAC IAC), as data must travel.
pub fn escape(data: &[u8], out: &mut Vec<u8>) {
    for &b in data {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
}

/// Appends IAC verb option.
pub fn negotiate(verb: Verb, option: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&[IAC, verb.byte(), option]);
}

/// Appends a COM-PORT-OPTION command: IAC SB 44 command value IAC SE, IAC in the value
/// doubled (a baud rate such as 0x0001_C2FF would otherwise end the frame early).
pub fn com_port(command: u8, value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[IAC, SB, COM_PORT_OPTION, command]);
    escape(value, out);
    out.extend_from_slice(&[IAC, SE]);
}

/// What a COM-PORT-OPTION server said, decoded from its subnegotiations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// SET-BAUDRATE reply: the rate now in force.
    Baud(u32),
    /// SET-DATASIZE reply.
    DataSize(u8),
    /// SET-PARITY reply.
    Parity(u8),
    /// SET-STOPSIZE reply.
    StopSize(u8),
    /// SET-CONTROL reply (the value now in force).
    Control(u8),
    /// PURGE-DATA reply: the buffer was purged; data before this notice is stale.
    Purge(u8),
    /// NOTIFY-LINESTATE.
    LineState(u8),
    /// NOTIFY-MODEMSTATE: bit 7 CD, 6 RI, 5 DSR, 4 CTS, 3..0 their deltas.
    ModemState(u8),
    /// FLOWCONTROL-SUSPEND: the server asks the client to stop sending.
    Suspend,
    /// FLOWCONTROL-RESUME.
    Resume,
    /// The server's signature text.
    Signature(Vec<u8>),
    /// A reply that is short or unknown, kept for diagnostics.
    Other(Vec<u8>),
}

/// The negotiation state of one side of one option (RFC 1143 without the queue bit: the
/// client never changes its mind mid-negotiation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Q {
    #[default]
    No,
    WantYes,
    Yes,
}

/// The options the client wants on both sides: binary data, no go-aheads, and the com port.
fn wanted(option: u8) -> bool {
    matches!(option, BINARY | SGA | COM_PORT_OPTION)
}

/// The client's Telnet and COM-PORT-OPTION state.
#[derive(Debug, Clone)]
pub struct Client {
    decoder: Decoder,
    /// Our side of each option (we WILL), indexed by option.
    us: Vec<Q>,
    /// The server's side (it WILL), indexed by option.
    him: Vec<Q>,
    modem_state: Option<u8>,
    suspended: bool,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            decoder: Decoder::new(),
            us: vec![Q::No; 256],
            him: vec![Q::No; 256],
            modem_state: None,
            suspended: false,
        }
    }
}

impl Client {
    /// A client that has not negotiated anything yet.
    pub fn new() -> Client {
        Client::default()
    }

    /// The opening requests: WILL and DO for BINARY and SUPPRESS-GO-AHEAD, WILL
    /// COM-PORT-OPTION (the RFC 2217 client's offer; the server accepts with DO).
    pub fn start(&mut self, out: &mut Vec<u8>) {
        for option in [BINARY, SGA] {
            self.us[usize::from(option)] = Q::WantYes;
            negotiate(Verb::Will, option, out);
            self.him[usize::from(option)] = Q::WantYes;
            negotiate(Verb::Do, option, out);
        }
        self.us[usize::from(COM_PORT_OPTION)] = Q::WantYes;
        negotiate(Verb::Will, COM_PORT_OPTION, out);
    }

    /// Whether the server accepted COM-PORT-OPTION (it said DO).
    pub fn com_port_accepted(&self) -> bool {
        self.us[usize::from(COM_PORT_OPTION)] == Q::Yes
    }

    /// Whether the server refused COM-PORT-OPTION (DONT after our WILL).
    pub fn com_port_refused(&self) -> bool {
        self.us[usize::from(COM_PORT_OPTION)] == Q::No
    }

    /// Whether data travels 8-bit clean both ways (BINARY agreed on both sides).
    pub fn binary(&self) -> bool {
        self.us[usize::from(BINARY)] == Q::Yes && self.him[usize::from(BINARY)] == Q::Yes
    }

    /// The last modem state the server reported (NOTIFY-MODEMSTATE), if it reported one.
    pub fn modem_state(&self) -> Option<u8> {
        self.modem_state
    }

    /// Whether the server asked the client to stop sending (FLOWCONTROL-SUSPEND).
    pub fn suspended(&self) -> bool {
        self.suspended
    }

    /// Decodes bytes from the server: data to `data`, answers to negotiations to `out`,
    /// COM-PORT-OPTION replies to `notices` as `(data.len() at the notice, notice)`.
    pub fn receive(
        &mut self,
        input: &[u8],
        data: &mut Vec<u8>,
        out: &mut Vec<u8>,
        notices: &mut Vec<(usize, Notice)>,
    ) {
        let mut events = Vec::new();
        self.decoder.feed(input, data, &mut events);
        for (at, event) in events {
            match event {
                Event::Negotiate(verb, option) => self.negotiated(verb, option, out),
                Event::Subnegotiation(sub) => {
                    if let Some(notice) = self.subnegotiation(&sub) {
                        notices.push((at, notice));
                    }
                }
                Event::Command(_) => {}
            }
        }
    }

    /// RFC 1143 for options we want (`wanted`) and refuse (all others): a request is
    /// answered only when it changes the state, so two such clients never loop.
    fn negotiated(&mut self, verb: Verb, option: u8, out: &mut Vec<u8>) {
        let i = usize::from(option);
        match verb {
            Verb::Will => match self.him[i] {
                Q::No if wanted(option) => {
                    self.him[i] = Q::Yes;
                    negotiate(Verb::Do, option, out);
                }
                Q::No => negotiate(Verb::Dont, option, out),
                Q::WantYes => self.him[i] = Q::Yes,
                Q::Yes => {}
            },
            Verb::Wont => match self.him[i] {
                Q::Yes => {
                    self.him[i] = Q::No;
                    negotiate(Verb::Dont, option, out);
                }
                Q::WantYes => self.him[i] = Q::No,
                Q::No => {}
            },
            Verb::Do => match self.us[i] {
                Q::No if wanted(option) => {
                    self.us[i] = Q::Yes;
                    negotiate(Verb::Will, option, out);
                }
                Q::No => negotiate(Verb::Wont, option, out),
                Q::WantYes => self.us[i] = Q::Yes,
                Q::Yes => {}
            },
            Verb::Dont => match self.us[i] {
                Q::Yes => {
                    self.us[i] = Q::No;
                    negotiate(Verb::Wont, option, out);
                }
                Q::WantYes => self.us[i] = Q::No,
                Q::No => {}
            },
        }
    }

    fn subnegotiation(&mut self, sub: &[u8]) -> Option<Notice> {
        let (&option, rest) = sub.split_first()?;
        if option != COM_PORT_OPTION {
            return None;
        }
        let Some((&code, value)) = rest.split_first() else {
            return Some(Notice::Other(sub.to_vec()));
        };
        let byte = value.first().copied();
        let notice = match (code.checked_sub(command::SERVER_OFFSET), byte) {
            (Some(command::SET_BAUDRATE), _) if value.len() == 4 => {
                Notice::Baud(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
            }
            (Some(command::SET_DATASIZE), Some(b)) => Notice::DataSize(b),
            (Some(command::SET_PARITY), Some(b)) => Notice::Parity(b),
            (Some(command::SET_STOPSIZE), Some(b)) => Notice::StopSize(b),
            (Some(command::SET_CONTROL), Some(b)) => Notice::Control(b),
            (Some(command::PURGE_DATA), Some(b)) => Notice::Purge(b),
            (Some(command::NOTIFY_LINESTATE), Some(b)) => Notice::LineState(b),
            (Some(command::NOTIFY_MODEMSTATE), Some(b)) => {
                self.modem_state = Some(b);
                Notice::ModemState(b)
            }
            (Some(command::FLOWCONTROL_SUSPEND), _) => {
                self.suspended = true;
                Notice::Suspend
            }
            (Some(command::FLOWCONTROL_RESUME), _) => {
                self.suspended = false;
                Notice::Resume
            }
            (Some(command::SIGNATURE), _) => Notice::Signature(value.to_vec()),
            _ => Notice::Other(sub.to_vec()),
        };
        Some(notice)
    }
}
