//! SPDY/3.1 frames on the wire: the [`Frame`] enum, the header block
//! ([`Headers`]) and the two zlib contexts that compress it
//! ([`FrameEncoder`] for what we send, [`FrameDecoder`] for what we
//! receive, [`Framer`] for both).
//!
//! Everything here is a pure function over bytes: no sockets, no tasks, no
//! clock. [`crate::session`] drives it.
//!
//! # Wire format (SPDY/3, draft 3.1)
//!
//! Every frame has an 8-byte header. A control frame starts with the
//! control bit, the version (3) and a 16-bit type; a DATA frame starts with
//! a clear bit and a 31-bit stream id. Both then carry 8 bits of flags and a
//! 24-bit payload length.
//!
//! SYN_STREAM, SYN_REPLY and HEADERS carry a *name/value header block*: a
//! `u32` count, then for each name a `u32`-length-prefixed name and a
//! `u32`-length-prefixed value, where one value may hold several values
//! separated by NUL. The block is compressed with zlib, one stream per
//! direction for the whole session, primed with the SPDY/3 [`DICTIONARY`]
//! and ended with a sync flush after every block. One lost or reordered
//! block therefore breaks every later one: frames must be encoded in the
//! order they are written and decoded in the order they are read, and a
//! zlib error is fatal to the session.
//!
//! # Bounds
//!
//! A control frame's payload is at most [`MAX_CONTROL_PAYLOAD_LEN`]; a
//! decompressed header block at most [`MAX_HEADER_BLOCK_LEN`], with at most
//! [`MAX_HEADER_NAMES`] names and [`MAX_HEADER_VALUES`] values; a SETTINGS
//! frame at most [`MAX_SETTINGS`] entries. DATA frames are accepted up to the
//! 24-bit field's maximum ([`MAX_DATA_PAYLOAD_LEN`], 16 MiB): spdystream
//! writes one DATA frame per `Write` call of any size, so a smaller bound
//! would break real peers.
//!
//! # Compatibility with moby/spdystream (kubectl, the CRI streaming server)
//!
//! spdystream treats a header it dislikes as a fatal read error and drops
//! the whole connection: upper-case names, a name sent twice, and the
//! hop-by-hop headers (`connection`, `host`, `keep-alive`,
//! `proxy-connection`, `transfer-encoding`). [`Headers`] lower-cases names
//! and the encoder groups repeated names into one NUL-joined value and
//! refuses the hop-by-hop names, so we never send any of those. It also
//! rejects a PING with id 0 and an RST_STREAM with status 0, which the
//! encoder refuses too. When decoding we are lenient where being strict
//! would only lose a session (upper-case names are lower-cased, repeated
//! names are merged).

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame (SPDY/3.1 keeps 3).
pub const VERSION: u16 = 3;

/// Bytes in every frame header.
pub const FRAME_HEADER_LEN: usize = 8;

/// The largest control frame payload we decode. The header blocks that
/// kubectl and the CRI streaming server send are well under 1 KiB; the bound
/// only has to keep a hostile peer from making us buffer 16 MiB of garbage.
pub const MAX_CONTROL_PAYLOAD_LEN: usize = 1 << 20;

/// The largest DATA payload: the 24-bit length field's maximum.
pub const MAX_DATA_PAYLOAD_LEN: usize = 0x00ff_ffff;

/// The largest decompressed header block, in either direction. Bounds the
/// memory a "zip bomb" header block can make us allocate.
pub const MAX_HEADER_BLOCK_LEN: usize = 64 << 10;

/// The most header names in one block.
pub const MAX_HEADER_NAMES: usize = 128;

/// The most header values in one block, after splitting NUL-joined values.
pub const MAX_HEADER_VALUES: usize = 1024;

/// The most entries in one SETTINGS frame (SPDY/3 defines 8 ids).
pub const MAX_SETTINGS: usize = 64;

/// The largest stream id (31 bits).
pub const MAX_STREAM_ID: StreamId = 0x7fff_ffff;

/// The Adler-32 of [`DICTIONARY`]. A zlib stream primed with a dictionary
/// names it by this checksum in its header (DICTID); Go's
/// `zlib.NewReaderDict`, which spdystream uses, refuses a stream whose
/// DICTID differs from the checksum of its own copy of the dictionary, and
/// so do we. The same four bytes (`e3 c6 a7 c2`) follow `78 f9` at the
/// start of the first header block spdystream sends.
pub const DICTIONARY_ADLER32: u32 = 0xe3c6_a7c2;

