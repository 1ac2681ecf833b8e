//! What a starting node asks: the Sentinels (`SENTINEL MASTER`), its peers (`INFO
//! replication`), and the addresses of its own interfaces.

use std::time::Duration;

use redis_ha_common::redis_client::{info_fields, RedisLink};
use redis_ha_common::{HostPort, Secret};
use redis_ha_sentinel::{partition_results, SentinelClient, SentinelError};

use crate::role::{PeerState, SentinelAnswer};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A Sentinel or a peer did not answer (the error names which).
    #[error(transparent)]
    Link(#[from] SentinelError),
    #[error("peer {addr}: INFO replication has no valid {field}")]
    PeerInfo { addr: HostPort, field: &'static str },
}

/// One Sentinel's `SENTINEL MASTER <group>`, with the number of replicas it knows.
pub async fn ask_sentinel(
    addr: &HostPort,
    group: &str,
    password: Option<&Secret>,
    timeout: Duration,
) -> Result<SentinelAnswer, ProbeError> {
    let master = SentinelClient::new(addr.clone(), password, timeout)?
        .master(group)
        .await?;
    Ok(SentinelAnswer {
        view: master.view(addr.clone()),
        known_replicas: master.known_replicas,
    })
}

/// Every Sentinel at once: the answers and the errors of those that did not answer.
pub async fn ask_sentinels(
    sentinels: &[HostPort],
    group: &str,
    password: Option<&Secret>,
    timeout: Duration,
) -> (Vec<SentinelAnswer>, Vec<ProbeError>) {
    let asks = sentinels
        .iter()
        .map(|s| ask_sentinel(s, group, password, timeout));
    partition_results(futures::future::join_all(asks).await)
}

/// One peer's `INFO replication`, through the bounded link every sidecar uses; with a
/// password it logs in as the `agent` user (whose rules allow INFO), the one it is given.
pub async fn ask_peer(
    addr: &HostPort,
    password: Option<&Secret>,
    timeout: Duration,
) -> Result<PeerState, ProbeError> {
    let user = password.map(|_| crate::acl::User::Agent.name());
    let mut link = RedisLink::new_as("redis", addr.clone(), user, password, timeout)?;
    let reply = link
        .query(redis::cmd("INFO").arg("replication"), "INFO replication")
        .await?;
    let text = link.text_reply("INFO replication", &reply)?;
    let info = info_fields(&text);
    let missing = |field| ProbeError::PeerInfo {
        addr: addr.clone(),
        field,
    };
    let role = *info.get("role").ok_or_else(|| missing("role"))?;
    let repl_offset: u64 = info
        .get("master_repl_offset")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| missing("master_repl_offset"))?;
    Ok(PeerState {
        addr: addr.clone(),
        is_master: role == "master",
        repl_offset,
    })
}

/// Every peer at once.
pub async fn ask_peers(
    peers: &[HostPort],
    password: Option<&Secret>,
    timeout: Duration,
) -> (Vec<PeerState>, Vec<ProbeError>) {
    let asks = peers.iter().map(|p| ask_peer(p, password, timeout));
    partition_results(futures::future::join_all(asks).await)
}

/// The addresses of this host's interfaces (loopback excluded): a Sentinel may name this node
/// by one of them instead of its announced name.
pub fn interface_addresses() -> Vec<String> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<String> = addrs
        .filter_map(|ifa| {
            let a = ifa.address?;
            let ip: std::net::IpAddr = if let Some(v4) = a.as_sockaddr_in() {
                v4.ip().into()
            } else {
                a.as_sockaddr_in6()?.ip().into()
            };
            (!ip.is_loopback()).then(|| ip.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `host:port` words separated by commas or white space.
pub fn parse_addr_list(s: &str) -> Result<Vec<HostPort>, redis_ha_common::addr::AddrError> {
    s.split([',', ' ', '\t', '\n'])
        .filter(|w| !w.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists_take_commas_and_spaces() {
        let l =
            parse_addr_list("sentinel-1:19001, sentinel-2:19002 sentinel-3:19003").expect("parses");
        assert_eq!(l.len(), 3);
        assert_eq!(l[2], HostPort::new("sentinel-3", 19003));
        assert!(parse_addr_list("a:1 b").is_err());
    }
}
