//! Stack test of the rolling upgrade (README "Upgrade"): `deploy/up.sh` on a running stack whose
//! Redis and Sentinel images changed (a real change: new images built `FROM` the running ones
//! with a label, given the way an operator would, `--image`) and a setting (`--maxmemory`)
//! replaces one node at a time while
//! a client writes through HAProxy as fast as acknowledgements come: the replicas first, the
//! master last after a switchover, the Sentinels one at a time; nothing acknowledged is lost.
//! `--dry-run` first: it prints the plan and changes nothing; the clients see one outage at
//! most (the switchover's). Docker is required, so the test
//! is `#[ignore]`d; tests/run.sh runs it with the stack tests (`--run-ignored ignored-only`).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use redis_ha_tests::stack::{
    docker, missing_keys, poll, refuse_skip_under_ci, Stack, StackOptions,
};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const T: Duration = Duration::from_secs(120);

/// `docker build` of `FROM base` + a label: a new image id, everything else the same.
async fn variant(base: &str, tag: &str) -> String {
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker build");
    let dockerfile = format!("FROM {base}\nLABEL redis-ha.upgrade-test=\"{tag}\"\n");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(dockerfile.as_bytes())
        .await
        .expect("write the Dockerfile");
    drop(stdin);
    let out = child.wait_with_output().await.expect("docker build");
    assert!(
        out.status.success(),
        "docker build {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", tag])
        .await
        .expect("inspect the variant");
    let base_id = docker(&["image", "inspect", "-f", "{{.Id}}", base])
        .await
        .expect("inspect the base");
    assert_ne!(id, base_id, "the variant {tag} is a new image");
    tag.to_owned()
}

/// The running task of `service` (short name): (id, image, created at in ms since the epoch).
async fn running_task(stack: &str, service: &str) -> Result<(String, String, i64), String> {
    let name = format!("{stack}_{service}");
    let ids = docker(&[
        "service",
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        "desired-state=running",
        &name,
    ])
    .await?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let [id] = ids[..] else {
        return Err(format!("{name}: {} running tasks", ids.len()));
    };
    let out = docker(&[
        "inspect",
        "--type",
        "task",
        "-f",
        "{{.Spec.ContainerSpec.Image}} {{.CreatedAt.UnixNano}} {{.Status.State}}",
        id,
    ])
    .await?;
    let w: Vec<&str> = out.split_whitespace().collect();
    let [image, created, state] = w[..] else {
        return Err(format!("{name}: odd task {out:?}"));
    };
    if state != "running" {
        return Err(format!("{name}: task {id} is {state}"));
    }
    let ns: i64 = created.parse().map_err(|e| format!("{created}: {e}"))?;
    Ok((id.to_owned(), image.to_owned(), ns / 1_000_000))
}

const NODE_SERVICES: [&str; 6] = [
    "redis-1",
    "redis-2",
    "redis-3",
    "sentinel-1",
    "sentinel-2",
    "sentinel-3",
];

/// Every service's running task ids (the whole stack).
async fn all_task_ids(stack: &str) -> BTreeMap<String, String> {
    let label = format!("label=com.docker.stack.namespace={stack}");
    let services = docker(&["service", "ls", "--filter", &label, "--format", "{{.Name}}"])
        .await
        .expect("service ls");
    let mut out = BTreeMap::new();
    for s in services.split_whitespace() {
        let ids = docker(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            s,
        ])
        .await
        .expect("service ps");
        let mut ids: Vec<&str> = ids.split_whitespace().collect();
        ids.sort_unstable();
        out.insert(s.to_owned(), ids.join(","));
    }
    out
}

