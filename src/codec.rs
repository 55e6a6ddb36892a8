//! WebSocket framing (RFC 6455) for the server side: a pure decoder of the
//! client's masked frames, and encoders for the few frames the server sends.
//!
//! Why not fastwebsockets' read half: it keeps an 8 KiB buffer per
//! connection for the connection's whole life, which alone is 150 MiB at 19k
//! idle clients. Clients send almost nothing after subscribing (a pong a
//! minute), so this decoder parses straight out of the caller's read buffer
//! and only keeps bytes of an incomplete frame; an idle connection holds no
//! buffer at all. fastwebsockets still formats the headers we send.

use bytes::{BufMut, Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload};

/// Largest frame header: 2 bytes, 8 bytes of extended length, 4 of mask.
pub(crate) const MAX_HEADER: usize = 14;

/// A protocol violation by the client; each maps to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    /// RSV bits set without a negotiated extension.
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    UnknownOpcode(u8),
    /// Client frames must be masked.
    Unmasked,
    /// Control frames carry at most 125 bytes and cannot be fragmented.
    BadControlFrame,
    /// A message larger than the limit.
    TooLarge,
    /// A continuation frame with no message to continue, or a new data frame
    /// in the middle of a fragmented one.
    BadFragment,
    /// Text that is not UTF-8.
    InvalidUtf8,
    /// A close frame with a 1-byte payload, a reserved code, or a bad reason.
    BadClose,
}

impl ProtocolError {
    /// The close code to answer with.
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolError::TooLarge => 1009,
            ProtocolError::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }

    /// A short reason for the close frame and logs.
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::UnknownOpcode(_) => "unknown opcode",
            ProtocolError::Unmasked => "client frames must be masked",
            ProtocolError::BadControlFrame => "invalid control frame",
            ProtocolError::TooLarge => "message too large",
            ProtocolError::BadFragment => "invalid fragmentation",
            ProtocolError::InvalidUtf8 => "text is not valid UTF-8",
            ProtocolError::BadClose => "invalid close frame",
        }
    }
}

/// A complete message from the client. Payloads borrow the decoder's input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    /// A text message, already checked to be UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping; answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A close request, with the code (if any).
    Close(Option<u16>),
}

/// Decodes client frames, reassembling fragmented messages.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// Bytes of a frame that has not fully arrived. Empty (no allocation)
    /// whenever frames arrive whole, which is the usual case.
    partial: Vec<u8>,
    /// A fragmented data message being assembled: its opcode and payload.
    /// Boxed: rare, and it keeps every idle connection's decoder small.
    fragments: Option<Box<(OpCode, Vec<u8>)>>,
    /// Largest message accepted, in bytes.
    max_message: usize,
}

