//! A graceful stop (`redis-ha-node redis-run`): Redis runs as this process's child; a SIGTERM
//! (container stop, service update, node drain, `deploy/down.sh --local`) is held back while
//! the node is the master and the coordinator moves the master away without losing a write
//! (`Switchover` with `away_from` = this node: the lossless switchover, README "Moving the
//! master on purpose"); then Redis gets the SIGTERM. A replica, a node whose Redis does not
//! answer, or a coordinator that cannot help within the time given: Redis is stopped at once
//! (the crash failover takes over from there, as for any dead master).

use std::time::Duration;

use redis::Value;
use redis_ha_common::redis_client::{text, RedisLink};
use redis_ha_common::{HostPort, Secret};
use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::SwitchoverRequest;
use redis_ha_tls::ClientTls;

/// What the local Redis said its role is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalRole {
    Master,
    Replica,
    /// It did not answer (starting, loading, gone): it takes no writes to hand over.
    Unknown(String),
}

/// The rule: only a master's writes need a new home before it stops.
pub fn needs_handover(role: &LocalRole) -> bool {
    matches!(role, LocalRole::Master)
}

/// The reply of `ROLE` as a [`LocalRole`].
pub fn parse_role(v: &Value) -> LocalRole {
    match v {
        Value::Array(items) => match items.first().and_then(text).as_deref() {
            Some("master") => LocalRole::Master,
            Some("slave") => LocalRole::Replica,
            other => LocalRole::Unknown(format!("ROLE answered {other:?}")),
        },
        other => LocalRole::Unknown(format!("ROLE answered {other:?}")),
    }
}

/// How to reach the coordinator and as whom.
#[derive(Clone, Debug)]
pub struct Coordinator {
    pub url: String,
    pub tls: ClientTls,
    pub group: String,
    /// This node's id (`node-1`): the switchover moves the master away from it only.
    pub node_id: String,
    pub max_pause_ms: u64,
    /// The longest the stop waits for the coordinator.
    pub timeout: Duration,
}

/// What became of the stop request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not the master: stopped at once.
    NotNeeded(String),
    /// The coordinator moved the master away.
    HandedOver(String),
    /// It could not (refused, aborted, unreachable, too slow): stopped anyway.
    Failed(String),
}

/// Asks the local Redis for its role (bounded by `timeout`).
pub async fn local_role(
    addr: HostPort,
    user: Option<&str>,
    password: Option<&Secret>,
    timeout: Duration,
) -> LocalRole {
    let mut link = match RedisLink::new_as("redis", addr, user, password, timeout) {
        Ok(l) => l,
        Err(e) => return LocalRole::Unknown(e.cause()),
    };
    match link.query(&redis::cmd("ROLE"), "ROLE").await {
        Ok(v) => parse_role(&v),
        Err(e) => LocalRole::Unknown(e.cause()),
    }
}

/// The handover before the stop: asks the coordinator when `role` needs it.
pub async fn before_stop(role: &LocalRole, c: &Coordinator) -> Outcome {
    if !needs_handover(role) {
        return Outcome::NotNeeded(format!("{role:?}"));
    }
    let endpoint = match c.tls.endpoint(&c.url) {
        Ok(e) => e.connect_timeout(Duration::from_secs(2)).timeout(c.timeout),
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let call = async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        CoordinatorClient::new(channel)
            .switchover(SwitchoverRequest {
                master_group: c.group.clone(),
                to: String::new(),
                max_pause_ms: c.max_pause_ms,
                away_from: c.node_id.clone(),
            })
            .await
            .map(|r| r.into_inner().message)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    };
    match tokio::time::timeout(c.timeout, call).await {
        Ok(Ok(message)) => Outcome::HandedOver(message),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::Failed(format!("no answer within {} ms", c.timeout.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn only_a_master_hands_over() {
        let master = Value::Array(vec![bulk("master"), Value::Int(10), Value::Array(vec![])]);
        let replica = Value::Array(vec![bulk("slave"), bulk("127.0.0.1"), Value::Int(7001)]);
        assert_eq!(parse_role(&master), LocalRole::Master);
        assert_eq!(parse_role(&replica), LocalRole::Replica);
        assert!(matches!(parse_role(&Value::Nil), LocalRole::Unknown(_)));
        assert!(needs_handover(&LocalRole::Master));
        assert!(!needs_handover(&LocalRole::Replica));
        assert!(!needs_handover(&LocalRole::Unknown("timeout".into())));
    }

    #[tokio::test]
    async fn a_replica_is_stopped_without_asking() {
        let c = Coordinator {
            // Nothing listens there: asking would fail, not asking is the point.
            url: "http://127.0.0.1:9".into(),
            tls: ClientTls::insecure(),
            group: "g".into(),
            node_id: "node-1".into(),
            max_pause_ms: 1000,
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            before_stop(&LocalRole::Replica, &c).await,
            Outcome::NotNeeded(_)
        ));
        assert!(matches!(
            before_stop(&LocalRole::Master, &c).await,
            Outcome::Failed(_)
        ));
    }
}
