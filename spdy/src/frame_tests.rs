//! Tests of [`super`]: round trips of every frame, the dictionary, frames
//! spdystream wrote, bounds and garbage.

use super::*;

/// Adler-32 as RFC 1950 defines it, written out here so the dictionary
/// check does not trust zlib's own.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % MOD;
        b = (b + a) % MOD;
    }
    b << 16 | a
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().copied().collect()
}

fn encode_all(frames: &[Frame]) -> BytesMut {
    let mut encoder = FrameEncoder::new();
    let mut out = BytesMut::new();
    for frame in frames {
        encoder.encode(frame, &mut out).expect("encodes");
    }
    out
}

fn decode_all(mut wire: BytesMut) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut wire).expect("decodes") {
        frames.push(frame);
    }
    assert!(wire.is_empty(), "{} bytes left over", wire.len());
    frames
}

fn decode_one(wire: &[u8]) -> Result<Option<Frame>, FrameError> {
    FrameDecoder::new().decode(&mut BytesMut::from(wire))
}

/// A zlib stream with `dictionary`, one sync-flushed block: what a SPDY
/// peer sends as its first header block.
fn compress_with(dictionary: &[u8], block: &[u8]) -> Vec<u8> {
    let mut deflate = Compress::new(Compression::best(), true);
    deflate.set_dictionary(dictionary).expect("dictionary");
    let mut out = Vec::with_capacity(block.len() + 1024);
    deflate
        .compress_vec(block, &mut out, FlushCompress::Sync)
        .expect("compresses");
    assert!(out.len() < out.capacity(), "output buffer was big enough");
    out
}

/// A SYN_STREAM frame around an already compressed header block.
fn syn_stream_bytes(stream_id: u32, compressed: &[u8]) -> Vec<u8> {
    let len = (10 + compressed.len()) as u32;
    let mut wire = vec![0x80, 0x03, 0x00, 0x01];
    wire.extend_from_slice(&len.to_be_bytes());
    wire[4] = 0; // flags
    wire.extend_from_slice(&stream_id.to_be_bytes());
    wire.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    wire.extend_from_slice(compressed);
    wire
}

/// An uncompressed header block, built by hand.
fn raw_block(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut block = (pairs.len() as u32).to_be_bytes().to_vec();
    for (name, value) in pairs {
        block.extend_from_slice(&(name.len() as u32).to_be_bytes());
        block.extend_from_slice(name);
        block.extend_from_slice(&(value.len() as u32).to_be_bytes());
        block.extend_from_slice(value);
    }
    block
}

#[test]
fn dictionary_is_spdy3s() {
    assert_eq!(DICTIONARY.len(), 1423);
    assert_eq!(adler32(DICTIONARY), DICTIONARY_ADLER32);
    assert!(DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
    assert!(DICTIONARY.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
    // zlib agrees on the checksum it will put in the stream header.
    let mut deflate = Compress::new(Compression::default(), true);
    assert_eq!(
        deflate.set_dictionary(DICTIONARY).expect("dictionary"),
        DICTIONARY_ADLER32
    );
}

#[test]
fn first_header_block_names_the_dictionary() {
    let wire = encode_all(&[Frame::SynReply {
        stream_id: 1,
        fin: false,
        headers: Headers::new(),
    }]);
    // 8-byte frame header, 4-byte stream id, then the zlib header: CMF,
    // FLG with FDICT (0x20), and the DICTID.
    let zlib = &wire[12..];
    assert_eq!(zlib[0] & 0x0f, 8, "deflate");
    assert_ne!(zlib[1] & 0x20, 0, "FDICT set");
    assert_eq!((u16::from(zlib[0]) << 8 | u16::from(zlib[1])) % 31, 0);
    assert_eq!(zlib[2..6], DICTIONARY_ADLER32.to_be_bytes());
    // The block ends with a sync flush's empty stored block.
    assert!(wire.ends_with(&[0x00, 0x00, 0xff, 0xff]));
}

/// Compares frame lists without printing megabytes of payload.
fn assert_same(got: &[Frame], want: &[Frame]) {
    assert_eq!(got.len(), want.len(), "frame count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            match (g, w) {
                (Frame::Data { payload: a, .. }, Frame::Data { payload: b, .. }) => {
                    panic!("frame {i}: DATA differs ({} vs {} bytes)", a.len(), b.len())
                }
                _ => panic!("frame {i}: got {g:?}, want {w:?}"),
            }
        }
    }
}