/// The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1):
/// 57 `u32`-length-prefixed words, then a run of status lines, dates and
/// media types. The draft's bytes (the copy in spdystream's
/// `spdy/dictionary.go` is identical), written out word by word and checked
/// by a test against their length (1423) and Adler-32
/// ([`DICTIONARY_ADLER32`]).
///
/// Each line below ends with `\` so the literal continues on the next line
/// without the newline; no line begins with a space, which the continuation
/// would swallow.
#[rustfmt::skip]
pub const DICTIONARY: &[u8; 1423] = b"\
\0\0\0\x07options\
\0\0\0\x04head\
\0\0\0\x04post\
\0\0\0\x03put\
\0\0\0\x06delete\
\0\0\0\x05trace\
\0\0\0\x06accept\
\0\0\0\x0eaccept-charset\
\0\0\0\x0faccept-encoding\
\0\0\0\x0faccept-language\
\0\0\0\x0daccept-ranges\
\0\0\0\x03age\
\0\0\0\x05allow\
\0\0\0\x0dauthorization\
\0\0\0\x0dcache-control\
\0\0\0\x0aconnection\
\0\0\0\x0ccontent-base\
\0\0\0\x10content-encoding\
\0\0\0\x10content-language\
\0\0\0\x0econtent-length\
\0\0\0\x10content-location\
\0\0\0\x0bcontent-md5\
\0\0\0\x0dcontent-range\
\0\0\0\x0ccontent-type\
\0\0\0\x04date\
\0\0\0\x04etag\
\0\0\0\x06expect\
\0\0\0\x07expires\
\0\0\0\x04from\
\0\0\0\x04host\
\0\0\0\x08if-match\
\0\0\0\x11if-modified-since\
\0\0\0\x0dif-none-match\
\0\0\0\x08if-range\
\0\0\0\x13if-unmodified-since\
\0\0\0\x0dlast-modified\
\0\0\0\x08location\
\0\0\0\x0cmax-forwards\
\0\0\0\x06pragma\
\0\0\0\x12proxy-authenticate\
\0\0\0\x13proxy-authorization\
\0\0\0\x05range\
\0\0\0\x07referer\
\0\0\0\x0bretry-after\
\0\0\0\x06server\
\0\0\0\x02te\
\0\0\0\x07trailer\
\0\0\0\x11transfer-encoding\
\0\0\0\x07upgrade\
\0\0\0\x0auser-agent\
\0\0\0\x04vary\
\0\0\0\x03via\
\0\0\0\x07warning\
\0\0\0\x10www-authenticate\
\0\0\0\x06method\
\0\0\0\x03get\
\0\0\0\x06status\
\0\0\0\x06200 OK\
\0\0\0\x07version\
\0\0\0\x08HTTP/1.1\
\0\0\0\x03url\
\0\0\0\x06public\
\0\0\0\x0aset-cookie\
\0\0\0\x0akeep-alive\
\0\0\0\x06origin\
100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information\
204 No Content\
301 Moved Permanently\
400 Bad Request\
401 Unauthorized\
403 Forbidden\
404 Not Found\
500 Internal Server Error\
501 Not Implemented\
503 Service Unavailable\
Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec \
00:00:00 \
Mon, Tue, Wed, Thu, Fri, Sat, Sun, \
GMT\
chunked,text/html,image/png,image/jpg,image/gif,\
application/xml,application/xhtml+xml,\
text/plain,text/javascript,\
publicprivate\
max-age=\
gzip,deflate,sdch\
charset=utf-8\
charset=iso-8859-1,\
utf-,*,enq=0.\
";

/// A stream id: odd when the client opened the stream, even when the server
/// did; 0 only in session-wide frames.
pub type StreamId = u32;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// Header names spdystream refuses in a SYN_STREAM (and, for the even
/// stream ids a server opens, in HEADERS): receiving one ends its
/// connection.
const HOP_BY_HOP_REQUEST: [&str; 5] = [
    "connection",
    "host",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
];
/// Header names spdystream refuses in a SYN_REPLY.
const HOP_BY_HOP_REPLY: [&str; 4] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
];

