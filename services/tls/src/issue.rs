//! The cluster CA and its certificates, in one directory: what to issue ([`wanted`]), whether a
//! certificate already there can stay ([`decide`]), and [`create`], which carries it out.
//!
//! Files: `ca.pem` / `ca-key.pem`, then `<stem>.pem` / `<stem>-key.pem` per identity
//! ([`Identity::file_stem`]: `coordinator`, `reloader`, `operator`, `agent-<node>`). Private keys
//! are written mode 600; certificates 644. A run keeps every certificate that is still right
//! (same identity and names, signed by the CA in the directory, far from expiry), so re-running
//! it changes nothing, and issues the rest.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::{valid_node_id, Identity};

/// The names the coordinator is reached by when none are given: the swarm stack's service
/// names and loopback (local mode, a published port).
pub const DEFAULT_SERVER_NAMES: &[&str] = &[
    "coordinator",
    "tasks.coordinator",
    "localhost",
    "127.0.0.1",
    "::1",
];

/// Default validity of the certificates, and of the CA.
pub const DEFAULT_DAYS: u32 = 365;
pub const CA_DAYS: u32 = 3650;
const DAY_S: i64 = 86_400;
/// The CA certificate's common name.
const CA_NAME: &str = "redis-ha cluster CA";

/// What to create: one agent certificate per node, the coordinator's with these names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub nodes: Vec<String>,
    pub server_names: Vec<String>,
    pub days: u32,
}

impl Plan {
    /// Agents for `nodes`, the default server names and validity.
    pub fn for_nodes<S: AsRef<str>>(nodes: &[S]) -> Self {
        Self {
            nodes: nodes.iter().map(|n| n.as_ref().to_owned()).collect(),
            server_names: DEFAULT_SERVER_NAMES.iter().map(|&s| s.to_owned()).collect(),
            days: DEFAULT_DAYS,
        }
    }
}

/// One certificate to have: the identity and its subject alternative names (sorted; IP
/// addresses in their canonical text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub identity: Identity,
    pub names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("node id {0:?} cannot be part of a certificate (letters, digits, '.', '_', '-')")]
    BadNode(String),
    #[error("node {0:?} is listed twice")]
    DuplicateNode(String),
    #[error("no nodes given")]
    NoNodes,
    #[error("no server names given for the coordinator's certificate")]
    NoServerNames,
    #[error("server name {0:?} is neither a DNS name nor an IP address")]
    BadServerName(String),
    #[error("validity must be at least 1 day")]
    Days,
    #[error("{dir}: {what}: only one of ca.pem and ca-key.pem is there; restore the other or remove both to create a new CA (which re-issues every certificate)")]
    HalfCa { dir: PathBuf, what: String },
    #[error("{path}: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn canonical_name(name: &str) -> Result<String, IssueError> {
    let name = name.trim().trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(IssueError::BadServerName(name.to_owned()))
    }
}

/// Every certificate the plan asks for, in order: coordinator, reloader, operator, the agents.
pub fn wanted(plan: &Plan) -> Result<Vec<Wanted>, IssueError> {
    if plan.days == 0 {
        return Err(IssueError::Days);
    }
    if plan.nodes.is_empty() {
        return Err(IssueError::NoNodes);
    }
    let mut names = plan
        .server_names
        .iter()
        .map(|n| canonical_name(n))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(IssueError::NoServerNames);
    }
    let mut out = vec![
        Wanted {
            identity: Identity::Coordinator,
            names,
        },
        Wanted {
            identity: Identity::Reloader,
            names: Vec::new(),
        },
        Wanted {
            identity: Identity::Operator,
            names: Vec::new(),
        },
    ];
    for (i, node) in plan.nodes.iter().enumerate() {
        if !valid_node_id(node) {
            return Err(IssueError::BadNode(node.clone()));
        }
        if plan.nodes[..i].contains(node) {
            return Err(IssueError::DuplicateNode(node.clone()));
        }
        out.push(Wanted {
            identity: Identity::Agent { node: node.clone() },
            names: Vec::new(),
        });
    }
    Ok(out)
}

