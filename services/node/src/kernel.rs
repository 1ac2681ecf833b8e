//! Whether this kernel can encrypt Docker's overlay networks (`driver_opts: encrypted`): the
//! swarm then sets up IPsec ESP transport with AES-GCM between the nodes (xfrm states and
//! policies through netlink) and drops unencrypted VXLAN with an iptables `policy` match. Each
//! of those needs its kernel option built in (`y`) or as a module (`m`). Decided from the
//! kernel's configuration (`/proc/config.gz` or `/boot/config-<release>`); `deploy/up.sh`
//! adds `deploy/stack/encrypted.yml` only on a yes.

/// The options and what each is for.
pub const REQUIRED: [(&str, &str); 4] = [
    (
        "CONFIG_XFRM_USER",
        "xfrm netlink (IPsec states and policies)",
    ),
    ("CONFIG_INET_ESP", "IPsec ESP"),
    ("CONFIG_CRYPTO_GCM", "AES-GCM (rfc4106)"),
    (
        "CONFIG_NETFILTER_XT_MATCH_POLICY",
        "the iptables policy match (drops unencrypted VXLAN)",
    ),
];

/// The answer, with the reason when it is not a yes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encryption {
    Supported,
    /// The options this kernel lacks.
    Missing(Vec<&'static str>),
    /// No kernel configuration to read.
    Unknown,
}

/// The answer for a kernel configuration's text (`None`: none could be read).
pub fn overlay_encryption(config: Option<&str>) -> Encryption {
    let Some(config) = config.filter(|c| !c.trim().is_empty()) else {
        return Encryption::Unknown;
    };
    let has = |opt: &str| {
        config.lines().any(|l| {
            l.trim()
                .strip_prefix(opt)
                .and_then(|rest| rest.strip_prefix('='))
                .is_some_and(|v| matches!(v.trim(), "y" | "m"))
        })
    };
    let missing: Vec<&'static str> = REQUIRED
        .iter()
        .filter(|(opt, _)| !has(opt))
        .map(|(opt, _)| *opt)
        .collect();
    if missing.is_empty() {
        Encryption::Supported
    } else {
        Encryption::Missing(missing)
    }
}

impl std::fmt::Display for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encryption::Supported => f.write_str("this kernel can encrypt the overlay networks"),
            Encryption::Missing(opts) => {
                let why: Vec<String> = opts
                    .iter()
                    .map(|o| {
                        let what = REQUIRED
                            .iter()
                            .find(|(r, _)| r == o)
                            .map_or("", |(_, w)| *w);
                        format!("{o} ({what})")
                    })
                    .collect();
                write!(f, "this kernel lacks {}", why.join(", "))
            }
            Encryption::Unknown => {
                f.write_str("no kernel configuration found (/proc/config.gz, /boot/config-*)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "CONFIG_XFRM=y\nCONFIG_XFRM_USER=y\nCONFIG_INET_ESP=m\n\
                        CONFIG_CRYPTO_GCM=y\nCONFIG_NETFILTER_XT_MATCH_POLICY=m\n";

    #[test]
    fn every_option_built_in_or_a_module() {
        assert_eq!(overlay_encryption(Some(FULL)), Encryption::Supported);
    }

    #[test]
    fn a_missing_or_unset_option_is_named() {
        // As this build machine's kernel: no ESP, no GCM.
        let text = "CONFIG_XFRM_USER=y\n# CONFIG_INET_ESP is not set\nCONFIG_INET_ESPINTCP=y\n\
                    # CONFIG_CRYPTO_GCM is not set\nCONFIG_NETFILTER_XT_MATCH_POLICY=y\n";
        let e = overlay_encryption(Some(text));
        assert_eq!(
            e,
            Encryption::Missing(vec!["CONFIG_INET_ESP", "CONFIG_CRYPTO_GCM"])
        );
        assert!(e.to_string().contains("CONFIG_INET_ESP (IPsec ESP)"), "{e}");
        let n = overlay_encryption(Some(
            &FULL.replace("CONFIG_XFRM_USER=y", "CONFIG_XFRM_USER=n"),
        ));
        assert_eq!(n, Encryption::Missing(vec!["CONFIG_XFRM_USER"]));
        assert_eq!(overlay_encryption(None), Encryption::Unknown);
        assert_eq!(overlay_encryption(Some(" \n")), Encryption::Unknown);
    }
}
