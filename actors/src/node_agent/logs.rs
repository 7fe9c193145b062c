//! Container logs in the CRI format, which containerd writes too, so one
//! reader serves every runtime:
//! `<RFC 3339 nano time> <stdout|stderr> <F|P> <text>` (P: a partial line,
//! continued by the next record).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Longest record; longer lines are split into partial records.
pub const RECORD_MAX_BYTES: usize = 16 * 1024;
/// Most bytes one logs reply carries.
pub const REPLY_MAX_BYTES: u64 = 512 * 1024;

/// Format one line of output (without its newline) as CRI log records.
pub fn records(time: &str, stream: &str, line: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(line);
    let mut out = Vec::with_capacity(line.len() + 48);
    let chars: Vec<char> = text.chars().collect();
    let mut chunks = chars.chunks(RECORD_MAX_BYTES / 4).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(format!("{time} {stream} F \n").as_bytes());
    }
    while let Some(chunk) = chunks.next() {
        let tag = if chunks.peek().is_some() { "P" } else { "F" };
        let s: String = chunk.iter().collect();
        out.extend_from_slice(format!("{time} {stream} {tag} {s}\n").as_bytes());
    }
    out
}

/// One parsed record: stream, whether it ends a line, and its text.
pub fn parse_record(record: &str) -> Option<(&str, bool, &str)> {
    let mut parts = record.splitn(4, ' ');
    let _time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some((stream, tag == "F", text))
}

/// The plain text of a CRI log (both streams interleaved, as written).
pub fn to_text(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    for record in log.lines() {
        if let Some((_, full, text)) = parse_record(record) {
            out.push_str(text);
            if full {
                out.push('\n');
            }
        }
    }
    out
}

/// Read the last `limit` bytes of a log file as plain text.
pub fn read_tail(path: &Path, limit: u64) -> std::io::Result<String> {
    read_tail_at(path, limit).map(|(text, _)| text)
}

/// The last `limit` bytes of a log file as plain text, and the file's
/// length (where a follower goes on from).
pub fn read_tail_at(path: &Path, limit: u64) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let limit = limit.min(REPLY_MAX_BYTES);
    let start = len.saturating_sub(limit);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    (&mut f).take(len - start).read_to_end(&mut buf)?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        // drop the record cut in half by the seek
        text = text
            .split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default();
    }
    Ok((to_text(&text), start + buf.len() as u64))
}

/// The whole records written after byte `offset` (at most `limit` bytes of
/// them) as plain text, and the offset they end at. A record still being
/// written stays for the next read.
pub fn read_from(path: &Path, offset: u64, limit: u64) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let offset = offset.min(len);
    let want = (len - offset).min(limit.min(REPLY_MAX_BYTES));
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(want as usize);
    (&mut f).take(want).read_to_end(&mut buf)?;
    let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    buf.truncate(whole);
    Ok((
        to_text(&String::from_utf8_lossy(&buf)),
        offset + whole as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut log = Vec::new();
        log.extend(records(
            "2026-01-01T00:00:00.000000001Z",
            "stdout",
            b"hello world",
        ));
        log.extend(records("2026-01-01T00:00:00.000000002Z", "stderr", b""));
        let long = vec![b'x'; RECORD_MAX_BYTES];
        log.extend(records("2026-01-01T00:00:00.000000003Z", "stdout", &long));
        let text = to_text(&String::from_utf8_lossy(&log));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "hello world");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2].len(), RECORD_MAX_BYTES);
        assert!(String::from_utf8_lossy(&log).contains(" stdout P "));
    }

    #[test]
    fn parses_containerd_records() {
        assert_eq!(
            parse_record("2026-01-01T00:00:00.1Z stdout F a b c"),
            Some(("stdout", true, "a b c"))
        );
        assert_eq!(
            parse_record("2026-01-01T00:00:00.1Z stderr P "),
            Some(("stderr", false, ""))
        );
    }

    #[test]
    fn follows_whole_records_from_an_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let t = "2026-01-01T00:00:00.000000001Z";
        let mut log = records(t, "stdout", b"one");
        std::fs::write(&path, &log).expect("write");
        let (text, end) = read_tail_at(&path, 1024).expect("tail");
        assert_eq!((text.as_str(), end), ("one\n", log.len() as u64));
        assert_eq!(
            read_from(&path, end, 1024).expect("read"),
            (String::new(), end)
        );
        log.extend(records(t, "stderr", b"two"));
        // a record half written is left for the next read
        log.extend_from_slice(b"2026-01-01T00:00:00.1Z stdout F thr");
        std::fs::write(&path, &log).expect("write");
        let (text, next) = read_from(&path, end, 1024).expect("read");
        assert_eq!(text, "two\n");
        assert!(next < log.len() as u64);
        log.extend_from_slice(b"ee\n");
        std::fs::write(&path, &log).expect("write");
        let (text, last) = read_from(&path, next, 1024).expect("read");
        assert_eq!((text.as_str(), last), ("three\n", log.len() as u64));
        // a small limit gives whole records only
        let (text, _) = read_from(&path, 0, 10).expect("read");
        assert_eq!(text, "");
    }
}
