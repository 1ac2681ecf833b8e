//! `redis-ha chaos ACTION NODE`: fault a Redis node of the swarm stack through the Docker API
//! (see [`crate::chaos::docker`]).

use clap::Args;

use crate::chaos::docker::{ChaosAction, DockerChaos, DockerError, NodeNum, DEFAULT_STACK};
use crate::error::Error;

#[derive(Debug, Args)]
#[command(after_help = "\
Node N is the running container of the swarm service <stack>_redis-N on THIS Docker host
(label com.docker.swarm.service.name); run the command on the swarm node that runs it.

  stop     docker stop (SIGTERM, SIGKILL after the grace period). The swarm's restart policy
           starts a new task a few seconds later, which rejoins as a replica.
  kill     SIGKILL (a crash); the swarm starts a new task likewise.
  pause    freeze the container (a hung node: its sockets stay open, nothing answers).
  unpause  thaw it.
  isolate  disconnect it from <stack>_internal (a partition from the Sentinels, agents, HAProxy).
  heal     reconnect it to <stack>_internal and stop it: the swarm's DNS name of a task
           (redis-N) does not come back with a reconnect, so the swarm replaces the task,
           which rejoins as a replica.
  start    undo whatever fault the node is in (unpause, reconnect); when it has no live
           container (stopped, or scaled to 0), scale the service back to 1 and force an
           update so the swarm starts a task now instead of after its restart delay.

Exit codes: 0 done, 1 Docker refused or the node is not in a state for the action,
2 the Docker daemon or the node's service was not found.")]
pub struct ChaosArgs {
    /// What to do.
    #[arg(value_enum)]
    pub action: ChaosAction,
    /// The node: 1, 2, 3 (or redis-1 .. redis-3).
    #[arg(value_parser = parse_node)]
    pub node: NodeNum,
    /// The swarm stack name deploy/up.sh used.
    #[arg(long, env = "REDIS_HA_STACK", default_value = DEFAULT_STACK, value_name = "NAME")]
    pub stack: String,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_node(s: &str) -> Result<NodeNum, String> {
    s.parse().map_err(|e: DockerError| e.to_string())
}

pub async fn run(args: &ChaosArgs) -> Result<(), Error> {
    let chaos = DockerChaos::connect(&args.stack).await?;
    let outcome = chaos.apply(args.action, args.node).await?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        println!("{}: {}", outcome.node, outcome.message);
    }
    Ok(())
}
