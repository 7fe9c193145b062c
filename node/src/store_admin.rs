//! `kubus store status | add-peer N | remove-peer N | transfer-leader N`,
//! `kubus store rotate-key | reseal` and `kubus store snapshot save
//! FILE`: store administration over the
//! bus (`kubus.<c>.store.…`), answered by the store peers. (The offline
//! `snapshot status` and `restore` are in `backup`.)

use std::time::Duration;

use anyhow::{bail, Context};
use kubus_bus::protocol::{EncryptionKeysRequest, PeerStatus};
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
        StoreCommand::RotateKey => return rotate_key(client, &peers).await,
        StoreCommand::Reseal => return reseal(client, &peers, None).await,
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

/// The voters, as the leader knows them; every one must have answered.
fn all_voters(peers: &[PeerStatus]) -> anyhow::Result<(u64, Vec<u64>)> {
    let Some(leader) = leader_of(peers) else {
        bail!(
            "no store leader known to the {} peer(s) that answered; try again after the election",
            peers.len()
        );
    };
    let voters = peers
        .iter()
        .find(|p| p.peer_id == leader)
        .map(|p| p.voters.clone())
        .unwrap_or_default();
    let missing: Vec<u64> = voters
        .iter()
        .copied()
        .filter(|v| !peers.iter().any(|p| p.peer_id == *v))
        .collect();
    if !missing.is_empty() {
        bail!("store peers {missing:?} did not answer: every voter must take the key, try again when they are up");
    }
    Ok((leader, voters))
}

/// `kubus store rotate-key`: a new key reads on every voter, then writes
/// on every voter, then every object is resealed with it. A failure
/// part-way leaves every peer able to read everything: the key is added
/// everywhere before any peer writes with it.
async fn rotate_key(client: &Client, peers: &[PeerStatus]) -> anyhow::Result<()> {
    let (_, voters) = all_voters(peers)?;
    let name = format!("key-{}", jiff::Timestamp::now().as_second());
    let add = EncryptionKeysRequest {
        add: Some(kubus_actors::store::seal::generate_key(&name)),
        promote: None,
    };
    for v in &voters {
        client.encryption_keys(*v, &add).await.with_context(|| {
            format!("adding key {name:?} on store peer {v} (nothing writes with it yet)")
        })?;
    }
    println!("key {name:?} added on store peers {voters:?}");
    let promote = EncryptionKeysRequest {
        add: None,
        promote: Some(name.clone()),
    };
    for v in &voters {
        client
            .encryption_keys(*v, &promote)
            .await
            .with_context(|| {
                format!(
                    "making {name:?} the writing key on store peer {v} (every peer can read it)"
                )
            })?;
    }
    println!("key {name:?} writes on store peers {voters:?}");
    reseal(client, peers, Some(voters)).await
}

/// `kubus store reseal`: every voter reads its configuration again (unless
/// `read` says they just did), then the leader rewrites what is not
/// sealed with the writing key.
async fn reseal(
    client: &Client,
    peers: &[PeerStatus],
    read: Option<Vec<u64>>,
) -> anyhow::Result<()> {
    let (leader, voters) = all_voters(peers)?;
    if read.is_none() {
        for v in &voters {
            let keys = client
                .encryption_keys(*v, &EncryptionKeysRequest::default())
                .await
                .with_context(|| format!("store peer {v} reading its encryption configuration"))?;
            let writing: Vec<String> = keys
                .writing
                .iter()
                .map(|(prefix, key)| {
                    format!("{prefix} by {}", key.as_deref().unwrap_or("identity"))
                })
                .collect();
            println!(
                "store peer {v}: keys {:?}; writes {}",
                keys.keys,
                writing.join(", ")
            );
        }
    }
    let done = client.reseal(leader).await.context("resealing")?;
    let before: Vec<String> = done
        .before
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    println!(
        "resealed {} object(s), {} already current (before: {})",
        done.rewritten,
        done.current,
        if before.is_empty() {
            "none".to_string()
        } else {
            before.join(", ")
        }
    );
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
