//! Redis Sentinel for redis-ha: the client ([`SentinelClient`]: MASTER, REPLICAS, SENTINELS,
//! GET-MASTER-ADDR-BY-NAME, FAILOVER, the event subscription), the parsers of its replies
//! ([`reply`]) and of its event payloads ([`events`]), and the one rule that says which master
//! a set of Sentinel views names ([`named_master`], documented in [`quorum`]), and the timers that
//! must follow down-after ([`timers`]).

pub mod client;
pub mod events;
pub mod quorum;
pub mod reply;
pub mod timers;

pub use client::{
    ask_all, ask_each, partition_results, BallotPoll, EventSubscription, SentinelClient,
    SentinelError, SentinelMessage,
};
pub use events::{parse_event, EventKind, EventParseError, FailoverEffect, ParsedEvent, Payload};
pub use quorum::{named_master, same_node, MasterView, NamedMaster};
pub use reply::{parse_master, ReplyError, SentinelMaster, SentinelReplica, Vote};
