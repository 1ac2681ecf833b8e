//! Stack-test harness: the real swarm stack, deployed with `deploy/up.sh` under a stack name and
//! port block of the test's own, faulted through `redis_ha_chaos::chaos::docker` (the Docker API), observed
//! through its published ports (HAProxy, each Redis and Sentinel, the coordinator's gRPC port)
//! and removed with `deploy/down.sh --purge`.
//!
//! Docker must be there: without it `Stack::deploy` fails with a clear message. A developer
//! without Docker has tests/run.sh skip the stack tests with `REDIS_HA_SKIP_STACK_TESTS=1`;
//! under CI that is refused (by run.sh, and by [`refuse_skip_under_ci`] in the test).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use redis_ha_chaos::chaos::docker::{ChaosAction, ChaosOutcome, DockerChaos, NodeNum};
use tokio::process::Command;

/// tests/run.sh's opt-out for machines without Docker (refused under CI).
pub const SKIP_ENV: &str = "REDIS_HA_SKIP_STACK_TESTS";

/// An upstream resolver that never answers, for `StackOptions::dns`: TEST-NET-1 (RFC 5737) is
/// never routed. Docker's embedded DNS (Engine 20.10) then sends no answer at all for a name
/// it does not know, and a lookup waits out the client's timeouts (10 s with glibc's
/// defaults): the worst upstream a node can have.
pub const SILENT_DNS: &str = "192.0.2.1";

/// Every label the swarm puts on a stack's objects.
const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// Whether a skip is asked for, and whether that is allowed: `Err` when `CI` is set (CI must
/// run the stack tests). A pure function of the two variables' values.
pub fn skip_decision(skip: Option<&str>, ci: Option<&str>) -> Result<bool, String> {
    let skip = skip.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let ci = ci.is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    if skip && ci {
        Err(format!(
            "{SKIP_ENV} is set while CI is set: CI must run the stack tests"
        ))
    } else {
        Ok(skip)
    }
}

/// Panics when the stack tests are asked to be skipped under CI (the test runs, so it must
/// not pretend to have been skipped; outside CI the variable only matters to tests/run.sh).
pub fn refuse_skip_under_ci() {
    let skip = std::env::var(SKIP_ENV).ok();
    let ci = std::env::var("CI").ok();
    if let Err(e) = skip_decision(skip.as_deref(), ci.as_deref()) {
        panic!("{e}");
    }
}

#[derive(Clone, Debug)]
pub struct StackOptions {
    pub name: String,
    pub base_port: u16,
    pub grpc_port: u16,
    pub down_after_ms: u64,
    pub group: String,
    /// `deploy/up.sh --dns`: the Redis and Sentinel containers' upstream resolver.
    pub dns: Option<String>,
    /// `deploy/up.sh --node-ports`: the Redis and Sentinel ports on the host (the scenarios
    /// read the nodes on them; the exposure test deploys the default, without).
    pub node_ports: bool,
    /// `deploy/up.sh --engine`: other nodes' Docker engines (the images are loaded onto them;
    /// `down.sh --purge` removes their volumes).
    pub engines: Vec<String>,
    /// `false`: `deploy/up.sh --no-docker-socket` (the agents get no Docker socket).
    pub docker_socket: bool,
    /// `REDIS_HA_PLACEMENT_CONTROL` for `deploy/up.sh`: where the coordinator and the
    /// reloader run (`None`: up.sh's default, a manager).
    pub control_placement: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            name: "redis-ha-test".into(),
            base_port: 9300,
            grpc_port: 9350,
            down_after_ms: 1000,
            group: "redis-cluster".into(),
            dns: None,
            node_ports: true,
            engines: Vec::new(),
            docker_socket: true,
            control_placement: None,
        }
    }
}

/// Where `deploy/up.sh` keeps the certificates of stack `name` (its state directory's tls/).
pub fn tls_dir(name: &str) -> PathBuf {
    repo_root().join("deploy/stack/run").join(name).join("tls")
}

/// `redis-ha --ca/--cert/--key` with the operator's certificate in `tls_dir`.
pub fn operator_tls_args(tls_dir: &Path) -> Vec<String> {
    [
        ("--ca", "ca.pem"),
        ("--cert", "operator.pem"),
        ("--key", "operator-key.pem"),
    ]
    .iter()
    .flat_map(|(flag, file)| [(*flag).to_owned(), tls_dir.join(file).display().to_string()])
    .collect()
}

