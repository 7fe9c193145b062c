//! `kubus store status | add-peer N | remove-peer N | transfer-leader N`
//! and `kubus store snapshot save FILE`: store administration over the
//! bus (`kubus.<c>.store.…`), answered by the store peers. (The offline
//! `snapshot status` and `restore` are in `backup`.)

use std::time::Duration;

use anyhow::bail;
use kubus_bus::protocol::PeerStatus;
use kubus_bus::subject::StoreOp;
use kubus_bus::Client;

use crate::cli::{SnapshotCommand, StoreCommand};

/// How long `status` gathers replies.
const STATUS_WINDOW: Duration = Duration::from_millis(700);
/// Most peers one `status` lists.
const PEERS_MAX: usize = 16;

pub async fn run(client: &Client, cmd: StoreCommand) -> anyhow::Result<()> {
    let peers = client.store_status(STATUS_WINDOW, PEERS_MAX).await?;
    let (op, peer_id) = match cmd {
        StoreCommand::Status => {
            if peers.is_empty() {
                bail!("no store peer answered (is a store role running on this bus?)");
            }
            print!("{}", status_table(&peers));
            return Ok(());
        }
        StoreCommand::AddPeer { peer_id } => (StoreOp::AddPeer, peer_id),
        StoreCommand::RemovePeer { peer_id } => (StoreOp::RemovePeer, peer_id),
        StoreCommand::TransferLeader { peer_id } => (StoreOp::TransferLeader, peer_id),
        StoreCommand::Snapshot(SnapshotCommand::Save { file, peer }) => {
            return crate::backup::save(client, &peers, &file, peer).await;
        }
        StoreCommand::Snapshot(other) => {
            bail!("`kubus store snapshot {other:?}` runs offline")
        }
    };
    let Some(leader) = leader_of(&peers) else {
        bail!(
            "no store leader known to the {} peer(s) that answered; try again after the election",
            peers.len()
        );
    };
    let mut voters = client.change_membership(op, leader, peer_id).await?;
    voters.sort_unstable();
    println!("voters: {voters:?}");
    Ok(())
}

/// The leader: the peer that says it leads (the highest term wins if two
/// do, one of them deposed and not yet aware).
pub fn leader_of(peers: &[PeerStatus]) -> Option<u64> {
    peers
        .iter()
        .filter(|p| p.is_leader)
        .max_by_key(|p| p.term)
        .map(|p| p.peer_id)
}

/// One line per peer under a header.
pub fn status_table(peers: &[PeerStatus]) -> String {
    let mut out = format!(
        "{:<6} {:<9} {:<7} {:>6} {:>10} {:>10} {:>21} {:>10}  {}\n",
        "PEER", "ROLE", "LEADER", "TERM", "REVISION", "APPLIED", "LOG", "IN-FLIGHT", "VOTERS"
    );
    for p in peers {
        let mut voters = p.voters.clone();
        voters.sort_unstable();
        let voters: Vec<String> = voters.iter().map(u64::to_string).collect();
        out.push_str(&format!(
            "{:<6} {:<9} {:<7} {:>6} {:>10} {:>10} {:>21} {:>10}  {}\n",
            p.peer_id,
            if p.is_leader { "leader" } else { "follower" },
            p.leader
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into()),
            p.term,
            p.revision,
            p.applied_index,
            format!("{}..{}", p.first_log_index, p.last_log_index),
            p.proposals_in_flight,
            voters.join(",")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, is_leader: bool, term: u64) -> PeerStatus {
        PeerStatus {
            peer_id: id,
            is_leader,
            leader: Some(1),
            term,
            revision: 5,
            applied_index: 7,
            first_log_index: 1,
            last_log_index: 7,
            proposals_in_flight: 0,
            voters: vec![3, 1, 2],
        }
    }

    #[test]
    fn the_leader_with_the_highest_term_wins() {
        assert_eq!(leader_of(&[]), None);
        assert_eq!(leader_of(&[peer(1, false, 2), peer(2, false, 2)]), None);
        assert_eq!(leader_of(&[peer(1, true, 2), peer(2, false, 2)]), Some(1));
        assert_eq!(leader_of(&[peer(1, true, 2), peer(3, true, 3)]), Some(3));
    }

    #[test]
    fn the_table_has_a_line_per_peer() {
        let t = status_table(&[peer(1, true, 2), peer(2, false, 2)]);
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("1      leader"));
        assert!(lines[2].contains("follower"));
        assert!(lines[2].contains("1..7"));
        assert!(lines[2].ends_with("1,2,3"));
    }
}