fn every_frame() -> Vec<Frame> {
    vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: headers(&[("streamtype", "error")]),
        },
        Frame::SynStream {
            stream_id: 3,
            associated_to: 1,
            priority: 7,
            slot: 2,
            fin: true,
            unidirectional: true,
            headers: headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: Headers::new(),
        },
        Frame::SynReply {
            stream_id: 3,
            fin: true,
            // The wire groups a name's values; this order survives.
            headers: headers(&[("x-multi", "a"), ("x-multi", "b"), ("x-other", "")]),
        },
        Frame::RstStream {
            stream_id: 5,
            status: RstStatus::CANCEL,
        },
        Frame::RstStream {
            stream_id: MAX_STREAM_ID,
            status: RstStatus(99),
        },
        Frame::Settings {
            clear: false,
            entries: vec![],
        },
        Frame::Settings {
            clear: true,
            entries: vec![
                Setting {
                    flags: 1,
                    id: Setting::INITIAL_WINDOW_SIZE,
                    value: 65536,
                },
                Setting {
                    flags: 0,
                    id: 0x00ff_ffff,
                    value: u32::MAX,
                },
            ],
        },
        Frame::Ping { id: 1 },
        Frame::Ping { id: u32::MAX },
        Frame::GoAway {
            last_good_stream_id: 7,
            status: GoAwayStatus::OK,
        },
        Frame::GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::PROTOCOL_ERROR,
        },
        Frame::Headers {
            stream_id: 2,
            fin: true,
            headers: headers(&[("status", "200")]),
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 1,
        },
        Frame::WindowUpdate {
            stream_id: 9,
            delta: 0x7fff_ffff,
        },
        Frame::Data {
            stream_id: 1,
            fin: false,
            payload: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: 1,
            fin: true,
            payload: Bytes::new(),
        },
        Frame::Data {
            stream_id: MAX_STREAM_ID,
            fin: false,
            payload: Bytes::from(vec![0xa5; 100_000]),
        },
    ]
}

#[test]
fn every_frame_round_trips() {
    let frames = every_frame();
    let wire = encode_all(&frames);
    assert_same(&decode_all(wire), &frames);
}

#[test]
fn each_frame_round_trips_alone() {
    for frame in every_frame() {
        let wire = encode_all(std::slice::from_ref(&frame));
        assert_same(&decode_all(wire), &[frame]);
    }
}

#[test]
fn header_blocks_share_one_zlib_stream() {
    // The second identical block compresses to a back-reference into the
    // first, so it only decodes after the first.
    let frame = Frame::Headers {
        stream_id: 1,
        fin: false,
        headers: headers(&[("x-long", &"kubus ".repeat(40))]),
    };
    let mut encoder = FrameEncoder::new();
    let (mut first, mut second) = (BytesMut::new(), BytesMut::new());
    encoder.encode(&frame, &mut first).expect("encodes");
    encoder.encode(&frame, &mut second).expect("encodes");
    assert!(
        second.len() < first.len() / 2,
        "{} vs {}",
        second.len(),
        first.len()
    );

    let mut decoder = FrameDecoder::new();
    assert_eq!(
        decoder.decode(&mut first).expect("first"),
        Some(frame.clone())
    );
    assert_eq!(decoder.decode(&mut second).expect("second"), Some(frame));
    // Out of order, with a fresh context, the back-reference is garbage.
    let mut encoder = FrameEncoder::new();
    let mut skipped = BytesMut::new();
    encoder
        .encode(
            &Frame::Headers {
                stream_id: 1,
                fin: false,
                headers: headers(&[("x-long", &"kubus ".repeat(40))]),
            },
            &mut skipped,
        )
        .expect("encodes");
    let mut later = BytesMut::new();
    encoder
        .encode(
            &Frame::Headers {
                stream_id: 1,
                fin: false,
                headers: headers(&[("x-long", &"kubus ".repeat(40))]),
            },
            &mut later,
        )
        .expect("encodes");
    assert!(FrameDecoder::new().decode(&mut later).is_err());
}