/// The `step ...` lines up.sh logged as started, in order: ("redis 2", ...).
fn steps_started(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("upgrade [")?;
            let (_, rest) = rest.split_once("] step ")?;
            let rest = rest.strip_suffix(": start")?;
            // "3/9 (redis 2)"
            let (_, what) = rest.split_once(" (")?;
            Some(what.trim_end_matches(')').to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Docker: tests/run.sh runs it (--run-ignored ignored-only)"]
async fn a_new_image_rolls_one_node_at_a_time_and_loses_no_acknowledged_write() {
    refuse_skip_under_ci();
    let t0 = std::time::Instant::now();
    let stack = Stack::deploy(StackOptions {
        name: "redis-ha-upg".into(),
        base_port: 9500,
        grpc_port: 9550,
        ..StackOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let name = stack.opts.name.clone();
    eprintln!("[{:?}] deployed", t0.elapsed());
    let m = stack.agreed_master(T).await.expect("an agreed master");

    // ---- the change: new Redis and Sentinel images (same content, a label more).
    let redis_base = stack
        .image("REDIS_HA_IMAGE_REDIS")
        .expect("the Redis image");
    let sentinel_base = stack
        .image("REDIS_HA_IMAGE_SENTINEL")
        .expect("the Sentinel image");
    let stamp = std::process::id();
    let new_redis = variant(&redis_base, &format!("redis-ha/redis:upgrade-test-{stamp}")).await;
    let new_sentinel = variant(
        &sentinel_base,
        &format!("redis-ha/sentinel:upgrade-test-{stamp}"),
    )
    .await;
    // And a setting (an env file per node): each Redis's maxmemory, held like its image.
    let old_maxmemory = stack.config_get(1, "maxmemory").await.expect("maxmemory");
    let images = vec![
        "--image".to_owned(),
        format!("redis={new_redis}"),
        "--image".to_owned(),
        format!("sentinel={new_sentinel}"),
        "--maxmemory".to_owned(),
        "300mb".to_owned(),
    ];

    // ---- --dry-run: the plan, and nothing changes.
    let before = all_task_ids(&name).await;
    let mut dry = images.clone();
    dry.push("--dry-run".to_owned());
    let plan = stack.up_again(&dry).await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{plan}");
    assert!(plan.contains(&format!("master {m}")), "{plan}");
    for s in NODE_SERVICES {
        let what = if s.starts_with("redis") {
            "image,settings"
        } else {
            "image"
        };
        assert!(
            plan.contains(&format!("change {s} {what}\n")),
            "{s}: {plan}"
        );
    }
    let to = (1..=3u8).find(|&n| n != m).expect("a replica");
    assert!(
        plan.contains(&format!("step switchover {m} {to}")),
        "the plan switches over from node-{m} to node-{to}: {plan}"
    );
    assert!(plan.contains("dry run: nothing deployed"), "{plan}");
    assert_eq!(
        all_task_ids(&name).await,
        before,
        "--dry-run changed no task"
    );

    // ---- the upgrade, under a writer at full speed through HAProxy.
    let writer = stack
        .writing("upgrade", Duration::ZERO, 200)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let log = stack
        .up_again(&images)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{log}");
    eprintln!("[{:?}] upgraded", t0.elapsed());
    // A last few writes on the final topology.
    let upgraded = std::time::Instant::now();
    poll(T, || async {
        match writer.count(|r| r.acked && r.started > upgraded) {
            n if n >= 100 => Ok(()),
            n => Err(format!("{n} acknowledged since the upgrade")),
        }
    })
    .await
    .expect("writes after the upgrade");
    let records = writer.finish().await;

    // ---- the order, from up.sh's step log.
    let steps = steps_started(&log);
    let replicas: Vec<u8> = (1..=3u8).filter(|&n| n != m).collect();
    let mut want = vec!["others".to_owned()];
    want.extend(replicas.iter().map(|n| format!("redis {n}")));
    want.extend((1..=3).map(|n| format!("sentinel {n}")));
    want.push(format!("switchover {m} {to}"));
    want.push(format!("redis {m}"));
    want.push("final".to_owned());
    assert_eq!(steps, want, "the steps up.sh carried out:\n{log}");
    for (i, s) in steps.iter().enumerate() {
        let done = format!("step {}/{} ({s}): done", i + 1, steps.len());
        assert!(log.contains(&done), "{done:?} is logged:\n{log}");
    }

    // ---- the order, from the swarm: every node service runs the new image; the replicas'
    // new Redis tasks were created before the master's, which was created after the
    // coordinator saw the master move to node-{to}; the Sentinels' one after another.
    let mut created = BTreeMap::new();
    for s in NODE_SERVICES {
        let (id, image, at) = poll(T, || running_task(&name, s))
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        let want = if s.starts_with("redis") {
            &new_redis
        } else {
            &new_sentinel
        };
        assert_eq!(&image, want, "{s} runs the new image (task {id})");
        created.insert(s, at);
    }
    for n in 1..=3u8 {
        let now = stack.config_get(n, "maxmemory").await.expect("maxmemory");
        assert_eq!(
            now, "314572800",
            "redis-{n}'s maxmemory is --maxmemory 300mb (it was {old_maxmemory})"
        );
    }
    let master_task = created[format!("redis-{m}").as_str()];
    for n in &replicas {
        let at = created[format!("redis-{n}").as_str()];
        assert!(
            at < master_task,
            "redis-{n} (a replica) was replaced before redis-{m} (the master): {at} vs {master_task}"
        );
    }
    let sentinels = [
        created["sentinel-1"],
        created["sentinel-2"],
        created["sentinel-3"],
    ];
    assert!(
        sentinels[0] < sentinels[1] && sentinels[1] < sentinels[2],
        "the Sentinels were replaced one after another: {sentinels:?}"
    );
    let events = stack.events_json().await.expect("events");
    let switched = events
        .iter()
        .filter(|e| e["kind"] == "master-changed" && e["node"] == format!("node-{to}").as_str())
        .filter_map(|e| e["at_ms"].as_i64())
        .next_back()
        .unwrap_or_else(|| panic!("no master-changed to node-{to} in {events:?}"));
    assert!(
        switched < master_task,
        "the master moved to node-{to} ({switched}) before redis-{m}'s new task ({master_task})"
    );

    // ---- the end state: a confirmed master (node-{to}) and two linked replicas.
    let status = poll(T, || async {
        let j = stack.status_json().await?;
        let s = &j["summary"];
        if s["master_confirmed"] == true && s["replicas_link_up"] == 2 {
            Ok(j)
        } else {
            Err(format!("summary {s}"))
        }
    })
    .await
    .expect("a confirmed master with two linked replicas");
    assert_eq!(
        status["master"]["node"],
        format!("node-{to}").as_str(),
        "{status}"
    );

    // ---- nothing acknowledged lost; at most one error per connection (the cut at the
    // switchover, then the reconnect works).
    let acked: Vec<String> = records
        .iter()
        .filter(|r| r.acked)
        .map(|r| r.key.clone())
        .collect();
    let lost = missing_keys(stack.redis_port(to), stack.password(), &acked)
        .await
        .expect("MGET on the new master");
    let errors: Vec<&str> = records
        .iter()
        .filter(|r| !r.acked)
        .map(|r| r.error.as_deref().unwrap_or("?"))
        .collect();
    let longest_pause = records
        .windows(2)
        .map(|w| w[1].finished.saturating_duration_since(w[0].finished))
        .max()
        .unwrap_or_default();
    eprintln!(
        "[{:?}] {} writes acknowledged during the upgrade, {} lost, {} client errors {errors:?}, \
         longest gap between two answers {longest_pause:?}",
        t0.elapsed(),
        acked.len(),
        lost.len(),
        errors.len()
    );
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes are not on the final master node-{to} (first: {:?})",
        lost.len(),
        acked.len(),
        lost.first()
    );
    // Each error ends its connection (the writer reconnects after any failure), so no
    // connection sees two. What matters is how many outages the clients saw: the errors in a
    // row without an acknowledged write between them are one (a reconnect that meets HAProxy
    // between the old master's `maint` and the new one's `ready` fails at once, and a writer
    // reconnecting without delay may meet that window more than once). The one switchover may
    // cost one outage; replacing replicas and Sentinels none.
    let mut outages: Vec<Vec<(i64, &str)>> = Vec::new();
    let mut in_outage = false;
    for r in &records {
        if r.acked {
            in_outage = false;
            continue;
        }
        if !in_outage {
            outages.push(Vec::new());
            in_outage = true;
        }
        if let Some(o) = outages.last_mut() {
            o.push((r.finished_wall_ms, r.error.as_deref().unwrap_or("?")));
        }
    }
    for o in &outages {
        let first = o.first().map_or(0, |e| e.0);
        let shown: Vec<String> = o
            .iter()
            .map(|(at, e)| format!("+{} ms {e}", at - first))
            .collect();
        eprintln!("outage of {} failed write(s): {shown:?}", o.len());
    }
    assert!(
        outages.len() <= 1,
        "{} client outages during the upgrade (one switchover): {outages:?}",
        outages.len()
    );

    stack.teardown().await.unwrap_or_else(|e| panic!("{e}"));
    for img in [&new_redis, &new_sentinel] {
        let _ = docker(&["image", "rm", img.as_str()]).await;
    }
}

#[test]
fn the_step_log_is_read_in_order() {
    let log = "upgrade [  12 s] step 1/3 (others): start\n\
               upgrade [  20 s] step 1/3 (others): done\n  \
               upgrade [  21 s] step 2/3 (switchover 1 2): start\n\
               upgrade [  30 s] step 3/3 (final): start\n";
    assert_eq!(
        steps_started(log),
        vec!["others", "switchover 1 2", "final"]
    );
}
