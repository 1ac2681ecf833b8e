//! `redis-ha wait`: polls the coordinator until the group is healthy ([`crate::health`]),
//! printing each new reason it is not; exits 0 when healthy, and with the last reason when the
//! time is up (a poll under way then may finish first: at most `--timeout-ms` more). A
//! coordinator that cannot be reached yet (still starting) is waited for too.

use std::time::{Duration, Instant};

use crate::cli::WaitArgs;
use crate::client::Target;
use crate::error::CliError;
use crate::health::{assess, Goal};
use crate::model::StatusJson;
use crate::output::emit;

/// Errors worth another poll: the coordinator is not there (yet), or too slow this time
/// (`CANCELLED` is what tonic answers when the request's deadline expires in the server).
fn transient(e: &CliError) -> bool {
    match e {
        CliError::Unreachable { .. } | CliError::StreamEnded { .. } => true,
        CliError::Grpc { code, .. } => {
            matches!(*code, "UNAVAILABLE" | "DEADLINE_EXCEEDED" | "CANCELLED")
        }
        _ => false,
    }
}

fn stamp(start: Instant) -> String {
    format!("[{:5.1} s]", start.elapsed().as_secs_f64())
}

pub async fn run(target: &Target, args: &WaitArgs) -> Result<(), CliError> {
    let goal = Goal {
        replicas: args.replicas,
    };
    let limit = Duration::from_millis(args.max_wait_ms);
    let poll = Duration::from_millis(args.poll_ms);
    let start = Instant::now();
    // Said with the first answer, so that a refused command (unknown group) prints nothing.
    let header = format!(
        "waiting for group {}: a confirmed master and {} linked replica(s), up to {:.1} s\n",
        target.group,
        goal.replicas,
        limit.as_secs_f64()
    );
    let mut last: Option<String> = None;
    loop {
        // Each poll gets the whole --timeout-ms, also the last one: cut to the time left it
        // would end as a timeout instead of telling what the topology shows.
        let (reason, unreachable) = match super::status::fetch(target).await {
            Ok(topology) => match assess(&StatusJson::from(&topology), goal) {
                Ok(healthy) => {
                    let line = format!("{} healthy: {healthy}\n", stamp(start));
                    return emit(&if last.is_none() { header + &line } else { line });
                }
                Err(why) => (why.to_string(), false),
            },
            Err(e) if transient(&e) => {
                let unreachable = e.exit_code() == crate::error::EXIT_UNREACHABLE;
                (e.to_string(), unreachable)
            }
            Err(e) => return Err(e),
        };
        if last.as_deref() != Some(reason.as_str()) {
            if last.is_none() {
                emit(&header)?;
            }
            emit(&format!("{} waiting: {reason}\n", stamp(start)))?;
            last = Some(reason.clone());
        }
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(CliError::NotHealthy {
                group: target.group.clone(),
                after_ms: args.max_wait_ms,
                reason,
                unreachable,
            });
        }
        tokio::time::sleep(poll.min(left)).await;
    }
}