/// Frames written by spdystream's own framer (Go's `compress/zlib` at
/// `BestCompression`, an implementation independent of ours), one after
/// another on one connection: kubectl's error and stdin streams, the
/// server's empty SYN_REPLY, and a header with two values.
#[test]
fn decodes_what_spdystream_writes() {
    let wire = [
        "80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff",
        "800300010000001700000003000000000000c22e555c92929907000000ffff",
        "800300020000000e000000026260606000000000ffff",
        "800300010000001f00000005000000000000824ab357e8e696e6946482cb53862400000000ffff",
    ]
    .concat();
    let syn = |stream_id, pairs: &[(&str, &str)]| Frame::SynStream {
        stream_id,
        associated_to: 0,
        priority: 0,
        slot: 0,
        fin: false,
        unidirectional: false,
        headers: headers(pairs),
    };
    assert_eq!(
        decode_all(BytesMut::from(&unhex(&wire)[..])),
        vec![
            syn(1, &[("streamtype", "error")]),
            syn(3, &[("streamtype", "stdin")]),
            Frame::SynReply {
                stream_id: 2,
                fin: false,
                headers: Headers::new(),
            },
            syn(5, &[("x-multi", "a"), ("x-multi", "b")]),
        ]
    );
}

#[test]
fn decodes_a_block_compressed_with_the_dictionary_by_hand() {
    let block = raw_block(&[
        (b"Streamtype", b"data"),
        (b"port", b"8080"),
        (b"requestid", b"1\x002"),
    ]);
    let wire = syn_stream_bytes(7, &compress_with(DICTIONARY, &block));
    let frame = decode_one(&wire).expect("decodes").expect("a whole frame");
    let Frame::SynStream {
        stream_id, headers, ..
    } = frame
    else {
        panic!("not a SYN_STREAM: {frame:?}");
    };
    assert_eq!(stream_id, 7);
    assert_eq!(headers.get("streamtype"), Some("data"), "lower-cased");
    assert_eq!(headers.get("PORT"), Some("8080"));
    assert_eq!(headers.get_all("requestid").collect::<Vec<_>>(), ["1", "2"]);
}

#[test]
fn a_block_primed_with_another_dictionary_is_refused() {
    let block = raw_block(&[(b"streamtype", b"error")]);
    let wire = syn_stream_bytes(1, &compress_with(b"not the spdy dictionary", &block));
    match decode_one(&wire) {
        Err(FrameError::WrongDictionary { got }) => {
            assert_eq!(got, adler32(b"not the spdy dictionary"))
        }
        other => panic!("expected WrongDictionary, got {other:?}"),
    }
}

#[test]
fn a_header_block_over_the_bound_is_an_error() {
    // 100 KiB of one byte compresses to almost nothing: a small frame that
    // would inflate past the bound.
    let big = vec![b'a'; 100 << 10];
    let block = raw_block(&[(b"x-big", &big)]);
    let compressed = compress_with(DICTIONARY, &block);
    assert!(compressed.len() < 4096);
    let wire = syn_stream_bytes(1, &compressed);
    assert!(matches!(
        decode_one(&wire),
        Err(FrameError::HeaderBlockTooLarge { .. })
    ));
    // And we refuse to send one.
    let frame = Frame::SynStream {
        stream_id: 1,
        associated_to: 0,
        priority: 0,
        slot: 0,
        fin: false,
        unidirectional: false,
        headers: headers(&[("x-big", &"a".repeat(100 << 10))]),
    };
    assert!(matches!(
        FrameEncoder::new().encode(&frame, &mut BytesMut::new()),
        Err(FrameError::HeaderBlockTooLarge { .. })
    ));
}