struct Header {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

impl Decoder {
    /// A decoder refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            partial: Vec::new(),
            fragments: None,
            max_message,
        }
    }

    /// Whether bytes of an unfinished frame or message are buffered.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty() || self.fragments.is_some()
    }

    /// Feeds bytes read from the socket; calls `on_message` for each complete
    /// message, in order. `on_message` returns `false` to pause: the rest of
    /// the input is kept, and a later `feed` (even of no bytes) resumes with
    /// it. The input is unmasked in place.
    pub fn feed(
        &mut self,
        input: &mut [u8],
        mut on_message: impl FnMut(Message<'_>) -> bool,
    ) -> Result<(), ProtocolError> {
        if self.partial.is_empty() {
            let used = self.decode(input, &mut on_message)?;
            if used < input.len() {
                self.partial.extend_from_slice(&input[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(input);
            let used = self.decode(&mut buf, &mut on_message)?;
            buf.drain(..used);
            self.partial = if buf.is_empty() { Vec::new() } else { buf };
        }
        Ok(())
    }

    /// Decodes whole frames from `buf`; returns how many bytes were used.
    fn decode(
        &mut self,
        buf: &mut [u8],
        on_message: &mut impl FnMut(Message<'_>) -> bool,
    ) -> Result<usize, ProtocolError> {
        let mut at = 0;
        while let Some(h) = self.header(&buf[at..])? {
            let end = at + h.header_len + h.payload_len;
            if end > buf.len() {
                break;
            }
            let payload = &mut buf[at + h.header_len..end];
            unmask(payload, h.mask);
            at = end;
            if !self.frame(h.fin, h.opcode, payload, on_message)? {
                break;
            }
        }
        Ok(at)
    }

    fn header(&self, b: &[u8]) -> Result<Option<Header>, ProtocolError> {
        if b.len() < 2 {
            return Ok(None);
        }
        if b[0] & 0x70 != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        let fin = b[0] & 0x80 != 0;
        let opcode = match b[0] & 0x0f {
            0 => OpCode::Continuation,
            1 => OpCode::Text,
            2 => OpCode::Binary,
            8 => OpCode::Close,
            9 => OpCode::Ping,
            10 => OpCode::Pong,
            other => return Err(ProtocolError::UnknownOpcode(other)),
        };
        if b[1] & 0x80 == 0 {
            return Err(ProtocolError::Unmasked);
        }
        let (len, mut n) = match b[1] & 0x7f {
            126 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([b[2], b[3]]) as u64, 4)
            }
            127 => {
                if b.len() < 10 {
                    return Ok(None);
                }
                (
                    u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")),
                    10,
                )
            }
            l => (l as u64, 2),
        };
        let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
        if control && (!fin || len > 125) {
            return Err(ProtocolError::BadControlFrame);
        }
        let buffered = match (opcode, self.fragments.as_deref()) {
            (OpCode::Continuation, Some((_, f))) => f.len() as u64,
            _ => 0,
        };
        // Saturating: a 64-bit length near u64::MAX must not wrap past the limit.
        if len.saturating_add(buffered) > self.max_message as u64 {
            return Err(ProtocolError::TooLarge);
        }
        if b.len() < n + 4 {
            return Ok(None);
        }
        let mask = b[n..n + 4].try_into().expect("4 bytes");
        n += 4;
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            header_len: n,
            payload_len: len as usize,
        }))
    }

    fn frame(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
        on_message: &mut impl FnMut(Message<'_>) -> bool,
    ) -> Result<bool, ProtocolError> {
        match opcode {
            OpCode::Ping => Ok(on_message(Message::Ping(payload))),
            OpCode::Pong => Ok(on_message(Message::Pong)),
            OpCode::Close => Ok(on_message(Message::Close(parse_close(payload)?))),
            OpCode::Text | OpCode::Binary => {
                if self.fragments.is_some() {
                    return Err(ProtocolError::BadFragment);
                }
                if fin {
                    return deliver(opcode, payload, on_message);
                }
                self.fragments = Some(Box::new((opcode, payload.to_vec())));
                Ok(true)
            }
            OpCode::Continuation => {
                let Some((_, buf)) = self.fragments.as_deref_mut() else {
                    return Err(ProtocolError::BadFragment);
                };
                buf.extend_from_slice(payload);
                if !fin {
                    return Ok(true);
                }
                let (op, buf) = *self.fragments.take().expect("checked above");
                deliver(op, &buf, on_message)
            }
        }
    }
}

