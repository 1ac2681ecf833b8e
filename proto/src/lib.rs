//! Generated code for the `redisha.v1` gRPC package.

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("redisha.v1");

    /// Encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("redisha_descriptor");
}

pub use v1::*;

impl MasterSource {
    /// The name operators see for it (CLI text and JSON, logs, events): the strings
    /// `master_source` carried before it was an enum.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::SentinelQuorum => "sentinel-quorum",
            Self::Promoted => "promoted",
            Self::LastKnown => "last-known",
            Self::None => "none",
        }
    }
}

/// The stable words of `Topology.master_unconfirmed`: why the master is not confirmed (empty when
/// it is). The coordinator writes them, the CLI explains them.
pub mod unconfirmed {
    /// The master's own agent does not report it fresh, reachable and role:master.
    pub const OWN_AGENT: &str = "own-agent";
    /// The coordinator hears fresh reports from too few agents (cut off with the master?).
    pub const AGENTS_LOST: &str = "agents-lost";
}

impl std::fmt::Display for MasterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::MasterSource;

    #[test]
    fn master_source_labels_are_the_old_strings() {
        let all = [
            (MasterSource::Unspecified, "unspecified"),
            (MasterSource::SentinelQuorum, "sentinel-quorum"),
            (MasterSource::Promoted, "promoted"),
            (MasterSource::LastKnown, "last-known"),
            (MasterSource::None, "none"),
        ];
        for (s, label) in all {
            assert_eq!(s.label(), label);
            assert_eq!(s.to_string(), label);
        }
        // An unknown number (a newer peer) reads as unspecified.
        let t = super::Topology {
            master_source: 99,
            ..Default::default()
        };
        assert_eq!(t.master_source(), MasterSource::Unspecified);
    }
}
