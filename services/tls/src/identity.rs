//! Who a certificate names and who may make which call: the control plane's one rule.
//!
//! Every certificate the cluster CA issues carries exactly one identity, in its subject's
//! common name: `agent.<node id>` for a node's health agent, `reloader`, `operator` (the
//! `redis-ha` command line) and `coordinator` (the server). The coordinator reads the peer's
//! identity from its certificate ([`Identity::from_certificate`]) and asks [`authorize`]
//! before it acts on a call.

use std::fmt;

use x509_parser::prelude::{FromDer, X509Certificate};

/// The common-name prefix of an agent's identity; the node id follows it.
const AGENT_PREFIX: &str = "agent.";
const RELOADER: &str = "reloader";
const OPERATOR: &str = "operator";
const COORDINATOR: &str = "coordinator";

/// Longest node id an identity may carry (the coordinator's own limit on agent ids).
pub const MAX_NODE_ID_LEN: usize = 256;

/// One party of the control plane, as its certificate names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    /// The health agent of one node: it may report for that node only.
    Agent { node: String },
    /// The HAProxy reloader: reads the topology.
    Reloader,
    /// The operator (`redis-ha`): reads, and is the only one who may change anything.
    Operator,
    /// The coordinator's server certificate.
    Coordinator,
}

/// Why a certificate names no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the certificate does not parse: {0}")]
    Parse(String),
    #[error("the certificate has {0} subject common names (exactly one expected)")]
    CommonNames(usize),
    #[error("the certificate's common name {0:?} names no redis-ha identity (agent.<node>, reloader, operator, coordinator)")]
    Unknown(String),
    #[error("the node id in {0:?} is empty, too long, or has characters other than letters, digits, '.', '_' and '-'")]
    BadNode(String),
}

/// Whether `node` may be part of an identity (and of a file name): non-empty, at most
/// [`MAX_NODE_ID_LEN`] bytes of ASCII letters, digits, `.`, `_`, `-`, not starting with `.`.
pub fn valid_node_id(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= MAX_NODE_ID_LEN
        && !node.starts_with('.')
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Identity {
    /// An agent's identity; `None` for a node id no identity can carry.
    pub fn agent(node: &str) -> Option<Self> {
        valid_node_id(node).then(|| Self::Agent {
            node: node.to_owned(),
        })
    }

    /// The subject common name that carries this identity.
    pub fn common_name(&self) -> String {
        match self {
            Self::Agent { node } => format!("{AGENT_PREFIX}{node}"),
            Self::Reloader => RELOADER.to_owned(),
            Self::Operator => OPERATOR.to_owned(),
            Self::Coordinator => COORDINATOR.to_owned(),
        }
    }

    /// The identity a common name carries (the inverse of [`Self::common_name`]).
    pub fn from_common_name(cn: &str) -> Result<Self, IdentityError> {
        if let Some(node) = cn.strip_prefix(AGENT_PREFIX) {
            return Self::agent(node).ok_or_else(|| IdentityError::BadNode(cn.to_owned()));
        }
        match cn {
            RELOADER => Ok(Self::Reloader),
            OPERATOR => Ok(Self::Operator),
            COORDINATOR => Ok(Self::Coordinator),
            _ => Err(IdentityError::Unknown(cn.to_owned())),
        }
    }

    /// The identity an X.509 certificate (DER) names: its one subject common name. The
    /// certificate's signature and validity are the TLS handshake's business, checked before.
    pub fn from_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Parse(e.to_string()))?;
        let names: Vec<&str> = cert
            .subject()
            .iter_common_name()
            .map(|cn| cn.as_str().map_err(|e| IdentityError::Parse(e.to_string())))
            .collect::<Result<_, _>>()?;
        match names.as_slice() {
            [cn] => Self::from_common_name(cn),
            _ => Err(IdentityError::CommonNames(names.len())),
        }
    }

    /// The file name stem of this identity's certificate and key (`agent-node-1`, `reloader`).
    pub fn file_stem(&self) -> String {
        match self {
            Self::Agent { node } => format!("agent-{node}"),
            other => other.common_name(),
        }
    }

    /// True for the identities that connect to the coordinator as clients.
    pub fn is_client(&self) -> bool {
        !matches!(self, Self::Coordinator)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.common_name())
    }
}

