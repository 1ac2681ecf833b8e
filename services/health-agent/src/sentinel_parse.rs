//! What one poll of the Sentinel saw, in the agent's report form. The replies themselves are
//! parsed by the Sentinel library ([`redis_ha_sentinel::reply`]).

use redis_ha_common::HostPort;
use redis_ha_proto::v1::{SentinelReplicaView, SentinelStatus};
use redis_ha_sentinel::{SentinelMaster, SentinelReplica};

/// Everything one poll of the Sentinel saw.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelObservation {
    pub master: SentinelMaster,
    pub replicas: Vec<SentinelReplicaView>,
    pub peers: Vec<String>,
}

/// A replica as the report carries it.
pub fn replica_view(r: &SentinelReplica) -> SentinelReplicaView {
    SentinelReplicaView {
        address: r.address.to_string(),
        flags: r.flags.clone(),
        master_link_status: r.master_link_status.clone(),
        offset: r.offset,
    }
}

impl SentinelObservation {
    /// The report form (`address` is the Sentinel's own address; `current_epoch` is
    /// filled in by whoever tracks the events).
    pub fn to_status(&self, sentinel_addr: &HostPort) -> SentinelStatus {
        SentinelStatus {
            address: sentinel_addr.to_string(),
            reachable: true,
            error: String::new(),
            master_address: self.master.address.to_string(),
            config_epoch: self.master.config_epoch,
            master_flags: self.master.flags.clone(),
            quorum: self.master.quorum,
            other_sentinels: self.master.other_sentinels,
            replicas: self.replicas.clone(),
            peers: self.peers.clone(),
            current_epoch: self.master.config_epoch,
            down_after_ms: self.master.down_after_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observation_to_status() {
        let obs = SentinelObservation {
            master: SentinelMaster {
                address: HostPort::new("10.0.0.1", 9001),
                flags: vec!["master".into()],
                config_epoch: 3,
                quorum: 2,
                other_sentinels: 2,
                known_replicas: 0,
                down_after_ms: 0,
                failover_timeout_ms: 0,
            },
            replicas: vec![replica_view(&SentinelReplica {
                address: HostPort::new("::1", 9002),
                flags: vec!["slave".into()],
                master_link_status: "ok".into(),
                offset: 7,
                priority: Some(100),
            })],
            peers: vec!["10.0.0.2:19002".into()],
        };
        let s = obs.to_status(&HostPort::new("127.0.0.1", 19001));
        assert!(s.reachable);
        assert_eq!(s.address, "127.0.0.1:19001");
        assert_eq!(s.master_address, "10.0.0.1:9001");
        assert_eq!((s.config_epoch, s.quorum, s.other_sentinels), (3, 2, 2));
        assert_eq!(s.peers, vec!["10.0.0.2:19002"]);
        assert_eq!(s.replicas[0].address, "[::1]:9002");
        assert_eq!(
            (
                s.replicas[0].offset,
                s.replicas[0].master_link_status.as_str()
            ),
            (7, "ok")
        );
    }
}
