//! End-to-end tests of `kubus_spdy::Session` over in-memory connections:
//! a client session against a server session, and a session against a
//! hand-driven peer (a bare `Framer`) that plays spdystream's part frame by
//! frame.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kubus_spdy::frame::GoAwayStatus;
use kubus_spdy::session::REPLY_TIMEOUT;
use kubus_spdy::{k8s, Frame, Framer, Headers, RstStatus, Session, SessionError, StreamError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

/// Long enough for anything here; short enough that a hang fails fast.
const LIMIT: Duration = Duration::from_secs(20);

fn stream_type(t: &str) -> Headers {
    let mut h = Headers::new();
    h.insert(k8s::STREAM_TYPE, t);
    h
}

/// Deterministic bytes whose position can be checked.
fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ salt).collect()
}

async fn read_to_end<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).await?;
    Ok(out)
}

/// A peer driven frame by frame.
struct Peer {
    io: DuplexStream,
    framer: Framer,
    buf: BytesMut,
}

impl Peer {
    fn new(io: DuplexStream) -> Self {
        Peer {
            io,
            framer: Framer::new(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.framer.encode(&frame, &mut out).expect("encodes");
        self.io.write_all(&out).await.expect("peer writes");
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("peer writes");
    }

    /// The next frame, or `None` at EOF.
    async fn recv(&mut self) -> Option<Frame> {
        timeout(LIMIT, async {
            loop {
                if let Some(frame) = self.framer.decode(&mut self.buf).expect("decodes") {
                    return Some(frame);
                }
                match self.io.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("peer waited too long")
    }

    async fn syn_stream(&mut self, stream_id: u32, headers: Headers) {
        self.send(Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers,
        })
        .await;
    }
}

fn pair() -> (Session, Session) {
    let (a, b) = tokio::io::duplex(64 << 10);
    (Session::client(a), Session::server(b))
}

#[tokio::test]
async fn three_streams_half_close_and_five_mebibytes() {
    const BULK: usize = 5 << 20;
    let (client, server) = pair();

    let server_side = tokio::spawn(async move {
        // Like the Kubernetes servers, take every stream before writing on
        // any: the client reads none until it has opened them all, and an
        // unread stream holds up the session (see the module docs).
        let mut streams = Vec::new();
        for _ in 0..3 {
            let stream = timeout(LIMIT, server.accept())
                .await
                .expect("accept in time");
            streams.push(stream.expect("a stream"));
        }
        let mut handlers = Vec::new();
        for mut stream in streams {
            assert_eq!(stream.id() % 2, 1, "client streams are odd");
            let kind = stream
                .headers()
                .get(k8s::STREAM_TYPE)
                .expect("streamtype")
                .to_owned();
            handlers.push(tokio::spawn(async move {
                match kind.as_str() {
                    // Read to the client's FIN, then answer on the same
                    // stream: the other direction still works.
                    "stdin" => {
                        let got = read_to_end(&mut stream).await.expect("reads stdin");
                        assert_eq!(got, b"hello from stdin");
                        stream
                            .write_all(b"bye")
                            .await
                            .expect("writes after peer FIN");
                        stream.shutdown().await.expect("FIN");
                    }
                    // 5 MiB each way at once.
                    "data" => {
                        let (mut recv, mut send) = stream.split();
                        let writer = tokio::spawn(async move {
                            send.write_all(&pattern(BULK, 0x5a))
                                .await
                                .expect("writes bulk");
                            send.shutdown().await.expect("FIN");
                        });
                        let got = read_to_end(&mut recv).await.expect("reads bulk");
                        assert!(
                            got == pattern(BULK, 0x17),
                            "server got {} bytes, corrupt",
                            got.len()
                        );
                        writer.await.expect("writer");
                    }
                    // Write a status, then reset the stream (as the CRI
                    // streaming servers end an exec's error stream).
                    "error" => {
                        let mut stream = stream;
                        stream.write_all(b"status").await.expect("writes");
                        stream.reset().await
                    }
                    other => panic!("unexpected stream type {other}"),
                }
            }));
        }
        for handler in handlers {
            handler.await.expect("handler");
        }
        server
    });

    let mut stdin = client
        .open(stream_type("stdin"))
        .await
        .expect("opens stdin");
    let bulk = client.open(stream_type("data")).await.expect("opens data");
    let mut error = client
        .open(stream_type("error"))
        .await
        .expect("opens error");
    assert_eq!((stdin.id(), bulk.id(), error.id()), (1, 3, 5));
    assert_eq!(stdin.headers().get("streamtype"), Some("stdin"));

    // Bulk both ways with no window stall, read while the rest goes on.
    let (mut recv, mut send) = bulk.split();
    let bulk_writer = tokio::spawn(async move {
        send.write_all(&pattern(BULK, 0x17))
            .await
            .expect("writes bulk");
        send.shutdown().await.expect("FIN");
    });
    let bulk_reader = tokio::spawn(async move { read_to_end(&mut recv).await });

    // Half-close: FIN our side of stdin, then read the server's answer.
    stdin.write_all(b"hello from stdin").await.expect("writes");
    stdin.shutdown().await.expect("FIN");
    let answer = timeout(LIMIT, read_to_end(&mut stdin))
        .await
        .expect("in time");
    assert_eq!(answer.expect("reads answer"), b"bye");
    let after_fin = stdin.write_all(b"more").await.expect_err("write after FIN");
    assert_eq!(after_fin.kind(), io::ErrorKind::BrokenPipe);

    let got = timeout(LIMIT, bulk_reader)
        .await
        .expect("5 MiB in time")
        .expect("reader")
        .expect("reads bulk");
    assert!(
        got == pattern(BULK, 0x5a),
        "client got {} bytes, corrupt",
        got.len()
    );
    bulk_writer.await.expect("writer");

    // The server wrote to "error", then reset it: what it wrote reads
    // first, then the reset is the error, with the peer's status.
    let mut before = Vec::new();
    let err = timeout(LIMIT, error.read_to_end(&mut before))
        .await
        .expect("in time")
        .expect_err("reset stream");
    assert_eq!(before, b"status");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<StreamError>());
    assert_eq!(
        inner,
        Some(&StreamError::Reset {
            id: 5,
            status: RstStatus::CANCEL
        })
    );

    let server = timeout(LIMIT, server_side)
        .await
        .expect("server in time")
        .expect("server");
    // Both directions of PING.
    client.ping().await.expect("server echoes");
    server.ping().await.expect("client echoes");
}

#[tokio::test]
async fn serves_a_spdystream_like_peer() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let server = Session::server(b);
    let mut peer = Peer::new(a);

    // kubectl opens its error stream and waits for the reply.
    peer.syn_stream(1, stream_type("error")).await;
    let mut stream = server.accept().await.expect("accepted");
    assert_eq!(stream.headers().get("streamtype"), Some("error"));
    assert_eq!(
        peer.recv().await,
        Some(Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: Headers::new()
        })
    );

    // PING (odd: the client's) comes back unchanged; SETTINGS and
    // WINDOW_UPDATE change nothing.
    peer.send(Frame::Settings {
        clear: false,
        entries: vec![],
    })
    .await;
    peer.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 1 << 20,
    })
    .await;
    peer.send(Frame::Ping { id: 7 }).await;
    assert_eq!(peer.recv().await, Some(Frame::Ping { id: 7 }));

    // Data both ways; the peer's FIN reads as EOF.
    stream.write_all(b"status").await.expect("writes");
    assert_eq!(
        peer.recv().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: false,
            payload: Bytes::from_static(b"status")
        })
    );
    peer.send(Frame::Data {
        stream_id: 1,
        fin: false,
        payload: Bytes::from_static(b"in"),
    })
    .await;
    peer.send(Frame::Data {
        stream_id: 1,
        fin: true,
        payload: Bytes::new(),
    })
    .await;
    assert_eq!(read_to_end(&mut stream).await.expect("reads"), b"in");
    stream.shutdown().await.expect("FIN");
    assert_eq!(
        peer.recv().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: true,
            payload: Bytes::new()
        })
    );

    // A stream id with the server's parity, or a reused one: refused.
    peer.syn_stream(2, stream_type("stdin")).await;
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream {
            stream_id: 2,
            status: RstStatus::PROTOCOL_ERROR
        })
    );
    peer.syn_stream(1, stream_type("stdin")).await;
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::PROTOCOL_ERROR
        })
    );

    // DATA for a stream that is gone is ignored, not fatal.
    peer.send(Frame::Data {
        stream_id: 99,
        fin: false,
        payload: Bytes::from_static(b"late"),
    })
    .await;
    peer.send(Frame::Ping { id: 9 }).await;
    assert_eq!(peer.recv().await, Some(Frame::Ping { id: 9 }));

    // After GOAWAY the server accepts nothing more.
    peer.send(Frame::GoAway {
        last_good_stream_id: 0,
        status: GoAwayStatus::OK,
    })
    .await;
    assert!(timeout(LIMIT, server.accept())
        .await
        .expect("in time")
        .is_none());
    peer.syn_stream(3, stream_type("stdout")).await;
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream {
            stream_id: 3,
            status: RstStatus::REFUSED_STREAM
        })
    );
}

