//! `redis-ha status [--json]`

use redis_ha_proto::v1::{GetTopologyRequest, Topology};

use crate::cli::StatusArgs;
use crate::client::Target;
use crate::error::CliError;
use crate::model::StatusJson;
use crate::output::{emit, use_color};
use crate::render::render_status;

/// One GetTopology call.
pub async fn fetch(target: &Target) -> Result<Topology, CliError> {
    let mut client = target.connect().await?;
    let req = target.request(
        GetTopologyRequest {
            master_group: target.group.clone(),
        },
        true,
    );
    target.call(client.get_topology(req)).await
}

pub async fn run(target: &Target, args: &StatusArgs) -> Result<(), CliError> {
    let topology = fetch(target).await?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&StatusJson::from(&topology))?;
        text.push('\n');
        emit(&text)
    } else {
        emit(&render_status(&topology, use_color()))
    }
}