/// Why a frame could not be encoded or decoded. Every decoding error ends
/// the session: after one, the byte stream or the header compression
/// context can no longer be trusted.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A control frame with a version other than 3.
    #[error("SPDY version {0} is not supported (only 3)")]
    UnsupportedVersion(u16),
    /// A payload over its bound.
    #[error("{kind} payload of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The frame type.
        kind: &'static str,
        /// The payload length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A payload too short for its fixed fields, or of the wrong fixed size.
    #[error("{kind} payload of {len} bytes has the wrong length")]
    InvalidLength {
        /// The frame type.
        kind: &'static str,
        /// The payload length.
        len: usize,
    },
    /// Stream id 0 (or over 31 bits) where a stream is required.
    #[error("{kind} has invalid stream id {id}")]
    InvalidStreamId {
        /// The frame type.
        kind: &'static str,
        /// The id.
        id: u32,
    },
    /// A field outside its range (priority over 7, a 24-bit SETTINGS id
    /// over 24 bits, PING id 0, RST_STREAM status 0, ...).
    #[error("{kind} has invalid {field} {value}")]
    InvalidField {
        /// The frame type.
        kind: &'static str,
        /// The field.
        field: &'static str,
        /// Its value.
        value: u32,
    },
    /// More SETTINGS entries than [`MAX_SETTINGS`].
    #[error("SETTINGS has {count} entries, over the limit of {max}")]
    TooManySettings {
        /// Entries in the frame.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// A header block that decompresses (or, to send, encodes) to more than
    /// [`MAX_HEADER_BLOCK_LEN`] bytes.
    #[error("header block is over the {max}-byte limit")]
    HeaderBlockTooLarge {
        /// The bound.
        max: usize,
    },
    /// More header names or values than the bounds allow.
    #[error("header block has {count} {what}, over the limit of {max}")]
    TooManyHeaders {
        /// `"names"` or `"values"`.
        what: &'static str,
        /// How many.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// A header block whose lengths point past its end.
    #[error("header block is truncated")]
    HeaderBlockTruncated,
    /// Bytes left after a header block's last name/value pair.
    #[error("header block has {0} bytes after its last name/value pair")]
    HeaderBlockTrailing(usize),
    /// A header name that is empty or holds a NUL.
    #[error("header name {0:?} is empty or holds a NUL")]
    InvalidHeaderName(String),
    /// A header value that holds a NUL (NUL separates values on the wire).
    #[error("header {0:?} has a value holding a NUL")]
    NulInHeaderValue(String),
    /// A header name or value that is not UTF-8.
    #[error("header block holds a name or value that is not UTF-8")]
    HeaderNotUtf8,
    /// A header spdystream refuses in this frame type (it would drop the
    /// connection).
    #[error("header {name:?} may not be sent in {kind}")]
    ForbiddenHeader {
        /// The frame type.
        kind: &'static str,
        /// The header name.
        name: String,
    },
    /// The peer's zlib stream is primed with another dictionary.
    #[error(
        "header block uses zlib dictionary {got:#010x}, not SPDY/3's {DICTIONARY_ADLER32:#010x}"
    )]
    WrongDictionary {
        /// The DICTID in the peer's zlib header.
        got: u32,
    },
    /// The peer ended its zlib stream; no later header block could be read.
    #[error("header compression stream ended")]
    HeaderStreamEnded,
    /// A header block zlib cannot inflate.
    #[error("header block: {0}")]
    Decompress(#[from] flate2::DecompressError),
    /// zlib failed to deflate a header block.
    #[error("header compression: {0}")]
    Compress(#[from] flate2::CompressError),
    /// An earlier zlib error left this direction's context unusable.
    #[error("header compression context is unusable after an earlier error")]
    Poisoned,
}

/// An RST_STREAM status code. Unknown codes are kept as they are.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RstStatus(pub u32);

impl RstStatus {
    /// A generic error: the peer broke the protocol on this stream.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// A frame for a stream that is not open.
    pub const INVALID_STREAM: Self = Self(2);
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: Self = Self(3);
    /// The peer does not speak this version.
    pub const UNSUPPORTED_VERSION: Self = Self(4);
    /// The stream is no longer needed (spdystream's `Reset` and kubectl's
    /// teardown send this).
    pub const CANCEL: Self = Self(5);
    /// An internal error.
    pub const INTERNAL_ERROR: Self = Self(6);
    /// The peer broke flow control.
    pub const FLOW_CONTROL_ERROR: Self = Self(7);
    /// A SYN_STREAM for a stream already open.
    pub const STREAM_IN_USE: Self = Self(8);
    /// Data for a half-closed stream.
    pub const STREAM_ALREADY_CLOSED: Self = Self(9);
    /// A frame too large to process.
    pub const FRAME_TOO_LARGE: Self = Self(11);

    /// The code's name in the draft, if it has one.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "PROTOCOL_ERROR",
            2 => "INVALID_STREAM",
            3 => "REFUSED_STREAM",
            4 => "UNSUPPORTED_VERSION",
            5 => "CANCEL",
            6 => "INTERNAL_ERROR",
            7 => "FLOW_CONTROL_ERROR",
            8 => "STREAM_IN_USE",
            9 => "STREAM_ALREADY_CLOSED",
            10 => "INVALID_CREDENTIALS",
            11 => "FRAME_TOO_LARGE",
            _ => return None,
        })
    }
}

impl fmt::Display for RstStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "status {}", self.0),
        }
    }
}

impl fmt::Debug for RstStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RstStatus({self})")
    }
}

/// A GOAWAY status code (the values spdystream uses). Unknown codes are
/// kept as they are.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoAwayStatus(pub u32);

impl GoAwayStatus {
    /// A normal end of the session.
    pub const OK: Self = Self(0);
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// An internal error.
    pub const INTERNAL_ERROR: Self = Self(2);
}

impl fmt::Display for GoAwayStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("OK"),
            1 => f.write_str("PROTOCOL_ERROR"),
            2 => f.write_str("INTERNAL_ERROR"),
            n => write!(f, "status {n}"),
        }
    }
}

impl fmt::Debug for GoAwayStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoAwayStatus({self})")
    }
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// `FLAG_SETTINGS_PERSIST_VALUE` (1) or `FLAG_SETTINGS_PERSISTED` (2).
    pub flags: u8,
    /// The setting's id (24 bits), e.g. [`Setting::INITIAL_WINDOW_SIZE`].
    pub id: u32,
    /// Its value.
    pub value: u32,
}