/// `deploy/up.sh` arguments deploying `opts` (the build options are the caller's).
pub fn up_args(opts: &StackOptions) -> Vec<String> {
    let mut args = vec![
        "--stack".into(),
        opts.name.clone(),
        "--base-port".into(),
        opts.base_port.to_string(),
        "--grpc-port".into(),
        opts.grpc_port.to_string(),
        "--down-after-ms".into(),
        opts.down_after_ms.to_string(),
        "--group".into(),
        opts.group.clone(),
    ];
    if let Some(dns) = &opts.dns {
        args.extend(["--dns".into(), dns.clone()]);
    }
    if opts.node_ports {
        args.push("--node-ports".into());
    }
    for e in &opts.engines {
        args.extend(["--engine".into(), e.clone()]);
    }
    if !opts.docker_socket {
        args.push("--no-docker-socket".into());
    }
    args
}

/// The environment `deploy/up.sh` deploys `opts` with (beside [`up_args`]).
pub fn up_env(opts: &StackOptions) -> Vec<(String, String)> {
    opts.control_placement
        .iter()
        .map(|c| ("REDIS_HA_PLACEMENT_CONTROL".to_owned(), c.clone()))
        .collect()
}

/// A deployed stack. Not removed on drop (a failed run is left for inspection and removed by
/// the next run before it deploys); call [`Stack::teardown`].
pub struct Stack {
    pub opts: StackOptions,
    pub chaos: DockerChaos,
    /// The operator's (`default` user's) Redis password.
    password: String,
    /// The Sentinels' own password.
    sentinel_password: String,
    repo: PathBuf,
}

/// The secret files up.sh generates for a stack (deploy/swarm/lib.sh `SW_SECRETS`).
pub const SECRET_FILES: [&str; 8] = [
    "redis_admin_password",
    "redis_app_password",
    "redis_replication_password",
    "redis_sentinel_password",
    "redis_agent_password",
    "redis_simulator_password",
    "redis_coordinator_password",
    "sentinel_password",
];

/// What a probe sends to a target, by what may listen there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// `PING` (Redis, Sentinel, HAProxy's frontend to Redis).
    Resp,
    /// `GET /metrics` (the sidecars' metrics, HAProxy's stats).
    Http,
    /// `show info` (HAProxy's runtime API).
    Runtime,
    /// The HTTP/2 preface (the coordinator's gRPC).
    Grpc,
}

impl ProbeKind {
    /// What listens on `port` in the stack (its fixed in-network ports).
    pub fn of_port(port: u16) -> Self {
        match port {
            9121..=9123 | 8404 => ProbeKind::Http,
            9999 => ProbeKind::Runtime,
            50051 => ProbeKind::Grpc,
            _ => ProbeKind::Resp,
        }
    }

    fn request(self) -> &'static str {
        match self {
            ProbeKind::Resp => "PING\\r\\n",
            ProbeKind::Http => "GET /metrics HTTP/1.0\\r\\n\\r\\n",
            ProbeKind::Runtime => "show info\\n",
            ProbeKind::Grpc => "PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n",
        }
    }

    /// Whether `reply` is one of ours answering: a RESP reply, our metrics, HAProxy's runtime
    /// API, an HTTP/2 SETTINGS frame. Anything else (nothing, a refused connection, or an
    /// answer of the network's own, like an egress proxy's `HTTP/1.1 400` to any address it
    /// does not know) is no exposure of ours.
    pub fn answered(self, reply: &[u8]) -> bool {
        let text = String::from_utf8_lossy(reply);
        match self {
            ProbeKind::Resp => reply.first().is_some_and(|b| b"+-:$*".contains(b)),
            ProbeKind::Http => {
                text.contains("redis_ha_") || text.contains("haproxy_") || text.contains("# TYPE")
            }
            ProbeKind::Runtime => {
                text.contains("Name: HAProxy") || text.contains("Unknown command")
            }
            // A frame header: 3 bytes length, type 4 (SETTINGS).
            ProbeKind::Grpc => reply.len() >= 9 && reply[3] == 0x04,
        }
    }
}

