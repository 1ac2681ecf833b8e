//! `redis-ha failover`: the coordinator asks a Sentinel for `SENTINEL FAILOVER <group>`.

use redis_ha_proto::v1::{FailoverRequest, FailoverResponse};
use tracing::Instrument;

use crate::client::Target;
use crate::error::CliError;
use crate::output::emit;

/// The coordinator's answer, naming the Sentinel that accepted unless the message already does.
pub fn format_response(group: &str, resp: &FailoverResponse) -> String {
    let mut text = if resp.message.is_empty() {
        format!("failover of {group} requested")
    } else {
        resp.message.clone()
    };
    if !resp.sentinel.is_empty() && !text.contains(&resp.sentinel) {
        text.push_str(&format!(" (Sentinel {})", resp.sentinel));
    }
    text.push('\n');
    text
}

pub async fn run(target: &Target) -> Result<(), CliError> {
    // A span of its own, so an exported trace starts at the operator's command.
    let span = tracing::info_span!("cli.failover", group = %target.group);
    async {
        let mut client = target.connect().await?;
        let req = target.request(
            FailoverRequest {
                master_group: target.group.clone(),
            },
            true,
        );
        let resp = target.call(client.failover(req)).await?;
        emit(&format_response(&target.group, &resp))
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_who_accepted() {
        let cases = [
            ("OK", "127.0.0.1:19002", "OK (Sentinel 127.0.0.1:19002)\n"),
            // A message that already names the Sentinel is printed as it is.
            (
                "Sentinel 127.0.0.1:19002 accepted",
                "127.0.0.1:19002",
                "Sentinel 127.0.0.1:19002 accepted\n",
            ),
        ];
        for (message, sentinel, want) in cases {
            let resp = FailoverResponse {
                message: message.into(),
                sentinel: sentinel.into(),
            };
            assert_eq!(format_response("redis-cluster", &resp), want, "{message:?}");
        }
        assert_eq!(
            format_response("g", &FailoverResponse::default()),
            "failover of g requested\n"
        );
    }
}