impl Setting {
    /// The most streams the sender allows the receiver to open.
    pub const MAX_CONCURRENT_STREAMS: u32 = 4;
    /// The sender's initial per-stream receive window.
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

/// A name/value header block. Names are kept lower-case (SPDY requires
/// it); a name may have several values, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces every value of `name` with `value`.
    pub fn insert(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        self.entries.retain(|(n, _)| *n != name);
        self.entries.push((name, value.to_owned()));
    }

    /// Adds `value` to the values of `name`.
    pub fn append(&mut self, name: &str, value: &str) {
        self.entries
            .push((name.to_ascii_lowercase(), value.to_owned()));
    }

    /// The first value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (any case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every (name, value) pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The names in order of first appearance, each with its values: the
    /// shape of the wire block, where a name appears once.
    fn grouped(&self) -> Vec<(&str, Vec<&str>)> {
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, value) in &self.entries {
            match groups.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push(value),
                None => groups.push((name, vec![value])),
            }
        }
        groups
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.append(name.as_ref(), value.as_ref());
        }
        headers
    }
}

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// The new stream (odd from a client, even from a server).
        stream_id: StreamId,
        /// The stream this one is pushed for, or 0.
        associated_to: StreamId,
        /// 0 (highest) to 7.
        priority: u8,
        /// The client-certificate slot (SPDY/3; always 0 in 3.1).
        slot: u8,
        /// The sender sends nothing more on this stream.
        fin: bool,
        /// The receiver may not send on this stream.
        unidirectional: bool,
        /// The stream's headers.
        headers: Headers,
    },
    /// Accepts a stream the peer opened.
    SynReply {
        /// The stream.
        stream_id: StreamId,
        /// The sender sends nothing more on this stream.
        fin: bool,
        /// Reply headers (spdystream's servers send none).
        headers: Headers,
    },
    /// Ends a stream abnormally, both directions at once.
    RstStream {
        /// The stream.
        stream_id: StreamId,
        /// Why.
        status: RstStatus,
    },
    /// Session parameters.
    Settings {
        /// Forget persisted settings.
        clear: bool,
        /// The entries.
        entries: Vec<Setting>,
    },
    /// A liveness probe, echoed by the receiver when the sender's parity is
    /// not its own (clients use odd ids, servers even ones).
    Ping {
        /// The probe's id.
        id: u32,
    },
    /// The sender accepts no new streams.
    GoAway {
        /// The last stream the sender accepted from the receiver.
        last_good_stream_id: StreamId,
        /// Why.
        status: GoAwayStatus,
    },
    /// More headers on an open stream.
    Headers {
        /// The stream.
        stream_id: StreamId,
        /// The sender sends nothing more on this stream.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// Flow control credit (stream 0: the whole session, in 3.1).
    WindowUpdate {
        /// The stream, or 0.
        stream_id: StreamId,
        /// Bytes of credit (31 bits).
        delta: u32,
    },
    /// Stream data.
    Data {
        /// The stream.
        stream_id: StreamId,
        /// The last frame the sender sends on this stream.
        fin: bool,
        /// The bytes.
        payload: Bytes,
    },
}

impl Frame {
    /// The frame type's name in the draft, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::SynStream { .. } => "SYN_STREAM",
            Frame::SynReply { .. } => "SYN_REPLY",
            Frame::RstStream { .. } => "RST_STREAM",
            Frame::Settings { .. } => "SETTINGS",
            Frame::Ping { .. } => "PING",
            Frame::GoAway { .. } => "GOAWAY",
            Frame::Headers { .. } => "HEADERS",
            Frame::WindowUpdate { .. } => "WINDOW_UPDATE",
            Frame::Data { .. } => "DATA",
        }
    }
}

/// Checks that `headers` can be sent in a frame of type `kind`
/// (`"SYN_STREAM"`, `"SYN_REPLY"` or `"HEADERS"`) without the peer dropping
/// the connection, and returns the encoded, uncompressed block.
///
/// The session calls this before it queues a frame, so a caller's bad
/// header is a typed error and never reaches the compressor.
pub fn header_block(kind: &'static str, headers: &Headers) -> Result<Vec<u8>, FrameError> {
    let forbidden: &[&str] = if kind == "SYN_REPLY" {
        &HOP_BY_HOP_REPLY
    } else {
        &HOP_BY_HOP_REQUEST
    };
    let groups = headers.grouped();
    if groups.len() > MAX_HEADER_NAMES {
        return Err(FrameError::TooManyHeaders {
            what: "names",
            count: groups.len(),
            max: MAX_HEADER_NAMES,
        });
    }
    if headers.len() > MAX_HEADER_VALUES {
        return Err(FrameError::TooManyHeaders {
            what: "values",
            count: headers.len(),
            max: MAX_HEADER_VALUES,
        });
    }
    let mut block = Vec::new();
    put_len(&mut block, groups.len());
    for (name, values) in groups {
        if name.is_empty() || name.contains('\0') {
            return Err(FrameError::InvalidHeaderName(name.to_owned()));
        }
        if forbidden.contains(&name) {
            return Err(FrameError::ForbiddenHeader {
                kind,
                name: name.to_owned(),
            });
        }
        if values.iter().any(|v| v.contains('\0')) {
            return Err(FrameError::NulInHeaderValue(name.to_owned()));
        }
        put_len(&mut block, name.len());
        block.extend_from_slice(name.as_bytes());
        let value_len = values.iter().map(|v| v.len()).sum::<usize>() + values.len() - 1;
        put_len(&mut block, value_len);
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                block.push(0);
            }
            block.extend_from_slice(value.as_bytes());
        }
        if block.len() > MAX_HEADER_BLOCK_LEN {
            return Err(FrameError::HeaderBlockTooLarge {
                max: MAX_HEADER_BLOCK_LEN,
            });
        }
    }
    Ok(block)
}

