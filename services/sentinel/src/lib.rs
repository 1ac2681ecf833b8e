//! Redis Sentinel for redis-ha: the client ([`SentinelClient`]), the parsers of its replies
//! ([`reply`]), and the one rule that says which master a set of Sentinel views names
//! ([`named_master`], documented in [`quorum`]).

pub mod client;
pub mod quorum;
pub mod reply;

pub use client::{ask_all, SentinelClient, SentinelError};
pub use quorum::{named_master, same_node, MasterView, NamedMaster};
pub use reply::{parse_master, ReplyError, SentinelMaster};
