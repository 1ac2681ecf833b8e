//! Observability across the sidecars, with the real binaries (one process each: the
//! OpenTelemetry provider is process-global) and the real protocols: an OTLP/gRPC receiver
//! inside the test gets the spans, `/metrics` is scraped over HTTP, stderr is read as written.
//!
//! - A failover is ONE trace: agent `sentinel_event` → agent `report` → coordinator `Report` →
//!   coordinator `publish_topology` (topology version N) → reloader `apply_topology` →
//!   runtime API commands and read-backs; the log lines inside carry the same trace id.
//! - Every sidecar's `/metrics` shows the failover (and HAProxy's own exporter answers).
//! - No password in the agent's debug log nor in its spans; no exporter, no complaint.

use std::collections::BTreeMap;

use redis_ha_proto::v1::{Health, Topology};
use redis_ha_tests::binaries::{
    parse_exposition, scrape, values, wait_scrape, Sample, SidecarEnv, SidecarProcess,
};
use redis_ha_tests::haproxy::STATS_OFFSET;
use redis_ha_tests::otlp::{OtlpReceiver, ReceivedSpan};
use redis_ha_tests::{wait_until, Cluster, ClusterOptions, NODES, READY_TIMEOUT};

const AGENT: &str = "redis-ha-agent";
const COORDINATOR: &str = "redis-ha-coordinator";
const RELOADER: &str = "redis-ha-reloader";

/// The failover's causal chain, from the reloader's apply back to the Sentinel event.
#[derive(Debug)]
struct Chain {
    failover: Option<ReceivedSpan>,
    event: ReceivedSpan,
    agent_report: ReceivedSpan,
    report_rpc: ReceivedSpan,
    publish: ReceivedSpan,
    apply: ReceivedSpan,
    commands: Vec<ReceivedSpan>,
    read_backs: Vec<ReceivedSpan>,
}

fn attr<'a>(s: &'a ReceivedSpan, key: &str) -> &'a str {
    s.attributes.get(key).map(String::as_str).unwrap_or("")
}

/// The parent of `child` among `spans`, checked to be `name` of `service` in the same trace.
fn parent_of<'a>(
    spans: &'a [ReceivedSpan],
    child: &ReceivedSpan,
    service: &str,
    name: &str,
) -> Result<&'a ReceivedSpan, String> {
    if child.parent_span_id.is_empty() {
        return Err(format!(
            "{}/{} is a root span, expected a child of {service}/{name}",
            child.service, child.name
        ));
    }
    let p = spans
        .iter()
        .find(|s| s.span_id == child.parent_span_id)
        .ok_or_else(|| {
            format!(
                "the parent {} of {}/{} has not arrived",
                child.parent_span_id, child.service, child.name
            )
        })?;
    if p.service != service || p.name != name || p.trace_id != child.trace_id {
        return Err(format!(
            "{}/{} has parent {}/{} (trace {}), expected {service}/{name} in trace {}",
            child.service, child.name, p.service, p.name, p.trace_id, child.trace_id
        ));
    }
    Ok(p)
}