/// Appends a length as the wire's `u32`. Callers bound `len` far below
/// `u32::MAX` ([`MAX_HEADER_BLOCK_LEN`]); saturating keeps this total.
fn put_len(block: &mut Vec<u8>, len: usize) {
    block.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

/// Parses an uncompressed header block.
pub fn parse_header_block(mut block: &[u8]) -> Result<Headers, FrameError> {
    let count = take_u32(&mut block)? as usize;
    if count > MAX_HEADER_NAMES {
        return Err(FrameError::TooManyHeaders {
            what: "names",
            count,
            max: MAX_HEADER_NAMES,
        });
    }
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = take_prefixed(&mut block)?;
        let name = std::str::from_utf8(name).map_err(|_| FrameError::HeaderNotUtf8)?;
        if name.is_empty() || name.contains('\0') {
            return Err(FrameError::InvalidHeaderName(name.to_owned()));
        }
        let value = take_prefixed(&mut block)?;
        let value = std::str::from_utf8(value).map_err(|_| FrameError::HeaderNotUtf8)?;
        for value in value.split('\0') {
            if headers.len() == MAX_HEADER_VALUES {
                return Err(FrameError::TooManyHeaders {
                    what: "values",
                    count: MAX_HEADER_VALUES + 1,
                    max: MAX_HEADER_VALUES,
                });
            }
            headers.append(name, value);
        }
    }
    if !block.is_empty() {
        return Err(FrameError::HeaderBlockTrailing(block.len()));
    }
    Ok(headers)
}

fn take_u32(block: &mut &[u8]) -> Result<u32, FrameError> {
    if block.len() < 4 {
        return Err(FrameError::HeaderBlockTruncated);
    }
    Ok(block.get_u32())
}

fn take_prefixed<'a>(block: &mut &'a [u8]) -> Result<&'a [u8], FrameError> {
    let len = take_u32(block)? as usize;
    if block.len() < len {
        return Err(FrameError::HeaderBlockTruncated);
    }
    let (bytes, rest) = block.split_at(len);
    *block = rest;
    Ok(bytes)
}

/// Encodes frames: owns the zlib context for the header blocks we send.
pub struct FrameEncoder {
    deflate: Compress,
    /// The dictionary goes in before the first block (zlib requires it
    /// before any data); doing it lazily keeps [`FrameEncoder::new`]
    /// infallible.
    primed: bool,
    /// Set while the context is mid-block; still set after an error.
    poisoned: bool,
}