#[tokio::test]
async fn a_stream_the_peer_finishes_at_once_reads_as_empty() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let server = Session::server(b);
    let mut peer = Peer::new(a);
    // port-forward: kubectl FINs its error stream straight away.
    peer.send(Frame::SynStream {
        stream_id: 1,
        associated_to: 0,
        priority: 0,
        slot: 0,
        fin: true,
        unidirectional: false,
        headers: stream_type("error"),
    })
    .await;
    let mut stream = server.accept().await.expect("accepted");
    assert_eq!(read_to_end(&mut stream).await.expect("EOF"), b"");
    stream
        .write_all(b"no such port")
        .await
        .expect("still writable");
    assert!(matches!(
        peer.recv().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    assert!(matches!(
        peer.recv().await,
        Some(Frame::Data { stream_id: 1, .. })
    ));
}

#[tokio::test]
async fn garbage_ends_the_session_with_goaway() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let server = Session::server(b);
    let mut peer = Peer::new(a);
    peer.syn_stream(1, stream_type("stdin")).await;
    let mut stream = server.accept().await.expect("accepted");
    assert!(matches!(peer.recv().await, Some(Frame::SynReply { .. })));

    // A SPDY/2 frame: not ours.
    peer.send_raw(&[0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1])
        .await;
    assert_eq!(
        peer.recv().await,
        Some(Frame::GoAway {
            last_good_stream_id: 1,
            status: GoAwayStatus::PROTOCOL_ERROR
        })
    );
    timeout(LIMIT, server.closed()).await.expect("session ends");
    assert!(server.is_closed());
    assert!(server.accept().await.is_none());
    // The open stream ends without its FIN: an error, not a silent EOF.
    let err = read_to_end(&mut stream).await.expect_err("truncated");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    let err = stream.write_all(b"x").await.expect_err("session gone");
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn dropping_every_handle_ends_the_session() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let client = Session::client(a);
    let mut peer = Peer::new(b);

    let opening = tokio::spawn(async move {
        let stream = client.open(stream_type("stdin")).await.expect("opens");
        (client, stream)
    });
    assert!(matches!(
        peer.recv().await,
        Some(Frame::SynStream { stream_id: 1, .. })
    ));
    peer.send(Frame::SynReply {
        stream_id: 1,
        fin: false,
        headers: Headers::new(),
    })
    .await;
    let (client, mut stream) = opening.await.expect("open");
    stream.write_all(b"last words").await.expect("writes");

    drop(client);
    drop(stream);
    // What was written, the FIN the drop sent, a GOAWAY, then EOF: the
    // tasks have stopped and dropped the connection.
    assert_eq!(
        peer.recv().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: false,
            payload: Bytes::from_static(b"last words")
        })
    );
    assert_eq!(
        peer.recv().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: true,
            payload: Bytes::new()
        })
    );
    assert_eq!(
        peer.recv().await,
        Some(Frame::GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::OK
        })
    );
    assert_eq!(peer.recv().await, None);
}

