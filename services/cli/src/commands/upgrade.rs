//! `redis-ha upgrade plan` and `redis-ha upgrade wait`: the I/O around [`crate::upgrade`]
//! (the decisions). `deploy/up.sh` runs them in a container of the new sidecars image, so the
//! plan is always the new version's.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::cli::{UpgradePlanArgs, UpgradeWaitArgs};
use crate::client::Target;
use crate::error::CliError;
use crate::model::StatusJson;
use crate::output::emit;
use crate::upgrade::{parse_services, plan, ready, Awaited};

/// Reads the services on stdin, asks the coordinator for the topology only when a node
/// service changes (a plan with nothing to roll needs no healthy group), prints the plan.
pub async fn plan_cmd(target: &Target, _args: &UpgradePlanArgs) -> Result<(), CliError> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| CliError::Upgrade(format!("cannot read the services on stdin: {e}")))?;
    let services = parse_services(&input).map_err(|e| CliError::Upgrade(e.to_string()))?;
    let changes = services.iter().any(|s| !s.changes().is_empty());
    let status = if changes {
        StatusJson::from(&super::status::fetch(target).await?)
    } else {
        // Not looked at when nothing changes.
        StatusJson::from(&redis_ha_proto::v1::Topology::default())
    };
    let p = plan(&services, &status).map_err(|e| CliError::Upgrade(e.to_string()))?;
    emit(&p.render())
}

/// Polls the coordinator until [`ready`]; prints each new reason it is not, like `wait`.
pub async fn wait_cmd(target: &Target, args: &UpgradeWaitArgs) -> Result<(), CliError> {
    let awaited = match (args.replica, args.master, args.sentinel) {
        (Some(node), None, None) => Awaited::Replica {
            node,
            max_lag_bytes: args.max_lag_bytes,
        },
        (None, Some(node), None) => Awaited::Master { node },
        (None, None, Some(node)) => Awaited::Sentinel { node },
        _ => {
            return Err(CliError::Upgrade(
                "give exactly one of --replica, --master, --sentinel".into(),
            ))
        }
    };
    let limit = Duration::from_millis(args.max_wait_ms);
    let start = Instant::now();
    let mut last: Option<String> = None;
    loop {
        let reason = match super::status::fetch(target).await {
            Ok(t) => match ready(&StatusJson::from(&t), awaited) {
                Ok(line) => {
                    return emit(&format!(
                        "[{:5.1} s] ready: {line}\n",
                        start.elapsed().as_secs_f64()
                    ))
                }
                Err(why) => why.to_string(),
            },
            // The coordinator may be restarting (a new sidecars image): ask again.
            Err(e) => e.to_string(),
        };
        if last.as_deref() != Some(reason.as_str()) {
            emit(&format!(
                "[{:5.1} s] waiting: {reason}\n",
                start.elapsed().as_secs_f64()
            ))?;
            last = Some(reason.clone());
        }
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(CliError::NotHealthy {
                group: target.group.clone(),
                after_ms: args.max_wait_ms,
                reason,
                unreachable: false,
            });
        }
        tokio::time::sleep(Duration::from_millis(args.poll_ms).min(left)).await;
    }
}