/// What an existing certificate says, as far as [`decide`] cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The identity its common name carries (`None`: none).
    pub identity: Option<Identity>,
    /// Its subject alternative names, sorted, in [`wanted`]'s spelling.
    pub names: Vec<String>,
    /// Whether the CA in the directory signed it.
    pub signed_by_ca: bool,
    pub not_after_unix: i64,
    /// Whether its key file holds the key of its public key.
    pub key_matches: bool,
}

/// Whether an existing certificate can stay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Keep,
    Issue(String),
}

/// The reuse rule: keep a certificate with the wanted identity and names, signed by the
/// directory's CA, with its key, and with at least a third of `days` left; otherwise issue
/// it (the reason says why).
pub fn decide(wanted: &Wanted, existing: Option<&Facts>, days: u32, now_unix: i64) -> Action {
    let Some(f) = existing else {
        return Action::Issue("new".into());
    };
    let why = if f.identity.as_ref() != Some(&wanted.identity) {
        "another identity"
    } else if f.names != wanted.names {
        "other names"
    } else if !f.signed_by_ca {
        "not signed by this CA"
    } else if !f.key_matches {
        "key does not match"
    } else if f.not_after_unix - now_unix < i64::from(days) * DAY_S / 3 {
        "expires soon"
    } else {
        return Action::Keep;
    };
    Action::Issue(why.into())
}

/// The files of one directory.
#[derive(Clone, Debug)]
pub struct CertDir {
    pub dir: PathBuf,
}

impl CertDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }

    pub fn cert(&self, who: &Identity) -> PathBuf {
        self.dir.join(format!("{}.pem", who.file_stem()))
    }

    pub fn key(&self, who: &Identity) -> PathBuf {
        self.dir.join(format!("{}-key.pem", who.file_stem()))
    }

    /// The settings with which `who` uses these files.
    pub fn settings(&self, who: &Identity) -> crate::TlsSettings {
        crate::TlsSettings::files(self.ca(), self.cert(who), self.key(who))
    }
}

/// What [`create`] did, per file set: the CA first, then as [`wanted`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub action: Action,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IssueError + '_ {
    move |source| IssueError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `contents` atomically with `mode` (a temporary file renamed over the old one).
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), IssueError> {
    let tmp = path.with_extension("pem.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn read_pem(path: &Path) -> Result<Option<String>, IssueError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

fn der_of(path: &Path, pem_text: &str) -> Result<Vec<u8>, IssueError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).map_err(|e| IssueError::Bad {
            path: path.to_owned(),
            reason: format!("not a PEM certificate: {e}"),
        })?;
    Ok(pem.contents)
}

fn names_of(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => <[u8; 4]>::try_from(*b)
                        .ok()
                        .map(|a| IpAddr::from(a).to_string()),
                    16 => <[u8; 16]>::try_from(*b)
                        .ok()
                        .map(|a| IpAddr::from(a).to_string()),
                    _ => None,
                },
                _ => Some(format!("{n:?}")),
            })
            .collect(),
        _ => Vec::new(),
    };
    out.sort();
    out
}

/// The facts of the certificate at `cert_path` with its key at `key_path`; `None` when
/// either is missing or does not parse (it is then issued anew).
fn facts(
    cert_path: &Path,
    key_path: &Path,
    ca: &X509Certificate<'_>,
) -> Result<Option<Facts>, IssueError> {
    let (Some(pem), Some(key)) = (read_pem(cert_path)?, read_pem(key_path)?) else {
        return Ok(None);
    };
    let Ok(der) = der_of(cert_path, &pem) else {
        return Ok(None);
    };
    let Ok((_, cert)) = X509Certificate::from_der(&der) else {
        return Ok(None);
    };
    let key_matches = KeyPair::from_pem(&key)
        .map(|k| k.public_key_raw() == cert.public_key().subject_public_key.data.as_ref())
        .unwrap_or(false);
    Ok(Some(Facts {
        identity: Identity::from_certificate(&der).ok(),
        names: names_of(&cert),
        signed_by_ca: cert.verify_signature(Some(ca.public_key())).is_ok(),
        not_after_unix: cert.validity().not_after.timestamp(),
        key_matches,
    }))
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back: a peer whose clock is a little behind still accepts it.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

fn new_ca(d: &CertDir) -> Result<(), IssueError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    write_file(&d.ca_key(), &key.serialize_pem(), 0o600)?;
    write_file(&d.ca(), &cert.pem(), 0o644)
}