#[test]
fn header_block_limits_and_shape() {
    let mut count_only = 1000u32.to_be_bytes().to_vec();
    count_only.extend_from_slice(&[0; 16]);
    assert!(matches!(
        parse_header_block(&count_only),
        Err(FrameError::TooManyHeaders { what: "names", .. })
    ));
    let many_values = raw_block(&[(b"x", &vec![0u8; MAX_HEADER_VALUES])]);
    assert!(matches!(
        parse_header_block(&many_values),
        Err(FrameError::TooManyHeaders { what: "values", .. })
    ));
    // A name length pointing past the end.
    let mut truncated = 1u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&u32::MAX.to_be_bytes());
    truncated.extend_from_slice(b"abc");
    assert!(matches!(
        parse_header_block(&truncated),
        Err(FrameError::HeaderBlockTruncated)
    ));
    assert!(matches!(
        parse_header_block(&[0, 0]),
        Err(FrameError::HeaderBlockTruncated)
    ));
    let mut trailing = raw_block(&[(b"a", b"b")]);
    trailing.push(0);
    assert!(matches!(
        parse_header_block(&trailing),
        Err(FrameError::HeaderBlockTrailing(1))
    ));
    assert!(matches!(
        parse_header_block(&raw_block(&[(b"", b"v")])),
        Err(FrameError::InvalidHeaderName(_))
    ));
    assert!(matches!(
        parse_header_block(&raw_block(&[(b"a", b"\xff")])),
        Err(FrameError::HeaderNotUtf8)
    ));
    // Repeated names are merged rather than fatal.
    let merged = parse_header_block(&raw_block(&[(b"a", b"1"), (b"A", b"2")])).expect("parses");
    assert_eq!(merged.get_all("a").collect::<Vec<_>>(), ["1", "2"]);
}

#[test]
fn headers_spdystream_would_choke_on_are_not_sent() {
    let mut encoder = FrameEncoder::new();
    let mut out = BytesMut::new();
    for (kind, name) in [
        ("SYN_STREAM", "Host"),
        ("SYN_STREAM", "connection"),
        ("SYN_REPLY", "transfer-encoding"),
    ] {
        let h = headers(&[(name, "x")]);
        let frame = if kind == "SYN_STREAM" {
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                slot: 0,
                fin: false,
                unidirectional: false,
                headers: h,
            }
        } else {
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: h,
            }
        };
        assert!(
            matches!(
                encoder.encode(&frame, &mut out),
                Err(FrameError::ForbiddenHeader { .. })
            ),
            "{kind} {name}"
        );
    }
    assert!(matches!(
        encoder.encode(
            &Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: headers(&[("x", "a\0b")]),
            },
            &mut out
        ),
        Err(FrameError::NulInHeaderValue(_))
    ));
    assert!(out.is_empty(), "nothing written for refused frames");
    // `host` is fine in a reply, and the context is still in step.
    let ok = Frame::SynReply {
        stream_id: 1,
        fin: false,
        headers: headers(&[("host", "x")]),
    };
    encoder.encode(&ok, &mut out).expect("encodes");
    assert_eq!(decode_all(out), vec![ok]);
}

#[test]
fn invalid_frames_are_refused_by_the_encoder() {
    let bad = [
        Frame::Ping { id: 0 },
        Frame::RstStream {
            stream_id: 1,
            status: RstStatus(0),
        },
        Frame::RstStream {
            stream_id: 0,
            status: RstStatus::CANCEL,
        },
        Frame::Data {
            stream_id: 0,
            fin: false,
            payload: Bytes::new(),
        },
        Frame::Data {
            stream_id: MAX_STREAM_ID + 1,
            fin: false,
            payload: Bytes::new(),
        },
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 0,
        },
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 8,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: Headers::new(),
        },
    ];
    for frame in bad {
        let mut out = BytesMut::new();
        assert!(
            FrameEncoder::new().encode(&frame, &mut out).is_err(),
            "{frame:?}"
        );
        assert!(out.is_empty());
    }
}

