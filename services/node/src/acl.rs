//! Who may do what on a Redis node: the ACL users, their rules, which secret file holds each
//! one's password, and the config lines that create them. The only place these rules live: the
//! stack's generated config ([`crate::redis_conf::render`]) and the test kit's rendering of the
//! shipped template (`tests/kit/src/conf.rs`) both call [`render`].
//!
//! The `default` user is the operator's (admin, `requirepass`, every command): no application,
//! Sentinel or sidecar is given its password. Every other user may hold up to two passwords,
//! which is how a password is rotated without a failed command ([`crate::rotate`]).

use std::fmt;

use redis_ha_common::Secret;

use crate::redis_conf::quote;

/// The prefix of the channels Sentinels talk on (`__sentinel__:hello`): an application that
/// could publish there could announce a fake Sentinel or master.
pub const SENTINEL_CHANNELS: &str = "__sentinel__:";

/// The secret file (a Docker secret's name; a file of that name in local mode) of the `default`
/// user, the operator's.
pub const ADMIN_SECRET: &str = "redis_admin_password";

/// The secret file of the Sentinels' own password (Sentinel's `requirepass` and
/// `sentinel-pass`), which every sidecar that asks a Sentinel uses.
pub const SENTINEL_SERVER_SECRET: &str = "sentinel_password";

/// A Redis ACL user of the deployment (besides `default`, the operator's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum User {
    /// Applications, through HAProxy: data commands only.
    App,
    /// A replica's link to its master (`masteruser`).
    Replication,
    /// The Sentinels' link to every node (`sentinel auth-user`).
    Sentinel,
    /// The health agent (and the node start-up helper's peer probe).
    Agent,
    /// `redis-ha simulate`: data commands and `WAIT`.
    Simulator,
    /// The coordinator's switchover: pause and resume writes, read offsets, steer Sentinel's
    /// choice (`replica-priority`), make the old master a replica.
    Coordinator,
}

impl User {
    pub const ALL: [User; 6] = [
        User::App,
        User::Replication,
        User::Sentinel,
        User::Agent,
        User::Simulator,
        User::Coordinator,
    ];

