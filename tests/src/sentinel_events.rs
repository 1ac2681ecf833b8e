//! Every event of a test cluster's Sentinels, as the test received them: the order of a
//! failover's steps, seen from outside.

use std::time::Instant;

use crate::Cluster;

/// Every event of the cluster's Sentinels (`PSUBSCRIBE *`), stamped when the test received it.
pub struct SentinelEvents {
    seen: std::sync::Arc<std::sync::Mutex<Vec<SeenEvent>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Clone, Debug)]
pub struct SeenEvent {
    pub at: Instant,
    pub sentinel: usize,
    pub channel: String,
    pub payload: String,
}

impl SentinelEvents {
    pub async fn subscribe(cluster: &Cluster) -> Self {
        use tokio_stream::StreamExt as _;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 1..=3 {
            let url = format!("127.0.0.1:{}", cluster.sentinel_port(i));
            // The Sentinel's own password when the cluster has ACLs on.
            let info = redis::ConnectionInfo {
                addr: redis::ConnectionAddr::Tcp("127.0.0.1".into(), cluster.sentinel_port(i)),
                redis: redis::RedisConnectionInfo {
                    password: cluster.sentinel(i).password(),
                    ..redis::RedisConnectionInfo::default()
                },
            };
            let client =
                redis::Client::open(info).unwrap_or_else(|e| panic!("sentinel {i} {url}: {e}"));
            let mut pubsub = client
                .get_async_pubsub()
                .await
                .unwrap_or_else(|e| panic!("sentinel {i} pub/sub: {e}"));
            pubsub
                .psubscribe("*")
                .await
                .unwrap_or_else(|e| panic!("sentinel {i} PSUBSCRIBE: {e}"));
            let seen = seen.clone();
            tasks.push(tokio::spawn(async move {
                let mut messages = pubsub.into_on_message();
                while let Some(m) = messages.next().await {
                    let event = SeenEvent {
                        at: Instant::now(),
                        sentinel: i,
                        channel: m.get_channel_name().to_owned(),
                        payload: m.get_payload().unwrap_or_default(),
                    };
                    seen.lock().unwrap_or_else(|e| e.into_inner()).push(event);
                }
            }));
        }
        Self { seen, tasks }
    }

    /// Every event on one of `channels` received after `since`, in the order received.
    pub fn all(&self, since: Instant, channels: &[&str]) -> Vec<SeenEvent> {
        let mut v: Vec<SeenEvent> = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| e.at > since && channels.contains(&e.channel.as_str()))
            .cloned()
            .collect();
        v.sort_by_key(|e| e.at);
        v
    }

    /// The first event on one of `channels` received after `since`.
    pub fn first(&self, since: Instant, channels: &[&str]) -> Option<SeenEvent> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| e.at > since && channels.contains(&e.channel.as_str()))
            .min_by_key(|e| e.at)
            .cloned()
    }
}

impl Drop for SentinelEvents {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