#[tokio::test]
async fn the_peer_hanging_up_ends_streams_and_accept() {
    let (client, server) = pair();
    let opened = tokio::spawn(async move {
        let stream = client.open(stream_type("stdout")).await.expect("opens");
        (client, stream)
    });
    let accepted = server.accept().await.expect("accepted");
    let (client, mut stream) = opened.await.expect("open");
    drop(accepted);
    drop(server);
    // The server's tasks end (its handles are gone), which closes the
    // connection under the client.
    timeout(LIMIT, client.closed())
        .await
        .expect("client sees the end");
    // The server's FIN (sent when its stream was dropped) came first.
    assert_eq!(read_to_end(&mut stream).await.expect("EOF"), b"");
    assert!(matches!(
        client.open(stream_type("stdin")).await,
        Err(SessionError::Closed | SessionError::GoneAway)
    ));
    assert!(matches!(client.ping().await, Err(SessionError::Closed)));
}

#[tokio::test]
async fn open_fails_when_the_peer_refuses() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let client = Session::client(a);
    let mut peer = Peer::new(b);
    let opening = tokio::spawn(async move { client.open(stream_type("stdin")).await.map(|_| ()) });
    assert!(matches!(
        peer.recv().await,
        Some(Frame::SynStream { stream_id: 1, .. })
    ));
    peer.send(Frame::RstStream {
        stream_id: 1,
        status: RstStatus::REFUSED_STREAM,
    })
    .await;
    match opening.await.expect("task") {
        Err(SessionError::Refused { id: 1, status }) => {
            assert_eq!(status, RstStatus::REFUSED_STREAM)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn open_gives_up_without_a_reply() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let client = Session::client(a);
    let mut peer = Peer::new(b);
    let opening = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let result = client.open(stream_type("stdin")).await.map(|_| ());
        (result, started.elapsed(), client)
    });
    assert!(matches!(
        peer.recv().await,
        Some(Frame::SynStream { stream_id: 1, .. })
    ));
    // No reply: the client gives up and resets its stream.
    let (result, waited, _client) = opening.await.expect("task");
    assert!(
        matches!(result, Err(SessionError::ReplyTimeout { id: 1, .. })),
        "{result:?}"
    );
    assert!(waited >= REPLY_TIMEOUT);
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::CANCEL
        })
    );
}