    /// The user's name in Redis.
    pub fn name(self) -> &'static str {
        match self {
            User::App => "app",
            User::Replication => "replication",
            User::Sentinel => "sentinel",
            User::Agent => "agent",
            User::Simulator => "simulator",
            User::Coordinator => "coordinator",
        }
    }

    /// The user named `name`, if it is one of ours.
    pub fn from_name(name: &str) -> Option<User> {
        User::ALL.into_iter().find(|u| u.name() == name)
    }

    /// The secret file holding its password.
    pub fn secret_file(self) -> &'static str {
        match self {
            User::App => "redis_app_password",
            User::Replication => "redis_replication_password",
            User::Sentinel => "redis_sentinel_password",
            User::Agent => "redis_agent_password",
            User::Simulator => "redis_simulator_password",
            User::Coordinator => "redis_coordinator_password",
        }
    }

    /// Its rules, after `reset` (no command, no key, no channel, no password) and `on`.
    pub fn rules(self) -> Vec<String> {
        let words: &[&str] = match self {
            // Every data command on every key; nothing that reconfigures, stops, replicates,
            // watches or fails over the node, nor the Sentinels' channels (below). @admin and
            // @dangerous hold all of those; the explicit list keeps them out should a future
            // Redis move one to another category.
            User::App | User::Simulator => &[
                "~*",
                "+@all",
                "-@admin",
                "-@dangerous",
                "-config",
                "-replicaof",
                "-slaveof",
                "-shutdown",
                "-debug",
                "-failover",
                "-client|kill",
                "-monitor",
                "-acl",
            ],
            // What a replica sends its master (Redis's documented replica user).
            User::Replication => &["-@all", "+psync", "+replconf", "+ping"],
            // Redis's documented Sentinel user: its pings, INFO, the hello channel, and the
            // promotion / re-pointing transaction.
            User::Sentinel => &[
                "allchannels",
                "-@all",
                "+multi",
                "+exec",
                "+slaveof",
                "+ping",
                "+subscribe",
                "+publish",
                "+config|rewrite",
                "+role",
                "+info",
                "+client|setname",
                "+client|kill",
                "+script|kill",
            ],
            // Exactly what the agent sends (services/health-agent/src/probe.rs): PING, ROLE,
            // INFO, and REPLICAOF to fence a stray master and to follow a promotion.
            User::Agent => &["-@all", "+ping", "+role", "+info", "+replicaof"],
            // Exactly what the switchover sends (services/coordinator/src/switchover.rs):
            // CLIENT PAUSE / UNPAUSE around the handover, INFO and ROLE for offsets and roles,
            // REPLICAOF for the old master, and CONFIG SET / REWRITE of `replica-priority` on
            // the replicas that must not be chosen. Redis cannot narrow CONFIG SET to one
            // parameter (first-argument rules do not apply to subcommands): this user can
            // reconfigure a node, but reads and writes no key and no channel.
            User::Coordinator => &[
                "-@all",
                "+ping",
                "+role",
                "+info",
                "+replicaof",
                "+client|pause",
                "+client|unpause",
                "+config|set",
                "+config|rewrite",
            ],
        };
        let mut rules: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        match self {
            User::App => rules.extend(channels_except(SENTINEL_CHANNELS)),
            // The simulator waits for its pushes to reach the replicas and reads how many
            // there are (INFO replication) before a durable run.
            User::Simulator => {
                rules.extend(channels_except(SENTINEL_CHANNELS));
                rules.extend(["+wait".to_owned(), "+info".to_owned()]);
            }
            _ => {}
        }
        rules
    }
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A glob pattern matching `c` literally (Redis's `stringmatchlen`: `\` escapes).
fn glob_literal(c: char) -> String {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// ACL channel patterns (`&...`) that together allow every channel **not** starting with
/// `prefix`: ACL patterns can only allow, so the complement is spelt out. A channel that does
/// not start with the prefix either is a shorter, non-empty prefix of it (allowed literally),
/// or first differs from it at some position i (allowed by `prefix[..i]` then `[^prefix[i]]*`).
/// PSUBSCRIBE is allowed only with one of these patterns literally (Redis's rule for patterns).
pub fn channels_except(prefix: &str) -> Vec<String> {
    let chars: Vec<char> = prefix.chars().collect();
    let mut out = Vec::with_capacity(chars.len() * 2);
    for i in 0..chars.len() {
        let head: String = chars[..i].iter().map(|c| glob_literal(*c)).collect();
        let c = chars[i];
        let not_c = if matches!(c, ']' | '\\' | '^') {
            format!("\\{c}")
        } else {
            c.to_string()
        };
        out.push(format!("&{head}[^{not_c}]*"));
        if i > 0 {
            out.push(format!("&{head}"));
        }
    }
    out
}

/// The passwords of one user: the current one first; a second one while a rotation runs.
#[derive(Clone, Debug)]
pub struct UserPasswords {
    pub user: User,
    pub passwords: Vec<Secret>,
}

/// Everything the ACL lines need: the operator's password and every user's.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub admin: Secret,
    pub users: Vec<UserPasswords>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AclError {
    #[error("no password for the Redis user {0}")]
    Missing(User),
    #[error("the password of {0} holds a line break")]
    LineBreak(String),
}

impl Credentials {
    /// The passwords of `user`.
    pub fn of(&self, user: User) -> Result<&[Secret], AclError> {
        self.users
            .iter()
            .find(|u| u.user == user && !u.passwords.is_empty())
            .map(|u| u.passwords.as_slice())
            .ok_or(AclError::Missing(user))
    }

    /// Every user has a password, and no password breaks the config line it goes into.
    pub fn check(&self) -> Result<(), AclError> {
        let breaks = |s: &Secret| s.expose().contains(['\n', '\r']);
        if breaks(&self.admin) {
            return Err(AclError::LineBreak("the default (admin) user".into()));
        }
        for user in User::ALL {
            if self.of(user)?.iter().any(breaks) {
                return Err(AclError::LineBreak(user.to_string()));
            }
        }
        Ok(())
    }
}

/// The `user` line of one user: `reset`, `on`, a `>password` per password, its rules.
pub fn user_line(user: User, passwords: &[Secret]) -> String {
    let mut words = vec![
        "user".to_owned(),
        user.name().to_owned(),
        "reset".into(),
        "on".into(),
    ];
    words.extend(passwords.iter().map(|p| quote(&format!(">{}", p.expose()))));
    words.extend(user.rules());
    words.join(" ")
}

/// The config lines: the operator's password on `default`, how this node authenticates to its
/// master (`masteruser` / `masterauth`, the replication user's current password: any node may
/// become a replica), and every user.
pub fn render(c: &Credentials) -> Result<String, AclError> {
    c.check()?;
    let replication = c.of(User::Replication)?;
    let mut out = String::new();
    out.push_str(&format!("requirepass {}\n", quote(c.admin.expose())));
    out.push_str(&format!("masteruser {}\n", User::Replication.name()));
    out.push_str(&format!("masterauth {}\n", quote(replication[0].expose())));
    for user in User::ALL {
        out.push_str(&user_line(user, c.of(user)?));
        out.push('\n');
    }
    Ok(out)
}

/// The Sentinel's lines: its own password (clients and the other Sentinels, which use the
/// same), and how it authenticates to the Redis nodes (the `sentinel` user).
pub fn render_sentinel(group: &str, sentinel_server: &Secret, sentinel_user: &Secret) -> String {
    let own = quote(sentinel_server.expose());
    format!(
        "requirepass {own}\nsentinel sentinel-pass {own}\nsentinel auth-user {group} {}\nsentinel auth-pass {group} {}\n",
        User::Sentinel.name(),
        quote(sentinel_user.expose())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Redis's glob for the forms [`channels_except`] writes: literals (`\` escapes), `[^c]`
    /// and a trailing `*`.
    fn matches(pattern: &str, s: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let s: Vec<char> = s.chars().collect();
        fn go(p: &[char], s: &[char]) -> bool {
            match p {
                [] => s.is_empty(),
                ['*'] => true,
                ['\\', c, rest @ ..] => s.first() == Some(c) && go(rest, &s[1..]),
                ['[', '^', '\\', c, ']', rest @ ..] | ['[', '^', c, ']', rest @ ..] => {
                    s.first().is_some_and(|x| x != c) && go(rest, &s[1..])
                }
                [c, rest @ ..] => s.first() == Some(c) && go(rest, &s[1..]),
            }
        }
        go(&p, &s)
    }

    fn allowed(prefix: &str, channel: &str) -> bool {
        channels_except(prefix)
            .iter()
            .any(|p| matches(p.trim_start_matches('&'), channel))
    }

    #[test]
    fn the_sentinel_channels_are_out_every_other_channel_in() {
        for no in ["__sentinel__:hello", "__sentinel__:", "__sentinel__:x:y"] {
            assert!(!allowed(SENTINEL_CHANNELS, no), "{no}");
        }
        for yes in [
            "news",
            "_",
            "__sentinel__",
            "__sentinel_:hello",
            "__keyspace@0__:k",
            "x__sentinel__:hello",
        ] {
            assert!(allowed(SENTINEL_CHANNELS, yes), "{yes}");
        }
    }

    proptest! {
        #[test]
        fn channels_except_is_exactly_the_complement(
            prefix in "[a-c_:\\]\\[*?^]{1,6}",
            channel in "[a-c_:\\]\\[*?^]{1,8}",
        ) {
            prop_assert_eq!(allowed(&prefix, &channel), !channel.starts_with(&prefix));
        }
    }

    fn secret(s: &str) -> Secret {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pw");
        std::fs::write(&p, s).expect("write");
        Secret::from_file("pw", &p).expect("secret")
    }

    fn creds() -> Credentials {
        Credentials {
            admin: secret("adm"),
            users: User::ALL
                .into_iter()
                .map(|u| UserPasswords {
                    user: u,
                    passwords: vec![secret(&format!("{u}-1")), secret(&format!("{u} \"2"))],
                })
                .collect(),
        }
    }

    #[test]
    fn renders_every_user_with_both_passwords_and_the_replication_login() {
        let text = render(&creds()).expect("renders");
        assert!(
            text.starts_with(
                "requirepass \"adm\"\nmasteruser replication\nmasterauth \"replication-1\"\n"
            ),
            "{text}"
        );
        for u in User::ALL {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("user {} reset on ", u.name())))
                .unwrap_or_else(|| panic!("{u} missing in {text}"));
            assert!(
                line.contains(&format!("\">{u}-1\" \">{u} \\\"2\"")),
                "{line}"
            );
        }
        let app = user_line(User::App, &[secret("p")]);
        assert!(
            app.contains(" -@admin -@dangerous ") && app.contains(" &[^_]* "),
            "{app}"
        );
        assert!(!app.contains("&*") && !app.contains("allchannels"), "{app}");
        let agent = user_line(User::Agent, &[secret("p")]);
        assert!(
            agent.ends_with(" -@all +ping +role +info +replicaof"),
            "{agent}"
        );
    }

    #[test]
    fn a_missing_user_or_a_line_break_is_refused() {
        let mut c = creds();
        c.users.retain(|u| u.user != User::Agent);
        assert_eq!(render(&c).unwrap_err(), AclError::Missing(User::Agent));
        let mut c = creds();
        c.users[0].passwords = vec![secret("a\nb")];
        assert!(matches!(render(&c), Err(AclError::LineBreak(_))));
        assert_eq!(User::from_name("simulator"), Some(User::Simulator));
        assert_eq!(User::from_name("coordinator"), Some(User::Coordinator));
        assert_eq!(User::from_name("default"), None);
    }

    #[test]
    fn sentinel_lines() {
        let t = render_sentinel("g", &secret("own"), &secret("usr"));
        assert_eq!(
            t,
            "requirepass \"own\"\nsentinel sentinel-pass \"own\"\nsentinel auth-user g sentinel\nsentinel auth-pass g \"usr\"\n"
        );
    }
}
