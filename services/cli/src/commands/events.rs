//! `redis-ha events [--limit N] [--json]`

use redis_ha_proto::v1::ListEventsRequest;

use crate::cli::EventsArgs;
use crate::client::Target;
use crate::error::CliError;
use crate::model::EventJson;
use crate::output::emit;
use crate::render::render_events;

pub async fn run(target: &Target, args: &EventsArgs) -> Result<(), CliError> {
    let mut client = target.connect().await?;
    let req = target.request(
        ListEventsRequest {
            master_group: target.group.clone(),
            limit: args.limit,
        },
        true,
    );
    let resp = target.call(client.list_events(req)).await?;
    if args.json {
        let events: Vec<EventJson> = resp.events.iter().map(EventJson::from).collect();
        let mut text = serde_json::to_string_pretty(&events)?;
        text.push('\n');
        emit(&text)
    } else if resp.events.is_empty() {
        emit("no events\n")
    } else {
        emit(&render_events(&resp.events))
    }
}
