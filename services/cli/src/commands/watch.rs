//! `redis-ha watch [--json]`: the current topology, then one line per new version.
//!
//! Once it has received a topology, a lost stream (coordinator restarted, network blip) is
//! retried every second with a note on stderr: a watch left running in a terminal should
//! survive the very failovers it is there to show. Before that, errors exit like `status`.

use std::time::Duration;

use redis_ha_proto::v1::{Topology, WatchTopologyRequest};

use crate::cli::WatchArgs;
use crate::client::Target;
use crate::error::CliError;
use crate::model::StatusJson;
use crate::output::emit;
use crate::render::render_watch_line;

const RETRY_EVERY: Duration = Duration::from_secs(1);

fn format_one(prev: Option<&Topology>, t: &Topology, json: bool) -> Result<String, CliError> {
    if json {
        let mut line = serde_json::to_string(&StatusJson::from(t))?;
        line.push('\n');
        Ok(line)
    } else {
        Ok(render_watch_line(prev, t))
    }
}

/// Follows one stream until it breaks, and says why. `delivered` turns true with the
/// first topology received on this stream.
async fn follow(
    target: &Target,
    args: &WatchArgs,
    prev: &mut Option<Topology>,
    delivered: &mut bool,
) -> CliError {
    let mut client = match target.connect().await {
        Ok(c) => c,
        Err(e) => return e,
    };
    // No deadline on the request itself: the stream is meant to stay open.
    let req = target.request(
        WatchTopologyRequest {
            master_group: target.group.clone(),
        },
        false,
    );
    let mut stream = match target.call(client.watch_topology(req)).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    loop {
        match stream.message().await {
            Ok(Some(t)) => {
                let text = match format_one(prev.as_ref(), &t, args.json) {
                    Ok(text) => text,
                    Err(e) => return e,
                };
                if let Err(e) = emit(&text) {
                    return e;
                }
                *prev = Some(t);
                *delivered = true;
            }
            Ok(None) => {
                return CliError::StreamEnded {
                    url: target.url.clone(),
                }
            }
            Err(status) => return target.status_error(&status),
        }
    }
}

pub async fn run(target: &Target, args: &WatchArgs) -> Result<(), CliError> {
    let mut prev: Option<Topology> = None;
    let mut ever_delivered = false;
    // True once the "reconnecting" notice is out, until a stream delivers again.
    let mut noticed = false;
    loop {
        let mut delivered = false;
        let e = follow(target, args, &mut prev, &mut delivered).await;
        if delivered {
            ever_delivered = true;
            noticed = false;
        }
        if !ever_delivered || matches!(e, CliError::Output(_)) {
            return Err(e);
        }
        if !noticed {
            eprintln!("redis-ha: watch interrupted: {e}; reconnecting every second");
            noticed = true;
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}
