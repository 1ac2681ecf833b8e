//! `redis-ha certs create`: the cluster CA and the control plane's certificates, by
//! [`redis_ha_tls::issue`] (what is issued and what is kept is decided there).

use std::io::Write as _;

use redis_ha_tls::issue::{self, Action, Plan};

use crate::cli::CertsCreateArgs;
use crate::error::CliError;

pub fn create(args: &CertsCreateArgs) -> Result<(), CliError> {
    let mut plan = Plan::for_nodes(&args.nodes);
    if !args.server_names.is_empty() {
        plan.server_names.clone_from(&args.server_names);
    }
    plan.days = args.days;
    let outcomes = issue::create(&args.dir, &plan)?;
    let mut out = std::io::stdout().lock();
    for o in outcomes {
        match o.action {
            Action::Keep => writeln!(out, "{}: kept", o.name)?,
            Action::Issue(why) => writeln!(out, "{}: issued ({why})", o.name)?,
        }
    }
    Ok(())
}
