//! Docker's `die` events for this node's Redis container: on a swarm a dead container's address
//! simply disappears (nothing refuses a connection), so the Docker daemon's word is the crash
//! evidence there. One long-lived event stream, reconnected with backoff.

use std::collections::HashMap;

use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures::StreamExt;

use crate::hung::{RestartTarget, SERVICE_LABEL};

/// The event filter for `target`'s `die` events.
pub fn die_filter(target: &RestartTarget) -> HashMap<String, Vec<String>> {
    let mut filters = HashMap::new();
    filters.insert("type".to_owned(), vec!["container".to_owned()]);
    filters.insert("event".to_owned(), vec!["die".to_owned()]);
    match target {
        RestartTarget::Container(c) => {
            filters.insert("container".to_owned(), vec![c.clone()]);
        }
        RestartTarget::Service(s) => {
            filters.insert("label".to_owned(), vec![format!("{SERVICE_LABEL}={s}")]);
        }
    }
    filters
}

/// The exit code a `die` event carries (`exitCode` attribute), if any.
pub fn exit_code(attributes: Option<&HashMap<String, String>>) -> Option<i64> {
    attributes?.get("exitCode")?.trim().parse().ok()
}

/// Why the event stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("cannot reach the Docker daemon (is /var/run/docker.sock mounted and usable by the agent's user?): {0}")]
    Connect(String),
    #[error("Docker event stream: {0}")]
    Stream(String),
    #[error("Docker event stream ended")]
    Ended,
}

/// Streams `target`'s deaths into `on_die` (called with the exit code) until the stream breaks.
pub async fn follow_deaths(
    target: &RestartTarget,
    mut on_die: impl FnMut(Option<i64>),
    on_connected: impl FnOnce(),
) -> Result<(), EventsError> {
    let docker =
        Docker::connect_with_local_defaults().map_err(|e| EventsError::Connect(e.to_string()))?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| EventsError::Connect(e.to_string()))?;
    let options = EventsOptions {
        filters: Some(die_filter(target)),
        ..Default::default()
    };
    let mut stream = docker.events(Some(options));
    on_connected();
    while let Some(event) = stream.next().await {
        let event = event.map_err(|e| EventsError::Stream(e.to_string()))?;
        if event.action.as_deref() == Some("die") {
            on_die(exit_code(
                event.actor.as_ref().and_then(|a| a.attributes.as_ref()),
            ));
        }
    }
    Err(EventsError::Ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_the_container_or_the_service() {
        let f = die_filter(&RestartTarget::Service("redis-ha_redis-1".into()));
        assert_eq!(f["event"], vec!["die"]);
        assert_eq!(f["type"], vec!["container"]);
        assert_eq!(
            f["label"],
            vec!["com.docker.swarm.service.name=redis-ha_redis-1"]
        );
        let f = die_filter(&RestartTarget::Container("redis-1".into()));
        assert_eq!(f["container"], vec!["redis-1"]);
        assert!(!f.contains_key("label"));
    }

    #[test]
    fn exit_code_from_the_attributes() {
        let mut a = HashMap::new();
        assert_eq!(exit_code(Some(&a)), None);
        a.insert("exitCode".to_owned(), "137".to_owned());
        assert_eq!(exit_code(Some(&a)), Some(137));
        a.insert("exitCode".to_owned(), "x".to_owned());
        assert_eq!(exit_code(Some(&a)), None);
        assert_eq!(exit_code(None), None);
    }
}
