//! `redis-ha master [--addr]`: a drop-in for `redis-cli -p 19001 sentinel
//! get-master-addr-by-name NAME` in scripts (piped, redis-cli prints the host line, then the port line).

use redis_ha_common::HostPort;

use crate::cli::MasterArgs;
use crate::client::Target;
use crate::error::CliError;
use crate::output::emit;

/// The text to print for `address`: `host\nport\n`, or `host:port\n` with `--addr`.
pub fn format_master(address: &str, addr_form: bool) -> Result<String, CliError> {
    let hp: HostPort = address
        .parse()
        .map_err(
            |e: redis_ha_common::addr::AddrError| CliError::BadMasterAddress {
                address: address.to_owned(),
                reason: e.to_string(),
            },
        )?;
    Ok(if addr_form {
        format!("{hp}\n")
    } else {
        format!("{}\n{}\n", hp.host, hp.port)
    })
}

pub async fn run(target: &Target, args: &MasterArgs) -> Result<(), CliError> {
    let topology = super::status::fetch(target).await?;
    if topology.master_address.is_empty() {
        return Err(CliError::NoMaster {
            group: target.group.clone(),
            hint: if topology.failover_in_progress {
                " (a failover is in progress; retry in a few seconds)"
            } else {
                ""
            },
        });
    }
    emit(&format_master(&topology.master_address, args.addr)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_lines_like_redis_cli_piped() {
        assert_eq!(
            format_master("127.0.0.1:9001", false).unwrap(),
            "127.0.0.1\n9001\n"
        );
        assert_eq!(
            format_master("127.0.0.1:9001", true).unwrap(),
            "127.0.0.1:9001\n"
        );
        assert_eq!(format_master("[::1]:9001", false).unwrap(), "::1\n9001\n");
        assert_eq!(format_master("[::1]:9001", true).unwrap(), "[::1]:9001\n");
        assert!(format_master("nonsense", false).is_err());
    }
}