/// Finds the chain behind the reloader's switch to `new_master`.
fn failover_chain(spans: &[ReceivedSpan], new_master: &str) -> Result<Chain, String> {
    let applies: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| {
            s.service == RELOADER
                && s.name == "apply_topology"
                && attr(s, "master") == new_master
                && attr(s, "resync") == "false"
        })
        .collect();
    if applies.is_empty() {
        return Err(format!(
            "no reloader apply_topology for {new_master} yet ({} spans received)",
            spans.len()
        ));
    }
    let mut why = Vec::new();
    for apply in applies {
        let chain = (|| {
            let publish = parent_of(spans, apply, COORDINATOR, "publish_topology")?;
            // The switch itself: a later version with the same master (a reader or a replica
            // changed) is applied too, and may have a chain of its own.
            if attr(publish, "old_master") == attr(publish, "master") {
                return Err(format!(
                    "publish_topology v{} keeps the master",
                    attr(publish, "version")
                ));
            }
            let report_rpc = parent_of(spans, publish, COORDINATOR, "Report")?;
            let agent_report = parent_of(spans, report_rpc, AGENT, "report")?;
            let event = parent_of(spans, agent_report, AGENT, "sentinel_event")?;
            // An event during a failover belongs to the agent's `failover` span, the root.
            let failover = if event.parent_span_id.is_empty() {
                None
            } else {
                let f = parent_of(spans, event, AGENT, "failover")?;
                if !f.parent_span_id.is_empty() {
                    return Err(format!("the failover span has a parent: {f:?}"));
                }
                Some(f.clone())
            };
            let below = |name: &str| -> Vec<ReceivedSpan> {
                spans
                    .iter()
                    .filter(|s| {
                        s.service == RELOADER
                            && s.name == name
                            && s.parent_span_id == apply.span_id
                            && s.trace_id == apply.trace_id
                    })
                    .cloned()
                    .collect()
            };
            let commands = below("runtime_command");
            let read_backs = below("read_back");
            if commands.is_empty() || read_backs.len() < 2 {
                return Err(format!(
                    "apply_topology has {} runtime_command and {} read_back children so far",
                    commands.len(),
                    read_backs.len()
                ));
            }
            Ok(Chain {
                failover,
                event: event.clone(),
                agent_report: agent_report.clone(),
                report_rpc: report_rpc.clone(),
                publish: publish.clone(),
                apply: apply.clone(),
                commands,
                read_backs,
            })
        })();
        match chain {
            Ok(c) => return Ok(c),
            Err(e) => why.push(e),
        }
    }
    Err(why.join("; "))
}

/// Scrapes `port` until `check` accepts the samples.
async fn wait_metrics<F>(what: &str, port: u16, check: F) -> Vec<Sample>
where
    F: Fn(&[Sample]) -> Result<(), String>,
{
    let check = &check;
    wait_until(what, READY_TIMEOUT, || async move {
        let text = scrape(port).await?;
        let samples = parse_exposition(&text);
        check(&samples).map_err(|e| format!("{e}\n{text}"))?;
        Ok::<_, String>(samples)
    })
    .await
}

/// The sum of the matching samples, or an error naming the series.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Result<f64, String> {
    let v = values(samples, name, labels);
    if v.is_empty() {
        return Err(format!("no series {name}{labels:?}"));
    }
    Ok(v.iter().sum())
}

fn at_least(
    samples: &[Sample],
    name: &str,
    labels: &[(&str, &str)],
    min: f64,
) -> Result<(), String> {
    let v = sum(samples, name, labels)?;
    if v >= min {
        Ok(())
    } else {
        Err(format!("{name}{labels:?} = {v}, expected >= {min}"))
    }
}

