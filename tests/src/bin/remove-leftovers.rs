//! `cargo run -p redis-ha-tests --bin remove-leftovers`: removes what an earlier multi-node run
//! left on this machine when it was stopped before its teardown (tests/run.sh runs it before the
//! Docker tests). A run killed with its rig's managers in the swarm left the swarm without a
//! leader, and every stack test after it failed.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match redis_ha_tests::multinode::remove_leftovers().await {
        Ok(removed) if removed.is_empty() => {
            println!("no leftovers of an earlier multi-node run");
            ExitCode::SUCCESS
        }
        Ok(removed) => {
            println!("removed what an earlier multi-node run left: {removed:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("remove-leftovers: {e}");
            ExitCode::FAILURE
        }
    }
}