fn issue(
    d: &CertDir,
    w: &Wanted,
    days: u32,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(), IssueError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(w.names.clone())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, w.identity.common_name());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if w.identity.is_client() {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let cert = params.signed_by(&key, issuer)?;
    // The key first: a certificate is never there without its key.
    write_file(&d.key(&w.identity), &key.serialize_pem(), 0o600)?;
    write_file(&d.cert(&w.identity), &cert.pem(), 0o644)
}

/// Creates (or keeps) the CA and every certificate of `plan` in `dir` (created mode 700 when
/// missing). A new CA means every certificate is issued anew.
pub fn create(dir: &Path, plan: &Plan) -> Result<Vec<Outcome>, IssueError> {
    let wanted = wanted(plan)?;
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    let d = CertDir::new(dir);
    let mut out = Vec::new();
    let (ca_pem, ca_key) = (read_pem(&d.ca())?, read_pem(&d.ca_key())?);
    let (ca_pem, ca_key) = match (ca_pem, ca_key) {
        (Some(c), Some(k)) => {
            out.push(Outcome {
                name: "ca".into(),
                action: Action::Keep,
            });
            (c, k)
        }
        (None, None) => {
            new_ca(&d)?;
            out.push(Outcome {
                name: "ca".into(),
                action: Action::Issue("new".into()),
            });
            let c = read_pem(&d.ca())?.unwrap_or_default();
            let k = read_pem(&d.ca_key())?.unwrap_or_default();
            (c, k)
        }
        (c, _) => {
            return Err(IssueError::HalfCa {
                dir: dir.to_owned(),
                what: if c.is_some() {
                    "ca-key.pem is missing".into()
                } else {
                    "ca.pem is missing".into()
                },
            })
        }
    };
    let ca_der = der_of(&d.ca(), &ca_pem)?;
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).map_err(|e| IssueError::Bad {
        path: d.ca(),
        reason: e.to_string(),
    })?;
    let ca_keypair = KeyPair::from_pem(&ca_key).map_err(|e| IssueError::Bad {
        path: d.ca_key(),
        reason: e.to_string(),
    })?;
    if ca_keypair.public_key_raw() != ca_cert.public_key().subject_public_key.data.as_ref() {
        return Err(IssueError::Bad {
            path: d.ca_key(),
            reason: "is not the key of ca.pem".into(),
        });
    }
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_keypair)?;
    let now = now_unix();
    for w in &wanted {
        let existing = facts(&d.cert(&w.identity), &d.key(&w.identity), &ca_cert)?;
        let action = decide(w, existing.as_ref(), plan.days, now);
        if action != Action::Keep {
            issue(&d, w, plan.days, &issuer)?;
        }
        out.push(Outcome {
            name: w.identity.file_stem(),
            action,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn plan() -> Plan {
        Plan::for_nodes(&["node-1", "node-2"])
    }

    #[test]
    fn what_is_issued() {
        let w = wanted(&plan()).unwrap();
        let ids: Vec<String> = w.iter().map(|w| w.identity.common_name()).collect();
        assert_eq!(
            ids,
            [
                "coordinator",
                "reloader",
                "operator",
                "agent.node-1",
                "agent.node-2"
            ]
        );
        assert_eq!(
            w[0].names,
            [
                "127.0.0.1",
                "::1",
                "coordinator",
                "localhost",
                "tasks.coordinator"
            ]
        );
        assert!(w[1..].iter().all(|w| w.names.is_empty()));
        let mut p = plan();
        p.nodes.push("node-1".into());
        assert!(matches!(wanted(&p), Err(IssueError::DuplicateNode(_))));
        p.nodes = vec!["a/b".into()];
        assert!(matches!(wanted(&p), Err(IssueError::BadNode(_))));
        p.nodes.clear();
        assert!(matches!(wanted(&p), Err(IssueError::NoNodes)));
        let mut p = plan();
        p.server_names = vec!["bad name".into()];
        assert!(matches!(wanted(&p), Err(IssueError::BadServerName(_))));
        p.server_names = vec!["[::1]".into(), "Coordinator".into()];
        assert_eq!(wanted(&p).unwrap()[0].names, ["::1", "coordinator"]);
    }

    #[test]
    fn the_reuse_rule() {
        let w = &wanted(&plan()).unwrap()[3];
        let good = Facts {
            identity: Some(w.identity.clone()),
            names: Vec::new(),
            signed_by_ca: true,
            not_after_unix: 1000 * DAY_S,
            key_matches: true,
        };
        let now = 0;
        assert_eq!(decide(w, Some(&good), 365, now), Action::Keep);
        assert_eq!(decide(w, None, 365, now), Action::Issue("new".into()));
        type Change = fn(&mut Facts);
        let cases: [(&str, Change); 6] = [
            ("another identity", |f| {
                f.identity = Some(Identity::Operator)
            }),
            ("another identity", |f| f.identity = None),
            ("other names", |f| f.names = vec!["x".into()]),
            ("not signed by this CA", |f| f.signed_by_ca = false),
            ("key does not match", |f| f.key_matches = false),
            ("expires soon", |f| f.not_after_unix = 100 * DAY_S),
        ];
        for (why, change) in cases {
            let mut f = good.clone();
            change(&mut f);
            assert_eq!(decide(w, Some(&f), 365, now), Action::Issue(why.into()));
        }
        // A third of the validity left is still enough.
        let mut f = good;
        f.not_after_unix = 365 * DAY_S / 3;
        assert_eq!(decide(w, Some(&f), 365, now), Action::Keep);
    }

    #[test]
    fn creates_keeps_and_reissues() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let first = create(&dir, &plan()).unwrap();
        assert_eq!(first.len(), 6);
        assert!(first.iter().all(|o| matches!(o.action, Action::Issue(_))));
        let d = CertDir::new(&dir);
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.clone()), 0o700);
        assert_eq!(mode(d.ca_key()), 0o600);
        let a1 = Identity::agent("node-1").unwrap();
        assert_eq!(mode(d.key(&a1)), 0o600);
        assert_eq!(mode(d.cert(&a1)), 0o644);
        // The certificate names its identity.
        let pem = fs::read_to_string(d.cert(&a1)).unwrap();
        let der = der_of(&d.cert(&a1), &pem).unwrap();
        assert_eq!(Identity::from_certificate(&der).unwrap(), a1);

        // Again: nothing changes.
        let before = fs::read(d.cert(&a1)).unwrap();
        let again = create(&dir, &plan()).unwrap();
        assert!(again.iter().all(|o| o.action == Action::Keep), "{again:?}");
        assert_eq!(fs::read(d.cert(&a1)).unwrap(), before);

        // A new node, other server names, a lost key: only those are issued.
        let mut p = plan();
        p.nodes.push("node-3".into());
        p.server_names.push("coordinator.example".into());
        fs::remove_file(d.key(&Identity::Reloader)).unwrap();
        let third = create(&dir, &p).unwrap();
        let issued: Vec<&str> = third
            .iter()
            .filter(|o| o.action != Action::Keep)
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(issued, ["coordinator", "reloader", "agent-node-3"]);
        assert_eq!(fs::read(d.cert(&a1)).unwrap(), before);

        // A new CA re-issues everything.
        fs::remove_file(d.ca()).unwrap();
        assert!(matches!(create(&dir, &p), Err(IssueError::HalfCa { .. })));
        fs::remove_file(d.ca_key()).unwrap();
        let fourth = create(&dir, &p).unwrap();
        assert!(fourth.iter().all(|o| matches!(o.action, Action::Issue(_))));
        let fifth = create(&dir, &p).unwrap();
        assert!(fifth.iter().all(|o| o.action == Action::Keep));
    }
}