fn equals(
    samples: &[Sample],
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
) -> Result<(), String> {
    let v = sum(samples, name, labels)?;
    if v == want {
        Ok(())
    } else {
        Err(format!("{name}{labels:?} = {v}, expected {want}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_is_one_trace_and_shows_in_every_sidecars_metrics() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let mut cluster = Cluster::start(ClusterOptions::default()).await;
    let group = cluster.group().to_owned();
    let haproxy = cluster.start_haproxy().await;
    let env = SidecarEnv::exporting_to(otlp.endpoint());
    let mut coordinator = cluster
        .start_coordinator_binary(&SidecarEnv {
            json_logs: true,
            ..env.clone()
        })
        .await;
    let mut agents: Vec<SidecarProcess> = (1..=NODES)
        .map(|i| cluster.start_agent_binary(i, &env))
        .collect();
    // Coordinator only: every switch then comes from a topology, so it is part of the trace.
    let mut reloader = cluster.start_reloader_binary(&haproxy, false, &env);
    cluster.wait_steady_topology(1).await;
    haproxy.wait_routed_to(cluster.node(1).port()).await;

    let old_master = cluster.node(1).addr();
    cluster.node_mut(1).kill();
    let new_master = cluster.wait_new_master(&old_master).await;
    let m = cluster.node_index(&new_master).unwrap();
    haproxy.wait_routed_to(cluster.node(m).port()).await;

    // ---- traces: one trace from the Sentinel event to HAProxy's read-back.
    let chain = wait_until(
        &format!("the spans of the switch to {new_master} from the three services"),
        READY_TIMEOUT,
        || {
            let spans = otlp.spans();
            let new_master = new_master.clone();
            async move { failover_chain(&spans, &new_master) }
        },
    )
    .await;
    let trace = chain.apply.trace_id.clone();
    assert_eq!(trace.len(), 32, "{chain:?}");
    for s in [
        &chain.event,
        &chain.agent_report,
        &chain.report_rpc,
        &chain.publish,
        &chain.apply,
    ] {
        assert_eq!(s.trace_id, trace, "{chain:#?}");
    }
    if let Some(f) = &chain.failover {
        assert_eq!(f.trace_id, trace);
        assert_eq!(attr(f, "group"), group);
        assert_eq!(attr(f, "node"), attr(&chain.agent_report, "node"));
    }
    assert!(
        chain.event.attributes["kind"].starts_with(['+', '-']),
        "{:?}",
        chain.event
    );
    assert_eq!(attr(&chain.event, "group"), group);
    assert_eq!(attr(&chain.agent_report, "group"), group);
    assert_eq!(attr(&chain.report_rpc, "group"), group);
    // The coordinator's decision: version N, the old and the new master, the epoch.
    let version = attr(&chain.publish, "version").to_owned();
    assert!(version.parse::<u64>().unwrap() > 0, "{:?}", chain.publish);
    assert_eq!(attr(&chain.publish, "group"), group);
    assert_eq!(attr(&chain.publish, "master"), new_master);
    assert_eq!(attr(&chain.publish, "old_master"), old_master);
    let epoch = attr(&chain.publish, "epoch").to_owned();
    assert!(epoch.parse::<u64>().unwrap() >= 1, "{:?}", chain.publish);
    // The reloader applied that very version, from the old master to the new one.
    assert_eq!(attr(&chain.apply, "version"), version);
    assert_eq!(attr(&chain.apply, "epoch"), epoch);
    assert_eq!(attr(&chain.apply, "group"), group);
    assert_eq!(attr(&chain.apply, "old_master"), old_master);
    let new_server = format!("redis-{m}");
    assert!(
        chain
            .commands
            .iter()
            .any(|c| attr(c, "command").contains(&format!("{new_server} state ready"))),
        "no runtime command readied {new_server}: {:?}",
        chain.commands
    );
    let phases: Vec<&str> = chain.read_backs.iter().map(|s| attr(s, "phase")).collect();
    assert!(
        phases.contains(&"before") && phases.contains(&"after"),
        "{phases:?}"
    );

    // ---- metrics of every sidecar after the failover.
    let node_m = format!("node-{m}");
    wait_metrics(
        "the reloader's switch metrics",
        cluster.reloader_metrics_port(),
        |s| {
            at_least(s, "redis_ha_reloader_master_switches_total", &[], 1.0)?;
            at_least(s, "redis_ha_reloader_switch_lag_seconds_count", &[], 1.0)?;
            // Initial routing + the switch.
            at_least(
                s,
                "redis_ha_reloader_runtime_commands_total",
                &[("command", "ready")],
                2.0,
            )?;
            at_least(
                s,
                "redis_ha_reloader_runtime_commands_total",
                &[("command", "maint")],
                1.0,
            )?;
            at_least(
                s,
                "redis_ha_reloader_runtime_commands_total",
                &[("command", "read_back")],
                2.0,
            )?;
            at_least(
                s,
                "redis_ha_reloader_topology_version",
                &[],
                version.parse().unwrap(),
            )?;
            at_least(s, "redis_ha_reloader_config_epoch", &[], 1.0)?;
            at_least(
                s,
                "redis_ha_reloader_decisions_total",
                &[("source", "coordinator")],
                2.0,
            )?;
            equals(s, "redis_ha_reloader_coordinator_connected", &[], 1.0)?;
            at_least(
                s,
                "redis_ha_reloader_grpc_requests_total",
                &[("method", "WatchTopology"), ("code", "OK")],
                1.0,
            )?;
            equals(s, "redis_ha_reloader_haproxy_converged", &[], 1.0)?;
            Ok(())
        },
    )
    .await;
    wait_metrics(
        "the coordinator's failover metrics",
        cluster.coordinator_metrics_port(),
        |s| {
            let g = [("group", group.as_str())];
            at_least(s, "redis_ha_coordinator_failovers_total", &g, 1.0)?;
            at_least(s, "redis_ha_coordinator_switch_lag_seconds_count", &g, 1.0)?;
            at_least(
                s,
                "redis_ha_coordinator_topology_version",
                &g,
                version.parse().unwrap(),
            )?;
            at_least(s, "redis_ha_coordinator_config_epoch", &g, 1.0)?;
            at_least(
                s,
                "redis_ha_coordinator_grpc_requests_total",
                &[("method", "Report"), ("code", "OK")],
                3.0,
            )?;
            at_least(
                s,
                "redis_ha_coordinator_grpc_requests_total",
                &[("method", "WatchTopology"), ("code", "OK")],
                1.0,
            )?;
            at_least(
                s,
                "redis_ha_coordinator_sentinel_events_total",
                &[("group", group.as_str()), ("kind", "+switch-master")],
                1.0,
            )?;
            equals(
                s,
                "redis_ha_coordinator_node_role",
                &[("node", node_m.as_str()), ("role", "master")],
                1.0,
            )?;
            equals(
                s,
                "redis_ha_coordinator_node_up",
                &[("node", "node-1")],
                0.0,
            )?;
            equals(
                s,
                "redis_ha_coordinator_node_up",
                &[("node", node_m.as_str())],
                1.0,
            )?;
            Ok(())
        },
    )
    .await;
    for i in 1..=NODES {
        let port = cluster.agent_metrics_port(i);
        let node = format!("node-{i}");
        wait_metrics(&format!("agent {i}'s metrics"), port, |s| {
            let n = [("node", node.as_str()), ("group", group.as_str())];
            if i == 1 {
                // Its Redis is dead.
                equals(s, "redis_ha_agent_redis_up", &n, 0.0)?;
                equals(
                    s,
                    "redis_ha_agent_redis_role",
                    &[("node", node.as_str()), ("role", "unknown")],
                    1.0,
                )?;
            } else {
                equals(s, "redis_ha_agent_redis_up", &n, 1.0)?;
                let role = if i == m { "master" } else { "replica" };
                equals(
                    s,
                    "redis_ha_agent_redis_role",
                    &[("node", node.as_str()), ("role", role)],
                    1.0,
                )?;
            }
            // Every Sentinel announces the switch, the killed node's too (it still runs).
            at_least(s, "redis_ha_agent_failovers_total", &n, 1.0)?;
            at_least(
                s,
                "redis_ha_agent_sentinel_events_total",
                &[("node", node.as_str()), ("kind", "+switch-master")],
                1.0,
            )?;
            at_least(s, "redis_ha_agent_sentinel_config_epoch", &n, 1.0)?;
            equals(s, "redis_ha_agent_sentinel_up", &n, 1.0)?;
            at_least(
                s,
                "redis_ha_agent_grpc_requests_total",
                &[("method", "Report"), ("code", "OK")],
                1.0,
            )?;
            Ok(())
        })
        .await;
    }
    // HAProxy's own Prometheus exporter, on the stats frontend of the shipped config.
    let haproxy_metrics = wait_scrape(cluster.ports().port(STATS_OFFSET)).await;
    assert!(
        haproxy_metrics
            .lines()
            .any(|l| l.starts_with("haproxy_backend_")),
        "{haproxy_metrics}"
    );

    // ---- logs: the lines written inside the trace's spans carry its id (the failover's
    // other publications, before and after version N, may share it).
    let coordinator_log = coordinator.output();
    let published = coordinator_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["fields"]["message"] == "topology published"
                && v["span"]["version"].as_u64() == version.parse().ok()
        });
    let published = published.unwrap_or_else(|| {
        panic!("no JSON line \"topology published\" of version {version} in:\n{coordinator_log}")
    });
    assert_eq!(published["span"]["name"], "publish_topology", "{published}");
    assert_eq!(published["trace_id"], trace.as_str(), "{published}");
    let reporting_node = attr(&chain.agent_report, "node").to_owned();
    let a: usize = reporting_node.trim_start_matches("node-").parse().unwrap();
    let agent_log = agents[a - 1].output();
    assert!(
        agent_log.contains(&format!("trace_id={trace}")),
        "agent {a}'s log has no line with trace_id={trace}:\n{agent_log}"
    );

    // ---- a clean stop: every binary exits 0 (the exporter flushes without complaint).
    for p in std::iter::once(&mut reloader)
        .chain(agents.iter_mut())
        .chain(std::iter::once(&mut coordinator))
    {
        let name = p.name().to_owned();
        let status = p.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} ended with {status:?}:\n{}",
            p.output_tail(30)
        );
    }
    let spans = otlp.spans();
    let services: BTreeMap<&str, usize> = spans.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.service.as_str()).or_default() += 1;
        m
    });
    assert_eq!(
        services.keys().copied().collect::<Vec<_>>(),
        vec![AGENT, COORDINATOR, RELOADER],
        "{services:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_debug_logs_spans_metrics_or_command_lines_and_no_exporter_no_complaint() {
    const PASSWORD: &str = "Obs3rvability-s3cret-7f2a9c";
    let otlp = OtlpReceiver::start().await.unwrap();
    let mut cluster = Cluster::start(ClusterOptions {
        password: Some(PASSWORD.into()),
        ..ClusterOptions::default()
    })
    .await;
    // No OTEL_EXPORTER_OTLP_ENDPOINT: nothing exported, nothing said about it.
    let mut coordinator = cluster
        .start_coordinator_binary(&SidecarEnv::default())
        .await;
    let env = SidecarEnv {
        rust_log: "debug".into(),
        ..SidecarEnv::exporting_to(otlp.endpoint())
    };
    let mut agent = cluster.start_agent_binary(2, &env);
    assert!(cluster.password_file().is_some());
    // The private keys the two read (mutual TLS): what must not leak beside the password.
    let keys: Vec<(String, String)> = [
        redis_ha_tls::Identity::Coordinator,
        redis_ha_testkit::tls::agent("node-2"),
    ]
    .iter()
    .map(|who| (who.to_string(), key_material(&cluster.certs().key(who))))
    .collect();
    let secrets: Vec<(&str, &str)> = std::iter::once(("the password", PASSWORD))
        .chain(keys.iter().map(|(who, k)| (who.as_str(), k.as_str())))
        .collect();
    // Nor on any command line or in any environment of this machine while they run.
    for p in [&agent, &coordinator] {
        let pid = p.pid().expect("running");
        for (what, secret) in &secrets {
            for file in ["cmdline", "environ"] {
                let text = std::fs::read(format!("/proc/{pid}/{file}"))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                assert!(!text.contains(secret), "{what} in /proc/{pid}/{file}");
            }
        }
    }
    assert_nowhere_in_proc_cmdlines(&secrets);

    // Reported with AUTH, then the node dies and comes back: reconnection and AUTH again.
    let up = |t: &Topology, h: Health| {
        t.nodes
            .iter()
            .any(|n| n.node == "node-2" && n.health() == h)
    };
    cluster
        .wait_topology("node-2 reported UP", READY_TIMEOUT, |t| up(t, Health::Up))
        .await;
    cluster.node_mut(2).kill();
    cluster
        .wait_topology("node-2 reported DOWN", READY_TIMEOUT, |t| {
            up(t, Health::Down)
        })
        .await;
    cluster.node_mut(2).restart().await;
    cluster
        .wait_topology("node-2 reported UP again", READY_TIMEOUT, |t| {
            up(t, Health::Up)
        })
        .await;
    // Its spans arrive, so the check below looks at real ones.
    wait_until("the agent's spans", READY_TIMEOUT, || {
        let n = otlp.spans().iter().filter(|s| s.service == AGENT).count();
        async move {
            if n > 0 {
                Ok(())
            } else {
                Err("none yet".to_owned())
            }
        }
    })
    .await;

    // Every secret of the cluster (the kit derives each ACL user's and the Sentinels' password
    // from PASSWORD, so each holds it) and the private keys: on no process's command line
    // (Redis, Sentinel, the agent, the coordinator, anything else on this machine, after the
    // restart too), in no metric.
    assert_nowhere_in_proc_cmdlines(&secrets);
    for port in [
        cluster.agent_metrics_port(2),
        cluster.coordinator_metrics_port(),
    ] {
        let body = wait_scrape(port).await;
        for (what, secret) in &secrets {
            assert!(!body.contains(secret), "{what} in /metrics on {port}");
        }
    }

    let status = agent.terminate();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let log = agent.output();
    assert!(
        log.lines().filter(|l| l.contains("DEBUG")).count() > 10,
        "the agent did not log at debug level:\n{log}"
    );
    for (what, secret) in &secrets {
        assert!(!log.contains(secret), "{what} appears in the agent's log");
        for s in otlp.spans() {
            for (k, v) in &s.attributes {
                assert!(
                    !v.contains(secret),
                    "span {} attribute {k} holds {what}",
                    s.name
                );
            }
        }
    }

    let status = coordinator.terminate();
    let log = coordinator.output();
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{log}");
    for (what, secret) in &secrets {
        assert!(
            !log.contains(secret),
            "{what} appears in the coordinator's log"
        );
    }
    for word in [
        "ERROR",
        "otlp",
        "OTLP",
        "opentelemetry",
        "exporter",
        "trace_id",
    ] {
        assert!(
            !log.contains(word),
            "the coordinator without an OTLP endpoint says {word:?}:\n{log}"
        );
    }
    assert!(log.contains("coordinator serving"), "{log}");
    assert!(
        !otlp.spans().iter().any(|s| s.service == COORDINATOR),
        "the coordinator exported spans without an endpoint"
    );
}