#[tokio::test]
async fn headers_spdystream_would_reject_are_refused_before_sending() {
    let (client, _server) = pair();
    let mut bad = Headers::new();
    bad.insert("Connection", "close");
    assert!(matches!(
        client.open(bad).await,
        Err(SessionError::Frame(
            kubus_spdy::FrameError::ForbiddenHeader { .. }
        ))
    ));
    // The session is still usable.
    assert!(client.ping().await.is_ok());
}

#[tokio::test]
async fn a_slow_reader_loses_nothing() {
    const LEN: usize = 3 << 20; // several times the per-stream queue
    let (client, server) = pair();
    let writer = tokio::spawn(async move {
        let mut stream = client.open(stream_type("stdin")).await.expect("opens");
        stream.write_all(&pattern(LEN, 3)).await.expect("writes");
        stream.shutdown().await.expect("FIN");
        (client, stream)
    });
    let mut stream = server.accept().await.expect("accepted");
    // Let the writer fill every queue on the way before reading.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = timeout(LIMIT, read_to_end(&mut stream))
        .await
        .expect("in time")
        .expect("reads");
    assert!(got == pattern(LEN, 3), "got {} bytes, corrupt", got.len());
    let _keep = writer.await.expect("writer");
}

#[test]
fn handles_can_move_between_tasks() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Session>();
    send::<kubus_spdy::Stream>();
    send::<kubus_spdy::RecvStream>();
    send::<kubus_spdy::SendStream>();
}