impl fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameEncoder")
            .field("total_in", &self.deflate.total_in())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameEncoder {
    /// A fresh context, for one session's outgoing direction.
    pub fn new() -> Self {
        Self {
            deflate: Compress::new(Compression::default(), true),
            primed: false,
            poisoned: false,
        }
    }

    /// Appends `frame` to `dst`. On error nothing is appended; the context
    /// stays usable unless the error is [`FrameError::Compress`].
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                fin,
                unidirectional,
                headers,
            } => {
                let kind = "SYN_STREAM";
                check_stream_id(kind, *stream_id)?;
                if *associated_to > MAX_STREAM_ID {
                    return Err(FrameError::InvalidStreamId {
                        kind,
                        id: *associated_to,
                    });
                }
                if *priority > 7 {
                    return Err(FrameError::InvalidField {
                        kind,
                        field: "priority",
                        value: u32::from(*priority),
                    });
                }
                let block = header_block(kind, headers)?;
                let mut flags = 0;
                if *fin {
                    flags |= FLAG_FIN;
                }
                if *unidirectional {
                    flags |= FLAG_UNIDIRECTIONAL;
                }
                let mut fixed = [0u8; 10];
                fixed[..4].copy_from_slice(&stream_id.to_be_bytes());
                fixed[4..8].copy_from_slice(&associated_to.to_be_bytes());
                fixed[8] = priority << 5;
                fixed[9] = *slot;
                self.put_with_block(TYPE_SYN_STREAM, flags, &fixed, &block, dst)
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                let kind = "SYN_REPLY";
                check_stream_id(kind, *stream_id)?;
                let block = header_block(kind, headers)?;
                let flags = if *fin { FLAG_FIN } else { 0 };
                self.put_with_block(TYPE_SYN_REPLY, flags, &stream_id.to_be_bytes(), &block, dst)
            }
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let kind = "HEADERS";
                check_stream_id(kind, *stream_id)?;
                let block = header_block(kind, headers)?;
                let flags = if *fin { FLAG_FIN } else { 0 };
                self.put_with_block(TYPE_HEADERS, flags, &stream_id.to_be_bytes(), &block, dst)
            }
            Frame::RstStream { stream_id, status } => {
                let kind = "RST_STREAM";
                check_stream_id(kind, *stream_id)?;
                if status.0 == 0 {
                    return Err(FrameError::InvalidField {
                        kind,
                        field: "status",
                        value: 0,
                    });
                }
                put_control_header(dst, TYPE_RST_STREAM, 0, 8);
                dst.put_u32(*stream_id);
                dst.put_u32(status.0);
                Ok(())
            }
            Frame::Settings { clear, entries } => {
                if entries.len() > MAX_SETTINGS {
                    return Err(FrameError::TooManySettings {
                        count: entries.len(),
                        max: MAX_SETTINGS,
                    });
                }
                if let Some(bad) = entries.iter().find(|s| s.id > 0x00ff_ffff) {
                    return Err(FrameError::InvalidField {
                        kind: "SETTINGS",
                        field: "id",
                        value: bad.id,
                    });
                }
                let flags = if *clear { FLAG_CLEAR_SETTINGS } else { 0 };
                put_control_header(dst, TYPE_SETTINGS, flags, 4 + 8 * entries.len());
                dst.put_u32(entries.len() as u32);
                for s in entries {
                    dst.put_u32(u32::from(s.flags) << 24 | s.id);
                    dst.put_u32(s.value);
                }
                Ok(())
            }
            Frame::Ping { id } => {
                if *id == 0 {
                    return Err(FrameError::InvalidField {
                        kind: "PING",
                        field: "id",
                        value: 0,
                    });
                }
                put_control_header(dst, TYPE_PING, 0, 4);
                dst.put_u32(*id);
                Ok(())
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                if *last_good_stream_id > MAX_STREAM_ID {
                    return Err(FrameError::InvalidStreamId {
                        kind: "GOAWAY",
                        id: *last_good_stream_id,
                    });
                }
                put_control_header(dst, TYPE_GOAWAY, 0, 8);
                dst.put_u32(*last_good_stream_id);
                dst.put_u32(status.0);
                Ok(())
            }
            Frame::WindowUpdate { stream_id, delta } => {
                if *stream_id > MAX_STREAM_ID {
                    return Err(FrameError::InvalidStreamId {
                        kind: "WINDOW_UPDATE",
                        id: *stream_id,
                    });
                }
                if *delta == 0 || *delta > 0x7fff_ffff {
                    return Err(FrameError::InvalidField {
                        kind: "WINDOW_UPDATE",
                        field: "delta",
                        value: *delta,
                    });
                }
                put_control_header(dst, TYPE_WINDOW_UPDATE, 0, 8);
                dst.put_u32(*stream_id);
                dst.put_u32(*delta);
                Ok(())
            }
            Frame::Data {
                stream_id,
                fin,
                payload,
            } => {
                check_stream_id("DATA", *stream_id)?;
                if payload.len() > MAX_DATA_PAYLOAD_LEN {
                    return Err(FrameError::TooLarge {
                        kind: "DATA",
                        len: payload.len(),
                        max: MAX_DATA_PAYLOAD_LEN,
                    });
                }
                dst.reserve(FRAME_HEADER_LEN + payload.len());
                dst.put_u32(*stream_id);
                let flags = if *fin { FLAG_FIN } else { 0 };
                dst.put_u32(u32::from(flags) << 24 | payload.len() as u32);
                dst.extend_from_slice(payload);
                Ok(())
            }
        }
    }

    /// Appends a control frame whose payload is `fixed` then the compressed
    /// `block`.
    fn put_with_block(
        &mut self,
        frame_type: u16,
        flags: u8,
        fixed: &[u8],
        block: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let compressed = self.deflate(block)?;
        let len = fixed.len() + compressed.len();
        if len > MAX_CONTROL_PAYLOAD_LEN {
            // Unreachable with blocks bounded at 64 KiB, but the
            // compressor has already moved on: the peer's would not.
            self.poisoned = true;
            return Err(FrameError::TooLarge {
                kind: "header block",
                len,
                max: MAX_CONTROL_PAYLOAD_LEN,
            });
        }
        put_control_header(dst, frame_type, flags, len);
        dst.extend_from_slice(fixed);
        dst.extend_from_slice(&compressed);
        Ok(())
    }

    /// Compresses one header block and sync-flushes, so the peer can
    /// inflate it whole without waiting for the next one.
    fn deflate(&mut self, block: &[u8]) -> Result<Vec<u8>, FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        self.poisoned = true;
        if !self.primed {
            self.deflate.set_dictionary(DICTIONARY)?;
            self.primed = true;
        }
        // Deflate's worst case is about 5 bytes per 16 KiB stored block,
        // plus the zlib header and the flush marker.
        let mut out = Vec::with_capacity(block.len() + block.len() / 8 + 64);
        let mut consumed = 0;
        // Each round either consumes input or doubles the output buffer,
        // so a handful of rounds always suffices; the bound turns a zlib
        // surprise into an error instead of a spin.
        for _ in 0..32 {
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)?;
            consumed += (self.deflate.total_in() - before) as usize;
            if consumed == block.len() && out.len() < out.capacity() {
                self.poisoned = false;
                return Ok(out);
            }
            out.reserve(out.capacity().max(64));
        }
        Err(FrameError::HeaderBlockTooLarge {
            max: MAX_HEADER_BLOCK_LEN,
        })
    }
}