/// The body of a PEM private key (its base64 lines joined, and its first line alone): what a
/// leak would show, whichever way it was printed.
fn key_material(path: &std::path::Path) -> String {
    let pem = std::fs::read_to_string(path).expect("a key file");
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!body.is_empty(), "{} holds no key", path.display());
    // The first base64 line: present in any printout of the key, PEM or not.
    body[0].to_owned()
}

/// No process's command line holds any of `secrets` (the sidecars read them from files).
fn assert_nowhere_in_proc_cmdlines(secrets: &[(&str, &str)]) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        panic!("no /proc");
    };
    let mut seen = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        seen += 1;
        let text = String::from_utf8_lossy(&bytes);
        for (what, secret) in secrets {
            assert!(
                !text.contains(secret),
                "{what} on the command line of pid {name:?}"
            );
        }
    }
    assert!(seen > 2, "read only {seen} command lines");
}

/// Spans and lines are matched on their text: keep the helper honest.
#[test]
fn chain_search_reports_what_is_missing() {
    let span =
        |service: &str, name: &str, id: &str, parent: &str, attrs: &[(&str, &str)]| ReceivedSpan {
            service: service.into(),
            name: name.into(),
            trace_id: "t".repeat(32),
            span_id: id.into(),
            parent_span_id: parent.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
    let mut spans = vec![span(
        RELOADER,
        "apply_topology",
        "a",
        "p",
        &[("master", "m:1"), ("resync", "false")],
    )];
    let e = failover_chain(&spans, "m:1").unwrap_err();
    assert!(e.contains("has not arrived"), "{e}");
    spans.extend([
        span(
            COORDINATOR,
            "publish_topology",
            "p",
            "r",
            &[("master", "m:1"), ("old_master", "m:0")],
        ),
        span(COORDINATOR, "Report", "r", "ar", &[]),
        span(AGENT, "report", "ar", "ev", &[]),
        span(AGENT, "sentinel_event", "ev", "", &[]),
        span(RELOADER, "runtime_command", "c", "a", &[]),
        span(RELOADER, "read_back", "b1", "a", &[]),
    ]);
    let e = failover_chain(&spans, "m:1").unwrap_err();
    assert!(e.contains("1 read_back"), "{e}");
    spans.push(span(RELOADER, "read_back", "b2", "a", &[]));
    let c = failover_chain(&spans, "m:1").unwrap();
    assert_eq!(c.event.span_id, "ev");
}
