//! Chat rooms: who is in which room, and fan-out of each message to every
//! other peer of its room, encoded once and shared (SPEC §1.3); compressed
//! once, too, for the peers that agreed to permessage-deflate.
//!
//! A room exists while it has peers. The registry lock is taken only to join
//! and leave; a broadcast locks just its room, so rooms do not contend with
//! each other. Fan-out never waits on a peer: each has a byte-bounded
//! [`Outbox`], and one that overflows is closed as a slow consumer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::deflate::SharedDeflate;
use crate::inbox::{self, Inbox, Offer, Outbox};
use crate::metrics::{DeflateBytes, Limit, Metrics};
use fastwebsockets::OpCode;
use frames::Frames;

mod frames;

/// Why a peer could not join a room; the caller decides what to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("the room has --max-room-peers peers")]
    Full,
    #[error("there are --max-rooms rooms")]
    TooManyRooms,
}

/// Room names are URL-safe as they are: no decoding, nothing to escape in
/// logs, metrics or Redis channel names.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Where rooms are shared with other instances (the Redis link): told of
/// every local message and of each room as it appears and goes. Rooms sit
/// below the link, which delivers what it hears through
/// [`Rooms::deliver_remote`].
pub trait Link: Send + Sync {
    fn publish(&self, room: &Arc<str>, opcode: OpCode, payload: &[u8]);
    fn subscribe(&self, room: Arc<str>);
    fn unsubscribe(&self, room: Arc<str>);
}

#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    pub max_rooms: usize,
    pub max_peers: usize,
    pub queue_bytes: usize,
}

pub struct Rooms {
    map: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    limits: RoomLimits,
    metrics: Arc<Metrics>,
    next_id: AtomicU64,
    link: OnceLock<Box<dyn Link>>,
}

pub struct Room {
    name: Arc<str>,
    members: Mutex<Members>,
}

#[derive(Default)]
struct Members {
    list: Vec<Member>,
    /// The compressors the peers agreed to, each with its number of peers:
    /// what a message is compressed with, outside the lock, before it is
    /// relayed.
    kinds: Vec<(SharedDeflate, usize)>,
}

struct Member {
    id: u64,
    outbox: Outbox,
    /// How this peer takes compressed relays; None: plain ones.
    deflate: Option<SharedDeflate>,
}

impl Members {
    fn add(&mut self, member: Member) {
        if let Some(kind) = member.deflate {
            match self.kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, peers)) => *peers += 1,
                None => self.kinds.push((kind, 1)),
            }
        }
        self.list.push(member);
    }

    fn remove(&mut self, id: u64) {
        let Some(i) = self.list.iter().position(|peer| peer.id == id) else {
            return;
        };
        if let Some(kind) = self.list.remove(i).deflate {
            self.kinds.retain_mut(|(k, peers)| {
                *peers -= usize::from(*k == kind);
                *peers > 0
            });
        }
    }

    /// The kinds of compressor a message from `from` goes out in: every one
    /// a peer agreed to, but one only the sender has.
    fn kinds_to_compress(&self, from: Option<&Membership>) -> Vec<SharedDeflate> {
        let sender_only = |&(kind, peers): &(SharedDeflate, usize)| {
            peers == 1 && from.is_some_and(|m| m.deflate == Some(kind))
        };
        let kinds = self.kinds.iter().filter(|k| !sender_only(k));
        kinds.map(|(kind, _)| *kind).collect()
    }
}

/// A peer's place in a room; leaving is dropping it.
pub struct Membership {
    rooms: Arc<Rooms>,
    room: Arc<Room>,
    id: u64,
    deflate: Option<SharedDeflate>,
}

impl Rooms {
    pub fn new(limits: RoomLimits, metrics: Arc<Metrics>) -> Self {
        Rooms {
            map: Mutex::default(),
            limits,
            metrics,
            next_id: AtomicU64::new(1),
            link: OnceLock::new(),
        }
    }

    /// Shares rooms with other instances from now on.
    pub fn set_link(&self, link: impl Link + 'static) {
        let _ = self.link.set(Box::new(link));
    }

    /// The names of the rooms with local peers (to subscribe after a reconnect).
    pub fn names(&self) -> Vec<Arc<str>> {
        self.map.lock().unwrap().keys().cloned().collect()
    }

