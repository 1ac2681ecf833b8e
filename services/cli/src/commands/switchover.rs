//! `redis-ha switchover`: the coordinator moves the master without losing a write (its
//! `Switchover` call, `services/coordinator/src/switchover.rs`).

use std::time::Duration;

use redis_ha_proto::v1::{SwitchoverRequest, SwitchoverResponse};
use tracing::Instrument;

use crate::cli::SwitchoverArgs;
use crate::client::Target;
use crate::error::CliError;
use crate::output::emit;

/// Beyond the usual timeout, what a switchover may take: the Sentinels' reading of the
/// priorities (up to 25 s) and a promotion (at most a failover-timeout).
const SWITCHOVER_EXTRA: Duration = Duration::from_secs(60);

/// `--to 2` means `node-2`, as everywhere else in the CLI.
pub fn target_node(to: &str) -> String {
    let to = to.trim();
    if !to.is_empty() && to.bytes().all(|b| b.is_ascii_digit()) {
        format!("node-{to}")
    } else {
        to.to_owned()
    }
}

pub fn format_response(resp: &SwitchoverResponse, verbose: bool) -> String {
    let mut text = format!("{}\n", resp.message);
    if verbose {
        for s in &resp.steps {
            text.push_str(&format!("  {s}\n"));
        }
    }
    text
}

pub fn response_json(resp: &SwitchoverResponse) -> serde_json::Value {
    serde_json::json!({
        "message": resp.message,
        "old_master": resp.old_master,
        "new_master": resp.new_master,
        "sentinel": resp.sentinel,
        "epoch": resp.epoch,
        "pause_ms": resp.pause_ms,
        "steps": resp.steps,
    })
}

pub async fn run(target: &Target, args: &SwitchoverArgs) -> Result<(), CliError> {
    let span = tracing::info_span!("cli.switchover", group = %target.group);
    let mut long = target.clone();
    long.timeout = target.timeout + SWITCHOVER_EXTRA;
    async {
        let mut client = target.connect().await?;
        let req = long.request(
            SwitchoverRequest {
                master_group: target.group.clone(),
                to: args.to.as_deref().map(target_node).unwrap_or_default(),
                max_pause_ms: args.max_pause_ms,
                away_from: String::new(),
            },
            true,
        );
        let resp = long.call(client.switchover(req)).await?;
        if args.json {
            emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(&response_json(&resp))?
            ))
        } else {
            emit(&format_response(&resp, args.verbose))
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_names_a_node() {
        assert_eq!(target_node("2"), "node-2");
        assert_eq!(target_node(" node-3 "), "node-3");
        assert_eq!(target_node("redis-2:9002"), "redis-2:9002");
        assert_eq!(target_node(""), "");
    }

    #[test]
    fn verbose_lists_the_steps() {
        let resp = SwitchoverResponse {
            message: "switchover done".into(),
            steps: vec!["+0 ms a".into(), "+5 ms b".into()],
            ..SwitchoverResponse::default()
        };
        assert_eq!(format_response(&resp, false), "switchover done\n");
        assert_eq!(
            format_response(&resp, true),
            "switchover done\n  +0 ms a\n  +5 ms b\n"
        );
        assert_eq!(response_json(&resp)["steps"][1], "+5 ms b");
    }
}
