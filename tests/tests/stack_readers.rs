//! The read endpoint's membership on the real swarm stack (deploy/up.sh): HAProxy's read port
//! (base + 10, published like the master port) spreads reads over the replicas the
//! coordinator names as readers; a paused replica container (`docker pause`) is taken out
//! and put back once unpaused; with both replicas paused the master serves reads (and the
//! master port is closed: HAProxy's majority guard). The
//! process-level version, with the lag cases and the coordinator's loss, is
//! tests/tests/readers.rs.
//!
//! Docker is required, so the test is `#[ignore]`d like tests/tests/stack.rs: tests/run.sh runs
//! it (`--run-ignored ignored-only`), in the nextest group `stack` (one stack test at a time).
//! The stack is removed at the end, also when a check fails.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use redis_ha_chaos::chaos::docker::ChaosAction;
use redis_ha_tests::kit::client;
use redis_ha_tests::stack::{poll, refuse_skip_under_ci, remove, repo_root, Stack, StackOptions};

/// Generous: a swarm task, an agent's poll timeout and the coordinator's derivation on a
/// loaded 2-core host.
const T: Duration = Duration::from_secs(120);
/// Fresh connections per look at where reads go: enough for HAProxy's leastconn (round robin
/// among idle servers) to reach every ready one.
const PROBES: usize = 12;
const NAME: &str = "redis-ha-rd";

/// The nodes [`PROBES`] fresh connections through the read port reach.
async fn read_nodes(stack: &Stack) -> BTreeSet<u8> {
    let mut seen = BTreeSet::new();
    for _ in 0..PROBES {
        // A probe that reaches nothing (a session cut as a server leaves) counts for none.
        if let Some(n) = stack.read_routed_node().await {
            seen.insert(n);
        }
    }
    seen
}

