//! Stack tests: the real swarm stack (deploy/up.sh), faulted through the Docker API.
//!
//! One deploy serves every scenario, in order: kill the master, pause it, isolate it, then tear
//! down. Run serially (nextest group `stack` in .config/nextest.toml). Docker is required; a
//! developer without it sets REDIS_HA_SKIP_STACK_TESTS=1.

use std::time::Duration;

use redis_ha_chaos::chaos::docker::ChaosAction;
use redis_ha_tests::stack::{poll, skip_requested, Stack, StackOptions, SKIP_ENV};

const T: Duration = Duration::from_secs(90);

async fn wait_failover_from(stack: &Stack, old: u8) -> u8 {
    let new = poll(T, || async {
        let m = stack.sentinel_master().await?;
        if m == old {
            Err(format!("sentinels still name redis-{old}"))
        } else {
            Ok(m)
        }
    })
    .await
    .expect("failover");
    let mut i = 0u32;
    poll(T, || {
        i += 1;
        let key = format!("resume:{old}:{i}");
        async move { stack.write(&key, "x").await }
    })
    .await
    .expect("writes through HAProxy resume after the failover");
    new
}

async fn wait_replica(stack: &Stack, n: u8) {
    poll(T, || async {
        match stack.role(n).await?.as_str() {
            "slave" => Ok(()),
            r => Err(format!("redis-{n} is {r}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("redis-{n} rejoins as a replica: {e}"));
}

async fn wait_new_task(stack: &Stack, n: u8, old_container: &str) {
    poll(T, || async {
        let c = stack.running_container(n).await?;
        if c == old_container {
            Err("the old container still runs".to_owned())
        } else {
            Ok(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the swarm restarts redis-{n}'s task: {e}"));
}

/// Writes probes through HAProxy for a while (until `node` is a replica, at most `T`) and
/// checks that none reaches `node` while it still calls itself master.
async fn assert_no_writes_on(stack: &Stack, node: u8, until_replica: bool, rounds: u32) {
    let mut i = 0u32;
    loop {
        i += 1;
        let key = format!("probe:{node}:{i}:{}", rand_suffix());
        stack
            .write(&key, "p")
            .await
            .expect("a write through HAProxy");
        let role = stack
            .role(node)
            .await
            .unwrap_or_else(|e| format!("? ({e})"));
        if role == "master" {
            let got = stack.read_node(node, &key).await.unwrap_or(None);
            assert_eq!(
                got, None,
                "redis-{node} (not the Sentinels' master) received the write {key}: split brain"
            );
        } else if until_replica && role == "slave" {
            return;
        }
        if !until_replica && i >= rounds {
            return;
        }
        assert!(i < 400, "redis-{node} never became a replica (role {role})");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_survives_kill_pause_isolate_and_tears_down() {
    if skip_requested() {
        eprintln!("{SKIP_ENV}=1: stack tests skipped");
        return;
    }
    let t0 = std::time::Instant::now();
    let stack = Stack::deploy(StackOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("[{:?}] deployed", t0.elapsed());

    // ---- kill the master container: failover, the swarm restarts the task as a replica.
    let m = stack.agreed_master(T).await.expect("an agreed master");
    stack.write("before-kill", "1").await.expect("write");
    let old = stack.running_container(m).await.expect("master container");
    stack.chaos(ChaosAction::Kill, m).await.expect("kill");
    let new = wait_failover_from(&stack, m).await;
    wait_new_task(&stack, m, &old).await;
    wait_replica(&stack, m).await;
    assert_eq!(stack.agreed_master(T).await.expect("agreement"), new);
    assert_eq!(
        stack.read_node(new, "before-kill").await.expect("read"),
        Some("1".to_owned())
    );
    eprintln!(
        "[{:?}] kill: redis-{m} -> redis-{new}, redis-{m} back as replica",
        t0.elapsed()
    );

    // ---- pause the master: failover; unpaused, it rejoins as a replica and gets no writes.
    let m = new;
    stack.chaos(ChaosAction::Pause, m).await.expect("pause");
    let new = wait_failover_from(&stack, m).await;
    stack.chaos(ChaosAction::Unpause, m).await.expect("unpause");
    assert_no_writes_on(&stack, m, true, 0).await;
    assert_eq!(stack.agreed_master(T).await.expect("agreement"), new);
    eprintln!(
        "[{:?}] pause: redis-{m} -> redis-{new}, redis-{m} back as replica",
        t0.elapsed()
    );

    // ---- isolate the master: failover; the isolated node (still master in its own eyes,
    // reachable on its published port) never receives a write; heal replaces its task.
    let m = new;
    let old = stack.running_container(m).await.expect("master container");
    stack.chaos(ChaosAction::Isolate, m).await.expect("isolate");
    let new = wait_failover_from(&stack, m).await;
    assert_eq!(stack.agreed_master(T).await.expect("agreement"), new);
    assert_no_writes_on(&stack, m, false, 20).await;
    stack.chaos(ChaosAction::Heal, m).await.expect("heal");
    wait_new_task(&stack, m, &old).await;
    wait_replica(&stack, m).await;
    assert_eq!(stack.agreed_master(T).await.expect("agreement"), new);
    eprintln!(
        "[{:?}] isolate: redis-{m} -> redis-{new}, healed",
        t0.elapsed()
    );

    // ---- teardown leaves nothing of the stack behind.
    stack.teardown().await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("[{:?}] torn down", t0.elapsed());
}
