//! Fewer, larger Raft messages: what one turn of a peer's loop sends to
//! one peer, merged before it reaches the transport.
//!
//! raft-rs broadcasts every proposal the moment it is made, so a leader
//! that drains 64 proposals into one Ready emits 64 appends per follower,
//! each with one entry, and each follower answers each one. Every message
//! is a NATS publish and a delivery: with three peers on two vCPUs that
//! was a sixth of the CPU. [`coalesce`] applies two rules, each the same
//! as what Raft itself would have sent had the proposals come together:
//!
//! - **Appends**: an append that continues the previous append to the
//!   same peer (same sender and term; it starts where the previous one's
//!   entries end, at that entry's term) joins it, as long as the entries
//!   together stay within `append_bytes_max`. The follower checks the
//!   first message's anchor and appends all the entries, exactly as for
//!   one append Raft built from a larger batch; its answer acknowledges
//!   the last index, which frees the leader's in-flight slots of both.
//! - **Answers**: an accepting append answer replaces the previous
//!   accepting answer to the same peer (same sender and term) when it
//!   acknowledges at least as much: acknowledgements are cumulative, the
//!   leader only keeps the highest. Rejections are never dropped.
//!
//! Only a message's latest neighbour to the same peer is looked at, so the
//! order of what one peer receives never changes; messages of any other
//! kind (votes, heartbeats, snapshots, read requests) pass untouched and
//! end any merge.

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

/// Merges `messages` as the module doc says; the order of the messages to
/// each peer is kept.
pub(crate) fn coalesce(messages: Vec<Message>, append_bytes_max: u64) -> Vec<Message> {
    if messages.len() < 2 {
        return messages;
    }
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    // Per peer: the position in `out` of the last message to it, and the
    // bytes of its entries when it is an append.
    let mut last: Vec<(u64, usize, u64)> = Vec::new();
    for m in messages {
        let slot = last.iter().position(|(to, _, _)| *to == m.to);
        if let Some(s) = slot {
            let (_, at, bytes) = last[s];
            let prev = &mut out[at];
            match m.get_msg_type() {
                MessageType::MsgAppend if continues(prev, &m) => {
                    let added = entries_bytes(&m);
                    if bytes + added <= append_bytes_max {
                        join(prev, m);
                        last[s].2 = bytes + added;
                        continue;
                    }
                }
                MessageType::MsgAppendResponse if supersedes(prev, &m) => {
                    *prev = m;
                    continue;
                }
                _ => {}
            }
        }
        let bytes = if m.get_msg_type() == MessageType::MsgAppend {
            entries_bytes(&m)
        } else {
            0
        };
        let entry = (m.to, out.len(), bytes);
        match slot {
            Some(s) => last[s] = entry,
            None => last.push(entry),
        }
        out.push(m);
    }
    out
}

/// Whether append `next` starts where append `prev` ends.
fn continues(prev: &Message, next: &Message) -> bool {
    if prev.get_msg_type() != MessageType::MsgAppend
        || prev.from != next.from
        || prev.term != next.term
    {
        return false;
    }
    let (end, end_term) = match prev.entries.last() {
        Some(e) => (e.index, e.term),
        None => (prev.index, prev.log_term),
    };
    next.index == end && next.log_term == end_term
}

/// Appends `next`'s entries to `prev` and takes its commit index (the
/// later one: the commit index only grows).
fn join(prev: &mut Message, next: Message) {
    let commit = prev.commit.max(next.commit);
    let mut entries: Vec<_> = prev.take_entries().into();
    entries.extend(next.entries);
    prev.set_entries(entries.into());
    prev.commit = commit;
}

/// Whether answer `next` makes answer `prev` redundant.
fn supersedes(prev: &Message, next: &Message) -> bool {
    prev.get_msg_type() == MessageType::MsgAppendResponse
        && !prev.reject
        && !next.reject
        && prev.from == next.from
        && prev.term == next.term
        && next.index >= prev.index
        && next.commit >= prev.commit
}