    /// Joins `name`, creating the room if needed; refused past the limits.
    /// `deflate`: how the peer takes compressed relays, if it does.
    pub fn join(
        self: &Arc<Self>,
        name: &str,
        deflate: Option<SharedDeflate>,
    ) -> Result<(Membership, Inbox), RoomError> {
        let mut map = self.map.lock().unwrap();
        let room = match map.get(name) {
            Some(room) => room.clone(),
            None if map.len() >= self.limits.max_rooms => {
                self.metrics.limit_hit(Limit::Rooms);
                return Err(RoomError::TooManyRooms);
            }
            None => {
                let name: Arc<str> = name.into();
                let room = Arc::new(Room {
                    name: name.clone(),
                    members: Mutex::default(),
                });
                map.insert(name.clone(), room.clone());
                self.metrics.rooms.inc();
                if let Some(link) = self.link.get() {
                    link.subscribe(name);
                }
                room
            }
        };
        let mut members = room.members.lock().unwrap();
        if members.list.len() >= self.limits.max_peers {
            self.metrics.limit_hit(Limit::RoomPeers);
            drop(members);
            self.remove_if_empty(&mut map, &room);
            return Err(RoomError::Full);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (outbox, inbox) = inbox::channel(self.limits.queue_bytes);
        members.add(Member {
            id,
            outbox,
            deflate,
        });
        self.metrics.room_peers.inc();
        drop(members);
        Ok((
            Membership {
                rooms: self.clone(),
                room,
                id,
                deflate,
            },
            inbox,
        ))
    }

    /// Delivers a message that another instance published to every local
    /// peer of the room.
    pub fn deliver_remote(&self, name: &str, opcode: OpCode, payload: &[u8]) {
        let room = self.map.lock().unwrap().get(name).cloned();
        if let Some(room) = room {
            self.fan_out(&room, opcode, payload, None);
        }
    }

    /// `from`: the local sender, who gets nothing back.
    fn fan_out(&self, room: &Room, opcode: OpCode, payload: &[u8], from: Option<&Membership>) {
        let except = from.map(|m| m.id);
        let mut frames = Frames::new(opcode, payload);
        let mut members = room.members.lock().unwrap();
        let kinds = members.kinds_to_compress(from);
        if !kinds.is_empty() {
            // Compressing a large message takes a while: not while the
            // room's other publishers wait on its lock. A room without
            // compressing peers takes the lock once, as before.
            drop(members);
            frames.compress(&kinds);
            members = room.members.lock().unwrap();
        }
        for peer in members.list.iter().filter(|peer| Some(peer.id) != except) {
            if peer.outbox.offer(frames.get(peer.deflate), payload.len()) == Offer::BecameSlow {
                self.metrics.slow_consumers.inc();
            }
        }
        drop(members);
        if frames.deflated != DeflateBytes::default() {
            self.metrics.add_deflate(frames.deflated);
        }
    }

    fn leave(&self, room: &Arc<Room>, id: u64) {
        let mut map = self.map.lock().unwrap();
        room.members.lock().unwrap().remove(id);
        self.metrics.room_peers.dec();
        self.remove_if_empty(&mut map, room);
    }

    fn remove_if_empty(&self, map: &mut HashMap<Arc<str>, Arc<Room>>, room: &Arc<Room>) {
        if room.members.lock().unwrap().list.is_empty() && map.remove(&room.name).is_some() {
            self.metrics.rooms.dec();
            if let Some(link) = self.link.get() {
                link.unsubscribe(room.name.clone());
            }
        }
    }
}

impl Membership {
    /// Sends a message to every other peer of the room, here and, with
    /// Redis, on the other instances.
    pub fn broadcast(&self, opcode: OpCode, payload: &[u8]) {
        self.rooms.fan_out(&self.room, opcode, payload, Some(self));
        if let Some(link) = self.rooms.link.get() {
            link.publish(&self.room.name, opcode, payload);
        }
    }

    pub fn room(&self) -> &str {
        &self.room.name
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.rooms.leave(&self.room, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::{DeflatePolicy, Params};

    fn rooms(max_rooms: usize, max_peers: usize) -> Arc<Rooms> {
        let limits = RoomLimits {
            max_rooms,
            max_peers,
            queue_bytes: 1 << 20,
        };
        Arc::new(Rooms::new(limits, Arc::default()))
    }

    #[test]
    fn room_names_are_checked() {
        assert!(valid_name("lobby-1.test_2"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("caf%C3%A9"));
        assert!(!valid_name(&"x".repeat(65)));
    }

    #[test]
    fn a_room_exists_while_it_has_peers() {
        let rooms = rooms(10, 10);
        let a = rooms.join("r", None).unwrap();
        let b = rooms.join("r", None).unwrap();
        assert_eq!(rooms.names().len(), 1);
        drop(a);
        assert_eq!(rooms.names().len(), 1);
        drop(b);
        assert!(rooms.names().is_empty());
    }

    #[test]
    fn limits_refuse_joins() {
        let rooms = rooms(1, 1);
        let _a = rooms.join("one", None).unwrap();
        assert_eq!(rooms.join("one", None).err(), Some(RoomError::Full));
        assert_eq!(rooms.join("two", None).err(), Some(RoomError::TooManyRooms));
        assert_eq!(rooms.names().len(), 1);
    }

    #[test]
    fn a_room_counts_the_compressors_its_peers_agreed_to() {
        let rooms = rooms(1, 10);
        let kind = |bits| {
            let params = Params {
                server_no_context_takeover: true,
                server_max_window_bits: Some(bits),
                ..Params::default()
            };
            SharedDeflate::new(&params, &DeflatePolicy::ON)
        };
        let (wide, narrow) = (kind(15).unwrap(), kind(10).unwrap());
        let (a, _) = rooms.join("r", Some(wide)).unwrap();
        let (b, _) = rooms.join("r", Some(wide)).unwrap();
        let (c, _) = rooms.join("r", Some(narrow)).unwrap();
        let (d, _) = rooms.join("r", None).unwrap();
        let kinds = || a.room.members.lock().unwrap().kinds.clone();
        let to_compress =
            |from: Option<&Membership>| a.room.members.lock().unwrap().kinds_to_compress(from);
        assert_eq!(kinds(), [(wide, 2), (narrow, 1)]);
        // What goes out: not a kind only the sender has.
        assert_eq!(to_compress(Some(&a)), [wide, narrow]);
        assert_eq!(to_compress(Some(&c)), [wide]);
        assert_eq!(to_compress(Some(&d)), [wide, narrow]);
        assert_eq!(to_compress(None), [wide, narrow]);
        drop(b);
        assert_eq!(kinds(), [(wide, 1), (narrow, 1)]);
        assert_eq!(to_compress(Some(&a)), [narrow]);
        drop(c);
        drop(d);
        assert_eq!(kinds(), [(wide, 1)]);
        assert!(to_compress(Some(&a)).is_empty());
    }
}
