//! The one way tests wait: poll a condition until it holds, with a generous deadline. Tests
//! assert on states reached, never on how fast they were reached.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often [`wait_until`] probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The usual deadline. Generous: a loaded 2-core machine running several clusters at once is
/// slow, and a wait that is met returns at once anyway.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// What a probe of [`wait_until`] returns: `true` / `Some(v)` / `Ok(v)` when the condition
/// holds, otherwise `false` / `None` / `Err(what was observed instead)`.
pub trait Probe {
    type Value;
    fn observed(self) -> Result<Self::Value, String>;
}

impl Probe for bool {
    type Value = ();
    fn observed(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    }
}

impl<T> Probe for Option<T> {
    type Value = T;
    fn observed(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet".to_owned())
    }
}

impl<T, E: Display> Probe for Result<T, E> {
    type Value = T;
    fn observed(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Calls `probe` every [`POLL_INTERVAL`] until its condition holds and returns the value; after
/// `timeout` the test panics naming `what` it waited for and the last observation.
/// (A probe that keeps state between calls, such as a connection, keeps it behind a
/// `tokio::sync::Mutex`: the future a probe returns cannot borrow the closure.)
pub async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    probe: F,
) -> <Fut::Output as Probe>::Value
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Probe,
{
    match poll_until(timeout, POLL_INTERVAL, probe).await {
        Ok(v) => v,
        Err(last) => {
            panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}")
        }
    }
}

/// Like [`wait_until`] with its own probe interval (for probes that are expensive, e.g. a
/// process spawn or a Docker call), returning the last observation instead of panicking.
pub async fn poll_until<F, Fut>(
    timeout: Duration,
    interval: Duration,
    mut probe: F,
) -> Result<<Fut::Output as Probe>::Value, String>
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Probe,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await.observed() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(interval).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_that_holds() {
        let mut n = 0;
        let v = wait_until("n to reach 3", Duration::from_secs(10), || {
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
        let mut m = 0;
        wait_until("m to reach 2", Duration::from_secs(10), || {
            m += 1;
            let cur = m;
            async move { cur >= 2 }
        })
        .await;
        assert_eq!(m, 2);
    }

    #[tokio::test]
    async fn gives_up_with_the_last_observation() {
        let r = poll_until(Duration::from_millis(60), POLL_INTERVAL, || async {
            Err::<(), _>("still no")
        })
        .await;
        assert_eq!(r, Err("still no".to_owned()));
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the impossible; last observation: not yet")]
    async fn the_panic_names_what_was_awaited() {
        wait_until("the impossible", Duration::from_millis(30), || async {
            false
        })
        .await;
    }
}