fn check_stream_id(kind: &'static str, id: StreamId) -> Result<(), FrameError> {
    if id == 0 || id > MAX_STREAM_ID {
        return Err(FrameError::InvalidStreamId { kind, id });
    }
    Ok(())
}

fn put_control_header(dst: &mut BytesMut, frame_type: u16, flags: u8, len: usize) {
    dst.reserve(FRAME_HEADER_LEN + len);
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(frame_type);
    // Callers bound `len` to 24 bits.
    dst.put_u32(u32::from(flags) << 24 | (len as u32 & 0x00ff_ffff));
}

/// Decodes frames: owns the zlib context for the header blocks we receive.
pub struct FrameDecoder {
    inflate: Decompress,
    /// Set while the context is mid-block; still set after an error.
    poisoned: bool,
}

impl fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("total_in", &self.inflate.total_in())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A fresh context, for one session's incoming direction.
    pub fn new() -> Self {
        Self {
            inflate: Decompress::new(true),
            poisoned: false,
        }
    }

    /// Takes the first whole frame off the front of `src`.
    ///
    /// Returns `Ok(None)` while `src` holds less than a frame (and reserves
    /// room for the rest). A frame header whose length is over its bound
    /// is an error at once, before its payload arrives. Control frames of
    /// a type this draft does not define are skipped, as the draft
    /// requires.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if src.len() < FRAME_HEADER_LEN {
                return Ok(None);
            }
            let first = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
            let flags = src[4];
            let len = u32::from_be_bytes([0, src[5], src[6], src[7]]) as usize;
            let control = first & 0x8000_0000 != 0;
            if control {
                let version = ((first >> 16) & 0x7fff) as u16;
                if version != VERSION {
                    return Err(FrameError::UnsupportedVersion(version));
                }
                if len > MAX_CONTROL_PAYLOAD_LEN {
                    return Err(FrameError::TooLarge {
                        kind: "control frame",
                        len,
                        max: MAX_CONTROL_PAYLOAD_LEN,
                    });
                }
            } else if first == 0 {
                return Err(FrameError::InvalidStreamId {
                    kind: "DATA",
                    id: 0,
                });
            }
            if src.len() < FRAME_HEADER_LEN + len {
                src.reserve(FRAME_HEADER_LEN + len - src.len());
                return Ok(None);
            }
            src.advance(FRAME_HEADER_LEN);
            let payload = src.split_to(len);
            if !control {
                return Ok(Some(Frame::Data {
                    stream_id: first,
                    fin: flags & FLAG_FIN != 0,
                    payload: payload.freeze(),
                }));
            }
            if let Some(frame) = self.control((first & 0xffff) as u16, flags, &payload)? {
                return Ok(Some(frame));
            }
        }
    }

    /// Parses one control frame's payload; `None` for an unknown type.
    fn control(
        &mut self,
        frame_type: u16,
        flags: u8,
        p: &[u8],
    ) -> Result<Option<Frame>, FrameError> {
        let fin = flags & FLAG_FIN != 0;
        let frame = match frame_type {
            TYPE_SYN_STREAM => {
                let kind = "SYN_STREAM";
                if p.len() < 10 {
                    return Err(FrameError::InvalidLength { kind, len: p.len() });
                }
                // Inflate before any other check: the block is part of the
                // session's zlib stream whatever else is wrong here.
                let headers = self.headers(&p[10..])?;
                let stream_id = be_u32(&p[0..4]) & MAX_STREAM_ID;
                check_stream_id(kind, stream_id)?;
                Frame::SynStream {
                    stream_id,
                    associated_to: be_u32(&p[4..8]) & MAX_STREAM_ID,
                    priority: p[8] >> 5,
                    slot: p[9],
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let kind = if frame_type == TYPE_SYN_REPLY {
                    "SYN_REPLY"
                } else {
                    "HEADERS"
                };
                if p.len() < 4 {
                    return Err(FrameError::InvalidLength { kind, len: p.len() });
                }
                let headers = self.headers(&p[4..])?;
                let stream_id = be_u32(&p[0..4]) & MAX_STREAM_ID;
                check_stream_id(kind, stream_id)?;
                if frame_type == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM => {
                let kind = "RST_STREAM";
                fixed_len(kind, p, 8)?;
                let stream_id = be_u32(&p[0..4]) & MAX_STREAM_ID;
                check_stream_id(kind, stream_id)?;
                let status = be_u32(&p[4..8]);
                if status == 0 {
                    return Err(FrameError::InvalidField {
                        kind,
                        field: "status",
                        value: 0,
                    });
                }
                Frame::RstStream {
                    stream_id,
                    status: RstStatus(status),
                }
            }
            TYPE_SETTINGS => {
                let kind = "SETTINGS";
                if p.len() < 4 {
                    return Err(FrameError::InvalidLength { kind, len: p.len() });
                }
                let count = be_u32(&p[0..4]) as usize;
                if count > MAX_SETTINGS {
                    return Err(FrameError::TooManySettings {
                        count,
                        max: MAX_SETTINGS,
                    });
                }
                fixed_len(kind, p, 4 + 8 * count)?;
                let entries = p[4..]
                    .chunks_exact(8)
                    .map(|e| {
                        let flags_id = be_u32(&e[0..4]);
                        Setting {
                            flags: (flags_id >> 24) as u8,
                            id: flags_id & 0x00ff_ffff,
                            value: be_u32(&e[4..8]),
                        }
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            TYPE_PING => {
                fixed_len("PING", p, 4)?;
                Frame::Ping { id: be_u32(p) }
            }
            TYPE_GOAWAY => {
                fixed_len("GOAWAY", p, 8)?;
                Frame::GoAway {
                    last_good_stream_id: be_u32(&p[0..4]) & MAX_STREAM_ID,
                    status: GoAwayStatus(be_u32(&p[4..8])),
                }
            }
            TYPE_WINDOW_UPDATE => {
                fixed_len("WINDOW_UPDATE", p, 8)?;
                Frame::WindowUpdate {
                    stream_id: be_u32(&p[0..4]) & MAX_STREAM_ID,
                    delta: be_u32(&p[4..8]) & 0x7fff_ffff,
                }
            }
            _ => {
                tracing::trace!(
                    frame_type,
                    len = p.len(),
                    "skipping unknown SPDY control frame"
                );
                return Ok(None);
            }
        };
        Ok(Some(frame))
    }

    /// Inflates and parses one header block.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let block = self.inflate(compressed)?;
        parse_header_block(&block)
    }

    /// Inflates one header block, which ends with a sync flush.
    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        self.poisoned = true;
        let limit = MAX_HEADER_BLOCK_LEN + 1;
        let mut out = Vec::with_capacity(input.len().saturating_mul(4).clamp(256, limit));
        let mut consumed = 0;
        loop {
            let in_before = self.inflate.total_in();
            let out_before = out.len();
            let result =
                self.inflate
                    .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - in_before) as usize;
            consumed += used;
            match result {
                Ok(Status::StreamEnd) => return Err(FrameError::HeaderStreamEnded),
                Ok(Status::Ok | Status::BufError) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ADLER32) => {
                        self.inflate.set_dictionary(DICTIONARY)?;
                        continue;
                    }
                    Some(got) => return Err(FrameError::WrongDictionary { got }),
                    None => return Err(FrameError::Decompress(e)),
                },
            }
            if out.len() > MAX_HEADER_BLOCK_LEN {
                return Err(FrameError::HeaderBlockTooLarge {
                    max: MAX_HEADER_BLOCK_LEN,
                });
            }
            if out.len() < out.capacity() {
                // zlib stopped with room to spare: it has used all the
                // input it can.
                if consumed == input.len() {
                    self.poisoned = false;
                    return Ok(out);
                }
                if used == 0 && out.len() == out_before {
                    // Input left, room left, and zlib moved neither.
                    return Err(FrameError::HeaderBlockTruncated);
                }
                continue;
            }
            if out.capacity() >= limit {
                return Err(FrameError::HeaderBlockTooLarge {
                    max: MAX_HEADER_BLOCK_LEN,
                });
            }
            let grow = out.capacity().min(limit - out.capacity());
            out.reserve_exact(grow);
        }
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn fixed_len(kind: &'static str, p: &[u8], want: usize) -> Result<(), FrameError> {
    if p.len() != want {
        return Err(FrameError::InvalidLength { kind, len: p.len() });
    }
    Ok(())
}

/// Both directions of one session's frames: [`FrameEncoder`] for what we
/// send and [`FrameDecoder`] for what we receive, each with its own zlib
/// stream for the whole session.
#[derive(Debug, Default)]
pub struct Framer {
    encoder: FrameEncoder,
    decoder: FrameDecoder,
}

impl Framer {
    /// Fresh contexts for a new session.
    pub fn new() -> Self {
        Self::default()
    }

    /// See [`FrameEncoder::encode`].
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encoder.encode(frame, dst)
    }

    /// See [`FrameDecoder::decode`].
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.decoder.decode(src)
    }

    /// The two directions, for a writer task and a reader task.
    pub fn into_parts(self) -> (FrameEncoder, FrameDecoder) {
        (self.encoder, self.decoder)
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