/// Waits until `redis-ha status` names exactly `readers` (empty: the master serves reads) and
/// fresh connections through the read port reach exactly `serving`, each of them.
async fn wait_reads(stack: &Stack, readers: &[u8], serving: &[u8]) {
    let mut want_readers = readers.to_vec();
    want_readers.sort_unstable();
    let want: BTreeSet<u8> = serving.iter().copied().collect();
    poll(T, || async {
        let mut r = stack.status_readers().await?;
        r.sort_unstable();
        if r != want_readers {
            return Err(format!(
                "status readers {r:?}, waiting for {want_readers:?}"
            ));
        }
        match read_nodes(stack).await {
            seen if seen == want => Ok(()),
            seen => Err(format!("reads reached {seen:?}, waiting for {want:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("readers {readers:?}, reads on {serving:?}: {e}"));
}

/// ROLE's first word through the read port.
async fn read_role(stack: &Stack) -> String {
    client::role(stack.read_port(), Some(stack.password()))
        .await
        .unwrap_or_else(|e| panic!("ROLE through the read port: {e}"))
}

async fn scenario(stack: Arc<Stack>) {
    let m = stack.wait_at_rest(T).await.expect("the stack at rest");
    let replicas: Vec<u8> = (1..=3).filter(|&n| n != m).collect();
    let (a, b) = (replicas[0], replicas[1]);
    eprintln!("master redis-{m}, replicas redis-{a} and redis-{b}");

    // At rest: both replicas serve reads, each is reached, the master is not.
    wait_reads(&stack, &[a, b], &[a, b]).await;
    assert_eq!(read_role(&stack).await, "slave");
    let j = stack.status_json().await.expect("status");
    for n in j["nodes"].as_array().expect("nodes") {
        let is_master = n["is_master"] == serde_json::Value::Bool(true);
        assert_eq!(
            n["serves_reads"],
            serde_json::Value::Bool(!is_master),
            "{n}"
        );
    }
    // A write through the master port is read back through the read port; a write sent to
    // the read port is refused (a replica).
    stack
        .write("readers:key", "replicated")
        .await
        .expect("SET through the master port");
    let read_port = stack.read_port();
    poll(T, || async {
        let v: Option<String> = client::query(
            read_port,
            Some(stack.password()),
            redis::cmd("GET").arg("readers:key"),
        )
        .await
        .map_err(|e| e.to_string())?;
        match v.as_deref() {
            Some("replicated") => Ok(()),
            other => Err(format!("GET through the read port: {other:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the write readable through the read port: {e}"));
    let refused = client::query::<()>(
        read_port,
        Some(stack.password()),
        redis::cmd("SET").arg("readers:key").arg("nope"),
    )
    .await
    .expect_err("a replica took a write through the read port");
    assert_eq!(refused.code(), Some("READONLY"), "{refused}");

    // One replica's container paused: out of the readers, reads only on the other.
    stack.chaos(ChaosAction::Pause, b).await.expect("pause");
    wait_reads(&stack, &[a], &[a]).await;
    let j = stack.status_json().await.expect("status");
    let paused = j["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"] == format!("node-{b}"))
        .unwrap_or_else(|| panic!("no node-{b} in {j}"))
        .clone();
    assert_eq!(
        paused["serves_reads"],
        serde_json::Value::Bool(false),
        "{paused}"
    );
    assert!(paused["read_note"].is_string(), "says why: {paused}");
    // Unpaused: back.
    stack.chaos(ChaosAction::Unpause, b).await.expect("unpause");
    wait_reads(&stack, &[a, b], &[a, b]).await;

    // Both paused: no reader, the master serves reads (and stays the master).
    stack.chaos(ChaosAction::Pause, a).await.expect("pause");
    stack.chaos(ChaosAction::Pause, b).await.expect("pause");
    wait_reads(&stack, &[], &[m]).await;
    assert_eq!(read_role(&stack).await, "master");
    assert_eq!(
        stack
            .sentinel_master()
            .await
            .expect("the Sentinels' master"),
        m,
        "no failover for paused replicas"
    );
    // The master port is closed: HAProxy's majority guard sees one Redis node of three (it
    // cannot tell two paused nodes from a cut that isolated it) and refuses connections; the
    // master would refuse writes anyway (min-replicas-to-write 1). Reads go to the read port.
    poll(T, || async {
        match client::routed_port(stack.proxy_port(), Some(stack.password())).await {
            None => Ok(()),
            Some(p) => Err(format!("the master port still routes to {p}")),
        }
    })
    .await
    .expect("the master port closed by the majority guard");
    // Both back: the replicas serve again, the master leaves the read backend.
    stack.chaos(ChaosAction::Unpause, a).await.expect("unpause");
    stack.chaos(ChaosAction::Unpause, b).await.expect("unpause");
    wait_reads(&stack, &[a, b], &[a, b]).await;
    assert_eq!(
        stack.wait_at_rest(T).await.expect("at rest"),
        m,
        "the master never moved"
    );
    poll(T, || async {
        match client::routed_port(stack.proxy_port(), Some(stack.password())).await {
            Some(p) if p == 9000 + u16::from(m) => Ok(()),
            other => Err(format!("the master port routes to {other:?}")),
        }
    })
    .await
    .expect("the master port open again on the master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker: tests/run.sh runs it (--run-ignored ignored-only)"]
async fn stack_read_endpoint_follows_paused_replicas_and_falls_back_to_the_master() {
    refuse_skip_under_ci();
    let stack = Arc::new(
        Stack::deploy(StackOptions {
            name: NAME.into(),
            base_port: 9800,
            grpc_port: 9850,
            // The shipped down-after: paused replicas must not look like anything else.
            down_after_ms: 5000,
            node_ports: true,
            ..StackOptions::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}")),
    );
    // The scenario in a task of its own, so that a failed check still gets the teardown.
    let outcome = tokio::spawn(scenario(stack.clone())).await;
    if outcome.is_err() {
        // Paused containers would hold the removal up.
        for n in 1..=3 {
            let _ = stack.chaos(ChaosAction::Unpause, n).await;
        }
    }
    let removed = remove(&repo_root(), NAME).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
    removed.unwrap_or_else(|e| panic!("{e}"));
}