/// What a call asks of the coordinator, as far as permissions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call<'a> {
    /// A health report for the node `node` (the report's `agent_id`).
    Report { node: &'a str },
    /// Anything that changes the cluster (`Failover`, `Switchover`, and every later command
    /// that does).
    Change,
    /// Move the master away from `node` before it stops (a `Switchover` with `away_from`): the
    /// operator, or that node's own agent identity (the stopping Redis container holds it).
    Handover { node: &'a str },
    /// Reading: GetTopology, WatchTopology, ListEvents, health, reflection.
    Read,
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{who} may not report for node {node:?}: an agent reports for its own node only")]
    OtherNode { who: Identity, node: String },
    #[error("{who} may not report: only a node's agent reports")]
    NotAnAgent { who: Identity },
    #[error("{who} may not change the cluster: that needs the operator's certificate")]
    NotOperator { who: Identity },
    #[error("{who} may not move the master away from node {node:?}: a node hands over its own role only")]
    NotItsNode { who: Identity, node: String },
    #[error("{who} is not a client identity")]
    NotAClient { who: Identity },
}

/// The rule: an agent reports for its own node only; only the operator changes anything,
/// except that a node's agent identity may move the master away from its own node (its
/// graceful stop); every client identity may read. The coordinator's own certificate is not a client.
pub fn authorize(who: &Identity, call: Call<'_>) -> Result<(), Denied> {
    if !who.is_client() {
        return Err(Denied::NotAClient { who: who.clone() });
    }
    match (who, call) {
        (Identity::Agent { node: own }, Call::Report { node }) if own == node => Ok(()),
        (Identity::Agent { .. }, Call::Report { node }) => Err(Denied::OtherNode {
            who: who.clone(),
            node: node.to_owned(),
        }),
        (_, Call::Report { .. }) => Err(Denied::NotAnAgent { who: who.clone() }),
        (Identity::Operator, Call::Change) => Ok(()),
        (_, Call::Change) => Err(Denied::NotOperator { who: who.clone() }),
        (Identity::Operator, Call::Handover { .. }) => Ok(()),
        (Identity::Agent { node: own }, Call::Handover { node }) if own == node => Ok(()),
        (_, Call::Handover { node }) => Err(Denied::NotItsNode {
            who: who.clone(),
            node: node.to_owned(),
        }),
        (_, Call::Read) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn agent(n: &str) -> Identity {
        Identity::agent(n).unwrap()
    }

    #[test]
    fn common_names() {
        assert_eq!(agent("node-1").common_name(), "agent.node-1");
        assert_eq!(Identity::Reloader.common_name(), "reloader");
        assert_eq!(Identity::Operator.common_name(), "operator");
        assert_eq!(Identity::Coordinator.common_name(), "coordinator");
        assert_eq!(agent("node-1").file_stem(), "agent-node-1");
        assert_eq!(Identity::Operator.file_stem(), "operator");
        assert_eq!(
            Identity::from_common_name("agent.node-2"),
            Ok(agent("node-2"))
        );
        for bad in ["", "agent", "Operator", "admin", "agent.node-1 ", "root"] {
            assert!(Identity::from_common_name(bad).is_err(), "{bad:?}");
        }
        for bad in ["agent.", "agent..x", "agent.a/b", "agent.a b", "agent.ä"] {
            assert_eq!(
                Identity::from_common_name(bad),
                Err(IdentityError::BadNode(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_rule() {
        let ops = Identity::Operator;
        let rel = Identity::Reloader;
        let a1 = agent("node-1");
        let coord = Identity::Coordinator;
        let report = |n| Call::Report { node: n };
        // An agent reports for its own node only.
        assert_eq!(authorize(&a1, report("node-1")), Ok(()));
        assert!(matches!(
            authorize(&a1, report("node-2")),
            Err(Denied::OtherNode { .. })
        ));
        // The node id is compared exactly: no prefix, case or padding games.
        for near in ["node-10", "Node-1", "node-1 ", "node", ""] {
            assert!(authorize(&a1, report(near)).is_err(), "{near:?}");
        }
        assert!(matches!(
            authorize(&ops, report("node-1")),
            Err(Denied::NotAnAgent { .. })
        ));
        assert!(authorize(&rel, report("node-1")).is_err());
        // Only the operator changes anything.
        assert_eq!(authorize(&ops, Call::Change), Ok(()));
        for who in [&rel, &a1] {
            assert!(matches!(
                authorize(who, Call::Change),
                Err(Denied::NotOperator { .. })
            ));
        }
        // A node's agent identity moves the master away from its own node only.
        let handover = |n| Call::Handover { node: n };
        assert_eq!(authorize(&a1, handover("node-1")), Ok(()));
        assert_eq!(authorize(&ops, handover("node-2")), Ok(()));
        for (who, node) in [(&a1, "node-2"), (&a1, "node-10"), (&rel, "node-1")] {
            assert!(
                matches!(
                    authorize(who, handover(node)),
                    Err(Denied::NotItsNode { .. })
                ),
                "{who} {node}"
            );
        }
        // Every client reads; the server certificate is no client at all.
        for who in [&ops, &rel, &a1] {
            assert_eq!(authorize(who, Call::Read), Ok(()));
        }
        for call in [Call::Read, Call::Change, report("node-1")] {
            assert!(matches!(
                authorize(&coord, call),
                Err(Denied::NotAClient { .. })
            ));
        }
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert!(matches!(
            Identity::from_certificate(b"not a certificate"),
            Err(IdentityError::Parse(_))
        ));
        assert!(Identity::from_certificate(&[]).is_err());
    }

    proptest! {
        #[test]
        fn common_name_round_trips(node in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,40}") {
            let id = Identity::agent(&node).unwrap();
            prop_assert_eq!(Identity::from_common_name(&id.common_name()), Ok(id));
        }

        #[test]
        fn an_agent_reports_for_exactly_its_node(
            own in "[a-z0-9-]{1,12}",
            other in "[a-z0-9-]{1,12}",
        ) {
            let id = Identity::agent(&own).unwrap();
            let allowed = authorize(&id, Call::Report { node: &other }).is_ok();
            prop_assert_eq!(allowed, own == other);
            prop_assert!(authorize(&id, Call::Change).is_err());
        }

        #[test]
        fn any_text_parses_or_is_refused(cn in ".{0,64}") {
            // Never panics; what parses prints back to the same name.
            if let Ok(id) = Identity::from_common_name(&cn) {
                prop_assert_eq!(id.common_name(), cn);
            }
        }
    }
}