fn deliver(
    opcode: OpCode,
    payload: &[u8],
    on_message: &mut impl FnMut(Message<'_>) -> bool,
) -> Result<bool, ProtocolError> {
    if opcode == OpCode::Text {
        let text = std::str::from_utf8(payload).map_err(|_| ProtocolError::InvalidUtf8)?;
        Ok(on_message(Message::Text(text)))
    } else {
        Ok(on_message(Message::Binary(payload)))
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<u16>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::BadClose),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid || std::str::from_utf8(&payload[2..]).is_err() {
                return Err(ProtocolError::BadClose);
            }
            Ok(Some(code))
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

fn encode(mut frame: Frame<'_>) -> (Bytes, u8) {
    let mut head = [0u8; MAX_HEADER];
    let n = frame.fmt_head(&mut head);
    let mut out = BytesMut::with_capacity(n + frame.payload.len());
    out.put_slice(&head[..n]);
    out.put_slice(&frame.payload);
    (out.freeze(), n as u8)
}

/// A complete text frame carrying `payload`, and the payload's offset in it.
pub(crate) fn text_frame(payload: &[u8]) -> (Bytes, u8) {
    encode(Frame::text(Payload::Borrowed(payload)))
}

/// A complete text frame made from `buf` without copying it: its payload
/// is `buf[room..]`, and the header is written into the `room` bytes left
/// free in front (at least [`MAX_HEADER`]). Also the payload's offset.
pub(crate) fn text_frame_in_place(mut buf: Vec<u8>, room: usize) -> (Bytes, u8) {
    let mut head = [0u8; MAX_HEADER];
    let n = Frame::text(Payload::Borrowed(&buf[room..])).fmt_head(&mut head);
    assert!(n <= room, "no room for the frame header");
    buf[room - n..room].copy_from_slice(&head[..n]);
    (Bytes::from(buf).slice(room - n..), n as u8)
}

/// The payload of a text frame this server built (unmasked, one frame);
/// `None` for any other frame.
pub(crate) fn text_payload(frame: &[u8]) -> Option<&[u8]> {
    let (&first, rest) = frame.split_first()?;
    if first != 0x80 | 0x1 {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let skip = match len & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    rest.get(skip..)
}

/// A close frame with `code` and a short `reason` (cut to fit 123 bytes).
pub(crate) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    encode(Frame::close(code, &reason.as_bytes()[..end])).0
}

/// A ping frame; the client's pong echoes `payload`.
pub(crate) fn ping_frame(payload: &[u8]) -> Bytes {
    encode(Frame::new(
        true,
        OpCode::Ping,
        None,
        Payload::Borrowed(payload),
    ))
    .0
}

/// A pong frame echoing a ping's payload.
pub(crate) fn pong_frame(payload: &[u8]) -> Bytes {
    encode(Frame::pong(Payload::Borrowed(payload))).0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser would send it.
    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![(fin as u8) << 7 | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    #[derive(Debug, PartialEq)]
    enum Owned {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>),
    }

    fn collect(d: &mut Decoder, input: &[u8]) -> Result<Vec<Owned>, ProtocolError> {
        let mut out = Vec::new();
        let mut input = input.to_vec();
        d.feed(&mut input, |m| {
            out.push(match m {
                Message::Text(t) => Owned::Text(t.to_owned()),
                Message::Binary(b) => Owned::Binary(b.to_vec()),
                Message::Ping(p) => Owned::Ping(p.to_vec()),
                Message::Pong => Owned::Pong,
                Message::Close(c) => Owned::Close(c),
            });
            true
        })?;
        Ok(out)
    }

    #[test]
    fn whole_frames_decode_without_buffering() {
        let mut d = Decoder::new(8192);
        let mut input = masked(1, true, br#"{"type":"ping","seq":1}"#);
        input.extend(masked(9, true, b"hi"));
        input.extend(masked(10, true, b""));
        let got = collect(&mut d, &input).unwrap();
        assert_eq!(
            got,
            [
                Owned::Text(r#"{"type":"ping","seq":1}"#.into()),
                Owned::Ping(b"hi".to_vec()),
                Owned::Pong
            ]
        );
        assert!(!d.has_partial());
        assert_eq!(d.partial.capacity(), 0, "no buffer kept for whole frames");
    }

    #[test]
    fn frames_split_at_every_byte_boundary() {
        let payload = vec![b'x'; 300];
        let frame = masked(1, true, &payload);
        for cut in 1..frame.len() {
            let mut d = Decoder::new(8192);
            assert!(
                collect(&mut d, &frame[..cut]).unwrap().is_empty(),
                "cut {cut}"
            );
            assert!(d.has_partial());
            let got = collect(&mut d, &frame[cut..]).unwrap();
            assert_eq!(got, [Owned::Text("x".repeat(300))], "cut {cut}");
            assert!(!d.has_partial());
        }
    }

    #[test]
    fn fragmented_message_with_interleaved_ping() {
        let mut d = Decoder::new(8192);
        let mut input = masked(1, false, b"hel");
        input.extend(masked(9, true, b"p"));
        input.extend(masked(0, false, b"lo "));
        input.extend(masked(0, true, b"world"));
        let got = collect(&mut d, &input).unwrap();
        assert_eq!(
            got,
            [
                Owned::Ping(b"p".to_vec()),
                Owned::Text("hello world".into())
            ]
        );
    }

    #[test]
    fn binary_and_close() {
        let mut d = Decoder::new(8192);
        let mut input = masked(2, true, &[0, 1, 2]);
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        input.extend(masked(8, true, &close));
        input.extend(masked(8, true, b""));
        assert_eq!(
            collect(&mut d, &input).unwrap(),
            [
                Owned::Binary(vec![0, 1, 2]),
                Owned::Close(Some(1000)),
                Owned::Close(None)
            ]
        );
    }

    #[test]
    fn oversized_message_is_refused_from_the_header_alone() {
        let mut d = Decoder::new(8192);
        let frame = masked(1, true, &vec![b'a'; 8193]);
        assert_eq!(collect(&mut d, &frame[..8]), Err(ProtocolError::TooLarge));
        let mut d = Decoder::new(8192);
        assert_eq!(
            collect(&mut d, &masked(1, true, &vec![b'a'; 8192]))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn oversized_fragmented_message_is_refused() {
        let mut d = Decoder::new(100);
        let mut input = masked(1, false, &[b'a'; 60]);
        input.extend(masked(0, true, &[b'a'; 41]));
        assert_eq!(collect(&mut d, &input), Err(ProtocolError::TooLarge));
    }

    /// Found by the `ws_frame` fuzz target: a continuation frame declaring
    /// a 64-bit length near `u64::MAX`, after a started message, overflowed
    /// the addition in the size check instead of being refused.
    #[test]
    fn huge_continuation_length_is_refused_not_wrapped() {
        let mut d = Decoder::new(8192);
        let mut input = masked(1, false, b"a");
        input.extend([0x80, 0x80 | 127]);
        input.extend(u64::MAX.to_be_bytes());
        input.extend([0x37, 0xfa, 0x21, 0x3d, b'x']);
        assert_eq!(collect(&mut d, &input), Err(ProtocolError::TooLarge));
    }

    #[test]
    fn protocol_violations() {
        let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
            (vec![0x81, 0x00], ProtocolError::Unmasked),
            (vec![0xc1, 0x80, 0, 0, 0, 0], ProtocolError::ReservedBits),
            (
                vec![0x83, 0x80, 0, 0, 0, 0],
                ProtocolError::UnknownOpcode(3),
            ),
            (masked(9, false, b""), ProtocolError::BadControlFrame),
            (masked(9, true, &[0; 126]), ProtocolError::BadControlFrame),
            (masked(0, true, b"x"), ProtocolError::BadFragment),
            (masked(1, true, &[0xff, 0xfe]), ProtocolError::InvalidUtf8),
            (masked(8, true, &[3]), ProtocolError::BadClose),
            (
                masked(8, true, &999u16.to_be_bytes()),
                ProtocolError::BadClose,
            ),
        ];
        for (input, want) in cases {
            let mut d = Decoder::new(8192);
            assert_eq!(collect(&mut d, &input), Err(want), "{input:?}");
        }
        let mut d = Decoder::new(8192);
        let mut input = masked(1, false, b"a");
        input.extend(masked(1, true, b"b"));
        assert_eq!(collect(&mut d, &input), Err(ProtocolError::BadFragment));
    }

    #[test]
    fn pausing_keeps_the_rest_for_later() {
        let mut d = Decoder::new(8192);
        let mut input = masked(1, true, b"one");
        input.extend(masked(1, true, b"two"));
        let mut seen = Vec::new();
        d.feed(&mut input, |m| {
            seen.push(format!("{m:?}"));
            false
        })
        .unwrap();
        assert_eq!(seen, [r#"Text("one")"#]);
        assert!(d.has_partial());
        assert_eq!(collect(&mut d, &[]).unwrap(), [Owned::Text("two".into())]);
        assert!(!d.has_partial());
    }

    #[test]
    fn server_frames() {
        let (f, at) = text_frame(b"{}");
        assert_eq!(&f[..], &[0x81, 2, b'{', b'}']);
        assert_eq!(at, 2);
        let (f, at) = text_frame(&[b'a'; 70_000]);
        assert_eq!(f[1], 127);
        assert_eq!(at, 10);
        assert_eq!(
            &close_frame(1001, "bye")[..],
            &[0x88, 5, 0x03, 0xe9, b'b', b'y', b'e']
        );
        assert_eq!(close_frame(1000, &"é".repeat(100)).len(), 2 + 2 + 122);
        assert_eq!(&pong_frame(b"x")[..], &[0x8a, 1, b'x']);
    }

    #[test]
    fn text_payload_reads_back_what_text_frame_wrote() {
        for len in [0, 5, 125, 126, 65_535, 65_536, 70_000] {
            let payload = vec![b'x'; len];
            assert_eq!(
                text_payload(&text_frame(&payload).0),
                Some(&payload[..]),
                "{len}"
            );
        }
        assert_eq!(text_payload(&close_frame(1000, "bye")), None);
        assert_eq!(text_payload(&ping_frame(b"p")), None);
        assert_eq!(text_payload(&[]), None);
    }
}
