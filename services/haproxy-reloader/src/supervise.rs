//! Keeps a task running through its panics: the per-HAProxy converge tasks must not stop
//! silently (that HAProxy would keep its routing until the reloader restarts), so a panic is
//! logged with its message, counted, and the task started again.

use std::any::Any;
use std::future::Future;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// Runs the task `start` makes, as a task of its own, until it returns or `cancel` fires. When
/// it panics: logs the panic message at error level, increments `panics`, waits `pause` (a
/// panic at every start must not spin) and starts a new one.
pub async fn supervise<F, Fut>(
    what: String,
    mut start: F,
    panics: Counter,
    pause: Duration,
    cancel: CancellationToken,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let joined = tokio::spawn(start()).await;
        let Err(e) = joined else {
            return;
        };
        if !e.is_panic() {
            // Aborted from outside: nobody wants it any more.
            return;
        }
        let why = panic_message(e.into_panic().as_ref());
        panics.inc();
        error!(task = %what, panic = %why, "task panicked; starting it again");
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// The message a panic carries (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn panic_messages_of_both_kinds() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&format!("boom {}", 2)), "boom 2");
        assert_eq!(panic_message(&3_u8), "(a panic without a message)");
    }

    #[tokio::test]
    async fn a_panicking_task_is_counted_and_started_again() {
        let starts = Arc::new(AtomicUsize::new(0));
        let panics = Counter::default();
        let cancel = CancellationToken::new();
        let (running_tx, mut running_rx) = tokio::sync::mpsc::unbounded_channel();
        let sup = {
            let starts = Arc::clone(&starts);
            let stop = cancel.clone();
            tokio::spawn(supervise(
                "test".to_owned(),
                move || {
                    let n = starts.fetch_add(1, Ordering::SeqCst) + 1;
                    let running = running_tx.clone();
                    let stop = stop.clone();
                    async move {
                        if n <= 2 {
                            panic!("converge {n} failed");
                        }
                        let _ = running.send(n);
                        stop.cancelled().await;
                    }
                },
                panics.clone(),
                Duration::from_millis(1),
                cancel.clone(),
            ))
        };
        // The third start is the first that does not panic: it runs.
        assert_eq!(running_rx.recv().await, Some(3));
        assert_eq!(panics.get(), 2);
        cancel.cancel();
        sup.await.unwrap();
        assert_eq!(
            starts.load(Ordering::SeqCst),
            3,
            "not started again after a clean end"
        );
    }

    #[tokio::test]
    async fn a_task_that_ends_is_not_started_again() {
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&starts);
        let panics = Counter::default();
        supervise(
            "test".to_owned(),
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async {}
            },
            panics.clone(),
            Duration::from_millis(1),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        assert_eq!(panics.get(), 0);
    }
}
