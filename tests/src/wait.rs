//! Polling with a deadline: tests assert on states reached, never on how fast.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often `wait_for` probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Calls `probe` every 25 ms until it returns `Ok`, and returns that value. `Err` carries a
/// description of what was observed instead; after `timeout` the test panics with `what`
/// and the last observation.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    match try_wait_for(timeout, probe).await {
        Ok(v) => v,
        Err(last) => {
            panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}")
        }
    }
}

/// Like `wait_for`, but returns the last observation instead of panicking.
pub async fn try_wait_for<T, F, Fut>(timeout: Duration, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_ok() {
        let mut n = 0;
        let v = wait_for("n to reach 3", Duration::from_secs(10), || {
            n += 1;
            let cur = n;
            async move {
                if cur >= 3 {
                    Ok(cur)
                } else {
                    Err(format!("n={cur}"))
                }
            }
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn gives_up_with_the_last_observation() {
        let r: Result<(), String> = try_wait_for(Duration::from_millis(60), || async {
            Err("still no".to_owned())
        })
        .await;
        assert_eq!(r, Err("still no".to_owned()));
    }
}