/// What a probe from a container found at one `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub target: String,
    /// The first bytes of the answer (empty: refused, silent, or no such name).
    pub reply: Vec<u8>,
    /// One of ours answered ([`ProbeKind::answered`]).
    pub ours: bool,
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

impl Stack {
    /// Every address of the stack's running containers on each of its networks, by network
    /// (`<stack>_internal` ...), from `docker inspect`.
    pub async fn container_addresses(&self) -> Result<Vec<(String, String)>, String> {
        let label = format!("label=com.docker.stack.namespace={}", self.opts.name);
        let ids = docker(&["ps", "-q", "--filter", &label]).await?;
        let mut out = Vec::new();
        for id in ids.split_whitespace() {
            let nets = docker(&[
                "inspect",
                "-f",
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
                id,
            ])
            .await?;
            for pair in nets.split_whitespace() {
                if let Some((net, ip)) = pair.split_once('=') {
                    if !ip.is_empty() {
                        out.push((net.to_owned(), ip.to_owned()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Sends each `host:port` the request of its [`ProbeKind`] from a throw-away container
    /// attached to the stack's `network` only (the Redis image: bash's /dev/tcp, at most 2 s
    /// for an answer), and keeps the first bytes of each answer. 32 targets at a time.
    pub async fn probe_from(
        &self,
        network: &str,
        targets: &[String],
    ) -> Result<Vec<Probe>, String> {
        let image = self
            .image("REDIS_HA_IMAGE_REDIS")
            .ok_or("no Redis image name in the stack's images.env")?;
        // Each argument is `host:port|request` (a printf format); each answer one line
        // `host:port HEX` (empty: refused, silent or no such name).
        // At most 32 probes at a time: hundreds of simultaneous connections on a loaded
        // 2-core host made even HAProxy's frontend miss the probe's timeout.
        let script = r#"for a in "$@"; do
  while [ "$(jobs -rp | wc -l)" -ge 32 ]; do wait -n; done
  {
    t=${a%%|*}; req=${a#*|}; h=${t%:*}; p=${t##*:}
    r=$(timeout 4 bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit; printf "$3" >&3; timeout 2 dd bs=256 count=1 status=none <&3 | od -An -tx1 | tr -d " \n"' _ "$h" "$p" "$req" 2>/dev/null)
    echo "$t $r"
  } &
done
wait"#;
        let net = format!("{}_{network}", self.opts.name);
        let args_owned: Vec<String> = targets
            .iter()
            .map(|t| {
                let port = t
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                format!("{t}|{}", ProbeKind::of_port(port).request())
            })
            .collect();
        let mut args = vec![
            "run",
            "--rm",
            "--network",
            net.as_str(),
            "--entrypoint",
            "bash",
            image.as_str(),
            "-c",
            script,
            "probe",
        ];
        args.extend(args_owned.iter().map(String::as_str));
        let out = docker(&args).await?;
        let probes: Vec<Probe> = out
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let target = w.next()?.to_owned();
                let reply = hex_decode(w.next().unwrap_or(""));
                let port = target.rsplit(':').next()?.parse().ok()?;
                let ours = ProbeKind::of_port(port).answered(&reply);
                Some(Probe {
                    target,
                    reply,
                    ours,
                })
            })
            .collect();
        if probes.len() != targets.len() {
            return Err(format!(
                "the probe answered {} of {} targets: {out}",
                probes.len(),
                targets.len()
            ));
        }
        Ok(probes)
    }

    /// A value of the stack's images.env (what up.sh deployed).
    pub fn image(&self, key: &str) -> Option<String> {
        let env = std::fs::read_to_string(
            self.repo
                .join("deploy/stack/run")
                .join(&self.opts.name)
                .join("images.env"),
        )
        .ok()?;
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
    }

    /// The content of every Docker config object of the stack.
    pub async fn config_objects(&self) -> Result<Vec<(String, String)>, String> {
        let label = format!("label=com.docker.stack.namespace={}", self.opts.name);
        let names = docker(&["config", "ls", "-q", "--filter", &label]).await?;
        let mut out = Vec::new();
        for id in names.split_whitespace() {
            let data = docker(&["config", "inspect", "-f", "{{json .Spec.Data}}", id]).await?;
            // JSON of a byte slice: a base64 string.
            let b64: String = serde_json::from_str(data.trim()).map_err(|e| e.to_string())?;
            let text = base64_decode(&b64).ok_or("a config that is no base64")?;
            out.push((id.to_owned(), String::from_utf8_lossy(&text).into_owned()));
        }
        Ok(out)
    }

    /// Every service's logs and its spec (environment, command), as text.
    pub async fn service_logs_and_specs(&self) -> Result<String, String> {
        let mut all = String::new();
        let label = format!("label=com.docker.stack.namespace={}", self.opts.name);
        let services = docker(&["service", "ls", "-q", "--filter", &label]).await?;
        for id in services.split_whitespace() {
            all.push_str(&docker(&["service", "inspect", id]).await?);
            let logs = Command::new("docker")
                .args(["service", "logs", "--raw", id])
                .output()
                .await
                .map_err(|e| e.to_string())?;
            all.push_str(&String::from_utf8_lossy(&logs.stdout));
            all.push_str(&String::from_utf8_lossy(&logs.stderr));
        }
        Ok(all)
    }
}

/// Saves every service's log of stack `name` (`docker service logs -t --raw`, stdout and stderr)
/// into `dir`, one `<service>.log` each: a benchmark's outlier can be read after the stack is gone.
pub async fn save_service_logs(name: &str, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let label = format!("label=com.docker.stack.namespace={name}");
    let services = docker(&["service", "ls", "--format", "{{.Name}}", "--filter", &label]).await?;
    for service in services.split_whitespace() {
        let logs = Command::new("docker")
            .args(["service", "logs", "-t", "--raw", service])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("docker service logs {service}: {e}"))?;
        let mut text = logs.stdout;
        text.extend_from_slice(&logs.stderr);
        let file = dir.join(format!("{service}.log"));
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(())
}

/// `docker ARGS`' stdout; an error with its stderr when it fails.
pub async fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Standard base64 (what Docker's JSON gives a byte slice as).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let n = chunk.len().saturating_sub(1);
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// A secret up.sh generated for the stack `stack`.
fn read_secret(repo: &Path, stack: &str, name: &str) -> Result<String, String> {
    let p = repo.join("deploy/stack/run").join(stack).join(name);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("cannot read {}: {e}", p.display()))
}

/// `deploy/down.sh --stack name --purge` (with the engines up.sh was given, from the state
/// directory, and `engines`), without the checks of [`remove`]: what it printed.
pub async fn purge(repo: &Path, name: &str, engines: &[String]) -> Result<String, String> {
    let mut args = vec!["--stack".to_owned(), name.to_owned(), "--purge".to_owned()];
    for e in engines {
        args.extend(["--engine".to_owned(), e.clone()]);
    }
    script(repo, "down.sh", &args, &[]).await
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Runs a deploy script with `env` added, streaming nothing but returning its output on
/// failure.
async fn script(
    repo: &Path,
    name: &str,
    args: &[String],
    env: &[(String, String)],
) -> Result<String, String> {
    let out = Command::new(repo.join("deploy").join(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(repo)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run deploy/{name}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "deploy/{name} {} failed ({}):\n{text}",
            args.join(" "),
            out.status
        ))
    }
}

impl Stack {
    /// Connects to Docker (a clear error when there is none), removes whatever an earlier run
    /// left under this stack name, and deploys afresh.
    pub async fn deploy(opts: StackOptions) -> Result<Self, String> {
        let chaos = DockerChaos::connect(&opts.name).await.map_err(|e| {
            format!(
                "the stack tests need a Docker engine: {e}. On a machine without Docker set \
                 {SKIP_ENV}=1 to skip them (CI must not)"
            )
        })?;
        let repo = repo_root();
        let down = script(
            &repo,
            "down.sh",
            &["--stack".into(), opts.name.clone(), "--purge".into()],
            &[],
        )
        .await?;
        tracing::info!("leftovers removed:\n{down}");
        let mut args = up_args(&opts);
        // The sidecars of this build's own profile (up.sh's default is release): a test's are
        // debug, `cargo bench`'s release.
        if !binaries_dir().ends_with("release") {
            args.push("--debug".into());
        }
        // The test build compiled the binaries already: image them as they are.
        if binaries_fresh() {
            args.push("--no-cargo".into());
        }
        let up = script(&repo, "up.sh", &args, &up_env(&opts)).await?;
        eprintln!("{up}");
        let password = read_secret(&repo, &opts.name, "redis_admin_password")?;
        let sentinel_password = read_secret(&repo, &opts.name, "sentinel_password")?;
        Ok(Self {
            opts,
            chaos,
            password,
            sentinel_password,
            repo,
        })
    }

    pub fn proxy_port(&self) -> u16 {
        self.opts.base_port
    }

    /// `deploy/up.sh` again on the running stack, with its options, the images of the last
    /// build (`--debug --no-build`) and `extra`: what it printed.
    pub async fn up_again(&self, extra: &[String]) -> Result<String, String> {
        let mut args = up_args(&self.opts);
        args.extend(["--debug".to_owned(), "--no-build".to_owned()]);
        args.extend(extra.iter().cloned());
        script(&self.repo, "up.sh", &args, &up_env(&self.opts)).await
    }

    /// The operator's Redis password (the `default` user: every command).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// One of the secrets up.sh generated for this stack (`deploy/stack/run/<stack>/<name>`).
    pub fn secret(&self, name: &str) -> Result<String, String> {
        read_secret(&self.repo, &self.opts.name, name)
    }

    pub fn redis_port(&self, n: u8) -> u16 {
        self.opts.base_port + u16::from(n)
    }

    pub fn sentinel_port(&self, n: u8) -> u16 {
        self.opts.base_port + 10000 + u16::from(n)
    }

    /// One command on a fresh connection to 127.0.0.1:`port`, with the stack's password.
    async fn cmd<T: redis::FromRedisValue>(&self, port: u16, cmd: redis::Cmd) -> Result<T, String> {
        redis_ha_testkit::client::query(port, Some(&self.password), &cmd)
            .await
            .map_err(|e| e.to_string())
    }

    /// `CONFIG GET key` straight from node `n`: the value.
    pub async fn config_get(&self, n: u8, key: &str) -> Result<String, String> {
        let mut c = redis::cmd("CONFIG");
        c.arg("GET").arg(key);
        let v: Vec<String> = self.cmd(self.redis_port(n), c).await?;
        match &v[..] {
            [k, value] if k == key => Ok(value.clone()),
            other => Err(format!("CONFIG GET {key} on redis-{n}: {other:?}")),
        }
    }

    /// SET through HAProxy.
    pub async fn write(&self, key: &str, value: &str) -> Result<(), String> {
        let mut c = redis::cmd("SET");
        c.arg(key).arg(value);
        let _: String = self.cmd(self.proxy_port(), c).await?;
        Ok(())
    }

    /// GET straight from node `n`.
    pub async fn read_node(&self, n: u8, key: &str) -> Result<Option<String>, String> {
        let mut c = redis::cmd("GET");
        c.arg(key);
        self.cmd(self.redis_port(n), c).await
    }

    /// "master" / "slave" from node `n`'s ROLE.
    pub async fn role(&self, n: u8) -> Result<String, String> {
        let v: Vec<redis::Value> = self.cmd(self.redis_port(n), redis::cmd("ROLE")).await?;
        match v.first() {
            Some(redis::Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
            Some(redis::Value::SimpleString(s)) => Ok(s.clone()),
            other => Err(format!("odd ROLE reply {other:?}")),
        }
    }

    /// `redis-cli ARGS` run inside node `n`'s running container (`docker exec`), against its
    /// own port: reaches the node also when it is cut off from every network (isolated), where
    /// its published port is gone with its network endpoint. Prints redis-cli's raw answer.
    pub async fn cli_inside(&self, n: u8, args: &[&str]) -> Result<String, String> {
        let id = self.running_container(n).await?;
        // The password from the container's own secret file, never the command line.
        let script = "REDISCLI_AUTH=$(cat /run/secrets/redis_admin_password) \
             exec timeout 3 redis-cli --no-auth-warning --raw -p \"$((9000 + REDIS_HA_NODE))\" \"$@\"";
        let out = Command::new("docker")
            .args(["exec", id.as_str(), "bash", "-c", script, "redis-cli"])
            .args(args)
            .output()
            .await
            .map_err(|e| format!("docker exec: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
        if !out.status.success() {
            return Err(format!(
                "redis-cli {args:?} in redis-{n}: {} {stdout} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        if stdout.starts_with("ERR")
            || stdout.starts_with("NOAUTH")
            || stdout.starts_with("WRONGPASS")
        {
            return Err(format!("redis-cli {args:?} in redis-{n}: {stdout}"));
        }
        Ok(stdout)
    }

    /// Node `n`'s ROLE ("master" / "slave") inside its container (see [`Stack::cli_inside`]).
    pub async fn role_inside(&self, n: u8) -> Result<String, String> {
        let role = self.cli_inside(n, &["ROLE"]).await?;
        Ok(role.lines().next().unwrap_or_default().to_owned())
    }

    /// Whether node `n` holds `key`, asked inside its container.
    pub async fn has_key_inside(&self, n: u8, key: &str) -> Result<bool, String> {
        match self.cli_inside(n, &["EXISTS", key]).await?.as_str() {
            "0" => Ok(false),
            "1" => Ok(true),
            other => Err(format!("EXISTS {key} in redis-{n}: {other:?}")),
        }
    }

    /// The master the Sentinels agree on (a majority of those answering), as a node number.
    pub async fn sentinel_master(&self) -> Result<u8, String> {
        sentinels_master(
            |s| self.sentinel_port(s),
            &self.sentinel_password,
            &self.opts.group,
        )
        .await
    }

    /// `redis-ha status --json` from the host against the published gRPC port.
    pub async fn status_json(&self) -> Result<serde_json::Value, String> {
        cli_status_json(
            &binaries_dir().join("redis-ha"),
            self.opts.grpc_port,
            &self.opts.group,
            &tls_dir(&self.opts.name),
        )
        .await
    }

    /// `redis-ha events --json` from the host: the coordinator's event ring, oldest first.
    pub async fn events_json(&self) -> Result<Vec<serde_json::Value>, String> {
        let out = self.cli(&["events", "--json"]).await?;
        serde_json::from_str(&out).map_err(|e| format!("events JSON: {e}"))
    }

    /// The confirmed master `redis-ha status` names, as a node number.
    pub async fn status_master(&self) -> Result<u8, String> {
        confirmed_master(&self.status_json().await?)
    }

    /// Waits until Sentinel and `redis-ha status` name the same master; returns it.
    pub async fn agreed_master(&self, timeout: Duration) -> Result<u8, String> {
        poll(timeout, || async {
            let s = self.sentinel_master().await?;
            let c = self.status_master().await?;
            if s == c {
                Ok(s)
            } else {
                Err(format!(
                    "sentinel says redis-{s}, redis-ha status says redis-{c}"
                ))
            }
        })
        .await
    }

    pub async fn chaos(&self, action: ChaosAction, n: u8) -> Result<ChaosOutcome, String> {
        let node = NodeNum::new(n).map_err(|e| e.to_string())?;
        let out = self
            .chaos
            .apply(action, node)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("chaos {action} redis-{n}: {}", out.message);
        Ok(out)
    }

    /// The id of node `n`'s running container.
    pub async fn running_container(&self, n: u8) -> Result<String, String> {
        let node = NodeNum::new(n).map_err(|e| e.to_string())?;
        self.chaos
            .running(node)
            .await
            .map(|c| c.id)
            .map_err(|e| e.to_string())
    }

    /// Removes the stack with `deploy/down.sh --purge` and checks that nothing of it is left.
    pub async fn teardown(self) -> Result<(), String> {
        remove(&self.repo, &self.opts.name).await
    }
}

/// `deploy/down.sh --purge`, then: no service, container, volume, config, secret or network
/// labelled with the stack's namespace.
pub async fn remove(repo: &Path, name: &str) -> Result<(), String> {
    script(
        repo,
        "down.sh",
        &["--stack".into(), name.to_owned(), "--purge".into()],
        &[],
    )
    .await?;
    let filter = format!("label={NAMESPACE_LABEL}={name}");
    let mut left = Vec::new();
    for kind in [
        "service",
        "container",
        "volume",
        "config",
        "secret",
        "network",
    ] {
        let mut args = vec![kind, "ls", "-q", "--filter", filter.as_str()];
        if kind == "container" {
            args = vec!["ps", "-aq", "--filter", filter.as_str()];
        }
        let out = Command::new("docker")
            .args(&args)
            .output()
            .await
            .map_err(|e| format!("docker {kind} ls: {e}"))?;
        let ids = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !ids.is_empty() {
            left.push(format!("{kind}s: {}", ids.replace('\n', " ")));
        }
    }
    let state = repo.join("deploy/stack/run").join(name);
    if state.exists() {
        left.push(format!("state directory {}", state.display()));
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("left behind by {name}: {}", left.join("; ")))
    }
}

/// The keys of `keys` that the Redis on 127.0.0.1:`port` does not hold: the acknowledged
/// writes a failover lost.
pub async fn missing_keys(
    port: u16,
    password: &str,
    keys: &[String],
) -> Result<Vec<String>, String> {
    let mut con = redis_ha_testkit::client::connect(port, Some(password))
        .await
        .map_err(|e| e.to_string())?;
    redis_ha_testkit::client::missing_keys(&mut con, keys.iter().map(String::as_str))
        .await
        .map_err(|e| format!("MGET on 127.0.0.1:{port}: {e}"))
}

/// target/<profile>: where the test build put the binaries.
pub fn binaries_dir() -> PathBuf {
    crate::binaries::binary_dir().to_path_buf()
}

/// True when every binary the images hold is there (the test build made them; `binary_dir`
/// rebuilt the others if they were older than this test).
fn binaries_fresh() -> bool {
    let dir = binaries_dir();
    std::iter::once("redis-ha")
        .chain(crate::binaries::BINS)
        .all(|b| dir.join(b).is_file())
}

/// The kit's `poll_until`, probing every 500 ms (Docker and process spawns are not free).
pub async fn poll<T, F, Fut>(timeout: Duration, probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    redis_ha_testkit::poll_until(timeout, Duration::from_millis(500), probe)
        .await
        .map_err(|e| format!("after {timeout:?}: {e}"))
}

/// The confirmed master of a `redis-ha status --json`, as a node number.
pub fn confirmed_master(status: &serde_json::Value) -> Result<u8, String> {
    let m = &status["master"];
    if m["confirmed"] != serde_json::Value::Bool(true) {
        return Err(format!("status: no confirmed master: {m}"));
    }
    let addr = m["address"].as_str().unwrap_or_default();
    let host = addr.split(':').next().unwrap_or_default();
    host.parse::<NodeNum>()
        .map(NodeNum::get)
        .map_err(|e| format!("status master {addr:?}: {e}"))
}

/// `redis-ha status --json` run by the CLI binary `bin` against a coordinator on this host.
pub async fn cli_status_json(
    bin: &Path,
    grpc_port: u16,
    group: &str,
    tls_dir: &Path,
) -> Result<serde_json::Value, String> {
    let out = Command::new(bin)
        .args(operator_tls_args(tls_dir))
        .args([
            "--coordinator",
            &format!("https://127.0.0.1:{grpc_port}"),
            "--group",
            group,
            "status",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "redis-ha status: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("status JSON: {e}"))
}

/// The master a majority of the stack's three Sentinels (published ports `port(1..=3)`) name
/// for `group`, as a node number; the error lists what each answered.
pub async fn sentinels_master(
    port: impl Fn(u8) -> u16,
    password: &str,
    group: &str,
) -> Result<u8, String> {
    let at: Vec<(u8, std::net::SocketAddr)> = (1..=3u8)
        .map(|s| (s, std::net::SocketAddr::from(([127, 0, 0, 1], port(s)))))
        .collect();
    crate::multinode::sentinel_master(&at, password, group).await
}

/// The classic set-up of tests/benches/failover.rs, in the stack: AUTH first (the stack's Redis
/// requires it; the check logs in as the agent user), servers by service name through Docker's
/// DNS.
fn classic_config(agent_password: &str) -> String {
    crate::haproxy::classic_config(&crate::haproxy::ClassicSetup {
        frontend: ":9000".into(),
        // The image's HEALTHCHECK probes the stats frontend on 127.0.0.1:8404.
        stats: "127.0.0.1:8404".into(),
        socket: None,
        servers: (1..=3).map(|n| format!("redis-{n}:{}", 9000 + n)).collect(),
        password: Some(agent_password),
        docker_dns: true,
    })
}

/// REDIS_HA_IMAGE_HAPROXY from the images.env up.sh wrote into the state directory.
fn haproxy_image(state: &Path) -> Result<String, String> {
    let path = state.join("images.env");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("REDIS_HA_IMAGE_HAPROXY="))
        .map(str::to_owned)
        .ok_or_else(|| format!("no REDIS_HA_IMAGE_HAPROXY in {}", path.display()))
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Deploys the classic tcp-check HAProxy (`deploy/stack/classic-haproxy.yml`, benchmarks
/// only) into the running stack `stack`, its client port published on `port`, placed by
/// `placement` (a swarm constraint; `None`: anywhere). Its output goes to stderr.
pub async fn deploy_classic(
    repo: &Path,
    stack: &str,
    port: u16,
    placement: Option<&str>,
) -> Result<(), String> {
    let state = repo.join("deploy/stack/run").join(stack);
    let agent = read_secret(repo, stack, "redis_agent_password")?;
    let cfg = state.join("classic-haproxy.cfg");
    write_private(&cfg, &classic_config(&agent))?;
    let image = haproxy_image(&state)?;
    eprintln!("   docker stack deploy -c deploy/stack/classic-haproxy.yml {stack} (port {port})");
    let mut cmd = Command::new("docker");
    cmd.args(["stack", "deploy", "--resolve-image", "never", "-c"])
        .arg(repo.join("deploy/stack/classic-haproxy.yml"))
        .arg(stack)
        .env("REDIS_HA_IMAGE_HAPROXY", image)
        .env("REDIS_HA_CLASSIC_HAPROXY_CFG", &cfg)
        .env("REDIS_HA_PORT_HAPROXY_CLASSIC", port.to_string())
        .env("REDIS_HA_STACK", stack)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()));
    if let Some(p) = placement {
        cmd.env("REDIS_HA_PLACEMENT_CLASSIC", p);
    }
    let status = cmd
        .status()
        .await
        .map_err(|e| format!("docker stack deploy: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "docker stack deploy of the classic HAProxy: {status}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_answers_count_as_exposure() {
        let egress = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n";
        for kind in [
            ProbeKind::Resp,
            ProbeKind::Http,
            ProbeKind::Runtime,
            ProbeKind::Grpc,
        ] {
            assert!(!kind.answered(b""), "{kind:?}");
            assert!(!kind.answered(egress), "{kind:?}");
        }
        assert!(ProbeKind::Resp.answered(b"-NOAUTH Authentication required.\r\n"));
        assert!(ProbeKind::Resp.answered(b"+PONG\r\n"));
        assert!(ProbeKind::Http
            .answered(b"HTTP/1.0 200 OK\r\n\r\n# TYPE redis_ha_agent_redis_up gauge"));
        assert!(ProbeKind::Runtime.answered(b"Name: HAProxy\nVersion: 2.6"));
        assert!(ProbeKind::Grpc.answered(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3]));
        assert_eq!(ProbeKind::of_port(9122), ProbeKind::Http);
        assert_eq!(ProbeKind::of_port(50051), ProbeKind::Grpc);
        assert_eq!(ProbeKind::of_port(9999), ProbeKind::Runtime);
        assert_eq!(ProbeKind::of_port(19002), ProbeKind::Resp);
        assert_eq!(hex_decode("2d4e4f"), b"-NO");
        assert_eq!(base64_decode("cGFzcw=="), Some(b"pass".to_vec()));
        assert_eq!(base64_decode("YWJj"), Some(b"abc".to_vec()));
    }

    #[test]
    fn a_skip_is_refused_under_ci() {
        assert_eq!(skip_decision(None, None), Ok(false));
        assert_eq!(skip_decision(Some("1"), None), Ok(true));
        assert_eq!(skip_decision(Some("true"), Some("")), Ok(true));
        assert_eq!(skip_decision(Some("0"), Some("true")), Ok(false));
        assert!(skip_decision(Some("1"), Some("true")).is_err());
        assert!(skip_decision(Some("1"), Some("1")).is_err());
    }
}