fn entries_bytes(m: &Message) -> u64 {
    m.entries.iter().map(|e| u64::from(e.compute_size())).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    const MAX: u64 = 1 << 20;

    fn entry(index: u64, term: u64, bytes: usize) -> Entry {
        Entry {
            index,
            term,
            data: vec![7u8; bytes].into(),
            ..Entry::default()
        }
    }

    /// An append from 1 to `to` at term 2, anchored at `index`/`log_term`,
    /// carrying entries `first..=last` of term 2.
    fn append(to: u64, index: u64, log_term: u64, first: u64, last: u64, commit: u64) -> Message {
        let mut m = Message {
            from: 1,
            to,
            term: 2,
            index,
            log_term,
            commit,
            ..Message::default()
        };
        m.set_msg_type(MessageType::MsgAppend);
        let entries: Vec<_> = (first..=last).map(|i| entry(i, 2, 100)).collect();
        m.set_entries(entries.into());
        m
    }

    fn answer(from: u64, index: u64, commit: u64, reject: bool) -> Message {
        let mut m = Message {
            from,
            to: 1,
            term: 2,
            index,
            commit,
            reject,
            ..Message::default()
        };
        m.set_msg_type(MessageType::MsgAppendResponse);
        m
    }

    fn kind(to: u64, t: MessageType) -> Message {
        let mut m = Message {
            from: 1,
            to,
            term: 2,
            ..Message::default()
        };
        m.set_msg_type(t);
        m
    }

    fn indexes(m: &Message) -> Vec<u64> {
        m.entries.iter().map(|e| e.index).collect()
    }

    #[test]
    fn a_leaders_appends_to_each_follower_become_one() {
        let out = coalesce(
            vec![
                append(2, 10, 2, 11, 11, 9),
                append(3, 10, 2, 11, 11, 9),
                append(2, 11, 2, 12, 12, 9),
                append(3, 11, 2, 12, 12, 10),
                append(2, 12, 2, 13, 14, 10),
            ],
            MAX,
        );
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].to, out[0].index, out[0].log_term), (2, 10, 2));
        assert_eq!(indexes(&out[0]), vec![11, 12, 13, 14]);
        assert_eq!(out[0].commit, 10);
        assert_eq!(out[1].to, 3);
        assert_eq!(indexes(&out[1]), vec![11, 12]);
        assert_eq!(out[1].commit, 10);
    }

    #[test]
    fn a_commit_only_append_is_joined_by_the_entries_that_follow_it() {
        let out = coalesce(
            vec![append(2, 10, 2, 11, 10, 10), append(2, 10, 2, 11, 11, 10)],
            MAX,
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].index, out[0].log_term), (10, 2));
        assert_eq!(indexes(&out[0]), vec![11]);
    }

    #[test]
    fn appends_that_do_not_continue_each_other_stay_apart() {
        let mut other_term = append(2, 11, 2, 12, 12, 9);
        other_term.term = 3;
        let mut other_sender = append(2, 11, 2, 12, 12, 9);
        other_sender.from = 4;
        let cases = [
            ("a gap", append(2, 12, 2, 13, 13, 9)),
            ("a step back", append(2, 10, 2, 11, 11, 9)),
            ("another anchor term", append(2, 11, 1, 12, 12, 9)),
            ("another term", other_term),
            ("another sender", other_sender),
        ];
        for (name, second) in cases {
            let out = coalesce(vec![append(2, 10, 2, 11, 11, 9), second.clone()], MAX);
            assert_eq!(out.len(), 2, "{name}");
            assert_eq!(out[1], second, "{name}");
        }
    }

    #[test]
    fn appends_stay_within_the_byte_bound() {
        let one = u64::from(entry(11, 2, 100).compute_size());
        let out = coalesce(
            (11..=15).map(|i| append(2, i - 1, 2, i, i, 9)).collect(),
            2 * one,
        );
        let sizes: Vec<_> = out.iter().map(|m| m.entries.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        let all: Vec<u64> = out.iter().flat_map(indexes).collect();
        assert_eq!(all, vec![11, 12, 13, 14, 15]);
        // An append larger than the bound on its own is sent as it is.
        let out = coalesce(
            vec![append(2, 10, 2, 11, 13, 9), append(2, 13, 2, 14, 14, 9)],
            one,
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn any_other_message_to_the_peer_ends_a_merge_and_keeps_its_place() {
        let out = coalesce(
            vec![
                append(2, 10, 2, 11, 11, 9),
                kind(2, MessageType::MsgHeartbeat),
                append(2, 11, 2, 12, 12, 9),
                kind(3, MessageType::MsgHeartbeat),
                append(2, 12, 2, 13, 13, 9),
            ],
            MAX,
        );
        let shape: Vec<_> = out
            .iter()
            .map(|m| (m.to, m.get_msg_type(), indexes(m)))
            .collect();
        assert_eq!(
            shape,
            vec![
                (2, MessageType::MsgAppend, vec![11]),
                (2, MessageType::MsgHeartbeat, vec![]),
                (2, MessageType::MsgAppend, vec![12, 13]),
                (3, MessageType::MsgHeartbeat, vec![]),
            ]
        );
    }

    #[test]
    fn a_later_acceptance_replaces_an_earlier_one_and_rejections_stay() {
        let out = coalesce(
            vec![
                answer(2, 11, 9, false),
                answer(2, 12, 9, false),
                answer(2, 14, 10, false),
            ],
            MAX,
        );
        assert_eq!(out, vec![answer(2, 14, 10, false)]);

        let out = coalesce(
            vec![
                answer(2, 11, 9, false),
                answer(2, 12, 9, true),
                answer(2, 14, 10, false),
            ],
            MAX,
        );
        assert_eq!(out.len(), 3, "a rejection is never merged away");

        let out = coalesce(
            vec![answer(2, 14, 10, false), answer(2, 12, 10, false)],
            MAX,
        );
        assert_eq!(out.len(), 2, "an answer acknowledging less is kept");

        let mut newer = answer(2, 14, 10, false);
        newer.term = 3;
        let out = coalesce(vec![answer(2, 12, 10, false), newer], MAX);
        assert_eq!(out.len(), 2, "answers of different terms are kept");
    }

    /// Whatever the interleaving, each peer receives the same entries in
    /// the same order, and the same other messages in the same places.
    #[test]
    fn every_entry_reaches_each_peer_once_in_order() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let mut sent = Vec::new();
            let mut ends = [0u64, 10, 10, 10];
            for _ in 0..(next() % 20) {
                let to = 2 + next() % 2;
                let end = ends[to as usize];
                sent.push(match next() % 4 {
                    0 => kind(to, MessageType::MsgHeartbeat),
                    _ => {
                        let n = next() % 3;
                        ends[to as usize] = end + n;
                        append(to, end, 2, end + 1, end + n, end)
                    }
                });
            }
            let out = coalesce(sent.clone(), 1 + next() % 2000);
            for to in [2, 3] {
                let flat = |ms: &[Message]| -> Vec<(MessageType, Vec<u64>)> {
                    ms.iter()
                        .filter(|m| m.to == to)
                        .flat_map(|m| match m.get_msg_type() {
                            MessageType::MsgAppend => indexes(m)
                                .into_iter()
                                .map(|i| (MessageType::MsgAppend, vec![i]))
                                .collect::<Vec<_>>(),
                            t => vec![(t, vec![])],
                        })
                        .collect()
                };
                assert_eq!(flat(&out), flat(&sent));
            }
            assert!(out.len() <= sent.len());
        }
    }
}
