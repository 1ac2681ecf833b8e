//! Rotating a Redis ACL user's password without a failed command: a user may hold two
//! passwords, so a rotation is three phases, each applied to every node (ACLs are not
//! replicated) and every Sentinel:
//!
//! 1. **add** the new password beside the old one (`ACL SETUSER <user> >new`);
//! 2. **switch** the user's clients to it: for the users whose clients are ours to switch,
//!    done here (`replication`: every node's `masterauth`; `sentinel`: every Sentinel's
//!    `auth-pass`); for the others (`app`, `agent`, `simulator`) the operator points the
//!    clients at the new secret (connections already logged in stay logged in);
//! 3. **remove** the old password (`ACL SETUSER <user> <old`).
//!
//! Every change on a node is followed by `CONFIG REWRITE`, so a restart keeps it. What the
//! phases send is [`plan`], a pure function; `redis-ha-node rotate-secret` carries it out.

use std::fmt;

use redis_ha_common::Secret;

use crate::acl::User;

/// One phase of a rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Add,
    Switch,
    Remove,
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "add" => Ok(Phase::Add),
            "switch" => Ok(Phase::Switch),
            "remove" => Ok(Phase::Remove),
            _ => Err(format!("expected add, switch or remove, got {s:?}")),
        }
    }
}

/// Who a step goes to: every Redis node, or every Sentinel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Redis,
    Sentinel,
}

/// One argument of a command: a word, or the password (never shown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Word(String),
    /// The password, prefixed (`>` to add, `<` to remove, nothing to set).
    Password(&'static str),
}

/// One command, sent to every instance of its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub target: Target,
    pub args: Vec<Arg>,
}

impl Step {
    fn new(target: Target, args: &[Arg]) -> Self {
        Self {
            target,
            args: args.to_vec(),
        }
    }

    /// The command with the password as `***`: what logs and errors show.
    pub fn label(&self) -> String {
        self.args
            .iter()
            .map(|a| match a {
                Arg::Word(w) => w.clone(),
                Arg::Password(prefix) => format!("{prefix}***"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command to send, with `password` in place.
    pub fn command(&self, password: &Secret) -> redis::Cmd {
        let mut words = self.args.iter();
        let first = match words.next() {
            Some(Arg::Word(w)) => w.as_str(),
            _ => "",
        };
        let mut cmd = redis::cmd(first);
        for a in words {
            match a {
                Arg::Word(w) => cmd.arg(w),
                Arg::Password(prefix) => cmd.arg(format!("{prefix}{}", password.expose())),
            };
        }
        cmd
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to = match self.target {
            Target::Redis => "every node",
            Target::Sentinel => "every Sentinel",
        };
        write!(f, "{} ({to})", self.label())
    }
}

fn w(s: &str) -> Arg {
    Arg::Word(s.to_owned())
}

/// What `phase` of rotating `user`'s password sends (the password is the new one for add and
/// switch, the old one for remove). A switch of a user whose clients are not ours sends
/// nothing.
pub fn plan(user: User, phase: Phase, group: &str) -> Vec<Step> {
    let rewrite = Step::new(Target::Redis, &[w("CONFIG"), w("REWRITE")]);
    let setuser = |prefix| {
        Step::new(
            Target::Redis,
            &[
                w("ACL"),
                w("SETUSER"),
                w(user.name()),
                Arg::Password(prefix),
            ],
        )
    };
    match (phase, user) {
        (Phase::Add, _) => vec![setuser(">"), rewrite],
        (Phase::Remove, _) => vec![setuser("<"), rewrite],
        // A replica authenticates when it (re)connects: existing links stay up, the next
        // one uses the new password.
        (Phase::Switch, User::Replication) => vec![
            Step::new(
                Target::Redis,
                &[w("CONFIG"), w("SET"), w("masterauth"), Arg::Password("")],
            ),
            rewrite,
        ],
        // Sentinel rewrites its own config on SENTINEL SET.
        (Phase::Switch, User::Sentinel) => vec![Step::new(
            Target::Sentinel,
            &[
                w("SENTINEL"),
                w("SET"),
                w(group),
                w("auth-pass"),
                Arg::Password(""),
            ],
        )],
        (Phase::Switch, User::App | User::Agent | User::Simulator | User::Coordinator) => {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_then_remove_on_every_node_each_rewritten() {
        for user in User::ALL {
            let add = plan(user, Phase::Add, "g");
            assert_eq!(
                add.iter().map(Step::label).collect::<Vec<_>>(),
                [
                    format!("ACL SETUSER {user} >***"),
                    "CONFIG REWRITE".to_owned()
                ]
            );
            assert!(add.iter().all(|s| s.target == Target::Redis));
            let remove = plan(user, Phase::Remove, "g");
            assert_eq!(remove[0].label(), format!("ACL SETUSER {user} <***"));
            assert_eq!(remove.len(), 2);
        }
    }

    #[test]
    fn switch_is_ours_for_replication_and_sentinel_only() {
        let r = plan(User::Replication, Phase::Switch, "g");
        assert_eq!(r[0].label(), "CONFIG SET masterauth ***");
        assert_eq!(r[1].label(), "CONFIG REWRITE");
        let s = plan(User::Sentinel, Phase::Switch, "grp");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].target, Target::Sentinel);
        assert_eq!(s[0].label(), "SENTINEL SET grp auth-pass ***");
        for u in [User::App, User::Agent, User::Simulator, User::Coordinator] {
            assert!(plan(u, Phase::Switch, "g").is_empty());
        }
    }

    #[test]
    fn the_password_goes_into_the_command_never_into_the_label() {
        let step = &plan(User::App, Phase::Add, "g")[0];
        let cmd = step.command(&Secret::new("n3w"));
        let packed = String::from_utf8_lossy(&cmd.get_packed_command()).into_owned();
        assert!(packed.contains(">n3w"), "{packed}");
        assert!(!step.label().contains("n3w") && !step.to_string().contains("n3w"));
        assert_eq!("remove".parse::<Phase>(), Ok(Phase::Remove));
        assert!("drop".parse::<Phase>().is_err());
    }
}