#[test]
fn bad_frame_headers_fail_before_the_payload_arrives() {
    // A control frame claiming 16 MiB: an error from its 8-byte header.
    assert!(matches!(
        decode_one(&[0x80, 0x03, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff]),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(matches!(
        decode_one(&[0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04]),
        Err(FrameError::UnsupportedVersion(2))
    ));
    assert!(matches!(
        decode_one(&[0, 0, 0, 0, 0, 0, 0, 1, b'x']),
        Err(FrameError::InvalidStreamId {
            kind: "DATA",
            id: 0
        })
    ));
    // PING with 8 bytes, GOAWAY with 4: wrong fixed lengths.
    assert!(matches!(
        decode_one(&[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 1, 0, 0, 0, 0]),
        Err(FrameError::InvalidLength { kind: "PING", .. })
    ));
    assert!(matches!(
        decode_one(&[0x80, 0x03, 0x00, 0x07, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]),
        Err(FrameError::InvalidLength { kind: "GOAWAY", .. })
    ));
    // SETTINGS whose count disagrees with its length.
    assert!(matches!(
        decode_one(&[0x80, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]),
        Err(FrameError::InvalidLength {
            kind: "SETTINGS",
            ..
        })
    ));
    // A SYN_STREAM whose header block is not zlib at all.
    let mut garbage = syn_stream_bytes(1, b"this is not a zlib stream");
    assert!(decode_one(&garbage).is_err());
    // Nor is a truncated one: a zlib header and nothing after it.
    garbage = syn_stream_bytes(1, &[0x78, 0xbb]);
    assert!(decode_one(&garbage).is_err());
}

#[test]
fn a_frame_decodes_only_once_it_is_whole() {
    let frames = every_frame();
    let wire = encode_all(&frames);
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for &byte in wire.iter() {
        buf.extend_from_slice(&[byte]);
        while let Some(frame) = decoder.decode(&mut buf).expect("decodes") {
            decoded.push(frame);
        }
    }
    assert_same(&decoded, &frames);
}

#[test]
fn unknown_control_frames_are_skipped() {
    // Type 10 (SPDY/3's CREDENTIAL), then a PING.
    let mut wire = vec![0x80, 0x03, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x03, 1, 2, 3];
    wire.extend_from_slice(&[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 5]);
    assert_eq!(
        decode_one(&wire).expect("decodes"),
        Some(Frame::Ping { id: 5 })
    );
}

#[test]
fn garbage_never_panics() {
    // xorshift: reproducible noise without a dependency.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut errors = 0;
    for round in 0..2000 {
        let len = (next() % 300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Half the rounds look like SPDY/3 control frames, so the noise
        // reaches the parsers and zlib instead of the version check.
        if round % 2 == 0 && len >= 8 {
            bytes[0] = 0x80;
            bytes[1] = 0x03;
            bytes[2] = 0;
            bytes[3] = (next() % 10) as u8;
            bytes[4] = 0;
            bytes[5] = 0;
            let payload = (len - 8) as u16;
            bytes[6..8].copy_from_slice(&payload.to_be_bytes());
        }
        let mut buf = BytesMut::from(&bytes[..]);
        let mut decoder = FrameDecoder::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
        }
    }
    assert!(
        errors > 500,
        "only {errors} of 2000 garbage inputs were errors"
    );
}

#[test]
fn headers_keep_names_lower_case_and_values_in_order() {
    let mut h = Headers::new();
    h.append("StreamType", "stdin");
    h.append("X-A", "1");
    h.append("x-a", "2");
    assert_eq!(h.get("streamtype"), Some("stdin"));
    assert_eq!(h.get("STREAMTYPE"), Some("stdin"));
    assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), ["1", "2"]);
    h.insert("x-a", "3");
    assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), ["3"]);
    assert_eq!(
        h.iter().collect::<Vec<_>>(),
        [("streamtype", "stdin"), ("x-a", "3")]
    );
    assert_eq!(h.get("missing"), None);
}
