//! `@NAME@` placeholders in the shipped configuration templates: what a placeholder is and how
//! a template is filled, for the node start-up (which renders the Sentinel template in the
//! images) and the test kit (which renders the local templates as `deploy/up.sh --local` does).

use std::collections::BTreeSet;

/// Placeholders a template still holds after it was filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placeholders left unfilled in the template: {}", names.iter().map(|n| format!("@{n}@")).collect::<Vec<_>>().join(", "))]
pub struct Unfilled {
    pub names: BTreeSet<String>,
}

/// The `@NAME@` placeholders of `text` (NAME of upper-case letters and `_`); any other `@`
/// (an e-mail address, a lone `@`) is text.
pub fn placeholders(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find('@') {
        let after = &rest[start + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .unwrap_or(after.len());
        if len > 0 && after[len..].starts_with('@') {
            found.insert(after[..len].to_owned());
            rest = &after[len + 1..];
        } else {
            rest = after;
        }
    }
    found
}

/// `text` with every `@NAME@` of `values` replaced by its value; fails naming every
/// placeholder left unfilled.
pub fn fill(text: &str, values: &[(&str, String)]) -> Result<String, Unfilled> {
    let mut out = text.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("@{name}@"), value);
    }
    let names = placeholders(&out);
    if names.is_empty() {
        Ok(out)
    } else {
        Err(Unfilled { names })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn what_is_a_placeholder() {
        for (text, want) in [
            ("port @PORT@\ndir @DATA_DIR@\n", &["DATA_DIR", "PORT"][..]),
            ("# ops@example.org, @ x\n", &[]),
            ("# a@b c@D@", &["D"]),
            ("@A@@B@", &["A", "B"]),
            ("@lower@ @@", &[]),
        ] {
            assert_eq!(placeholders(text), set(want), "{text:?}");
        }
    }

    #[test]
    fn fill_replaces_and_names_what_is_left() {
        let values = [("PORT", "9001".to_owned())];
        assert_eq!(
            fill("port @PORT@ @PORT@", &values).as_deref(),
            Ok("port 9001 9001")
        );
        let e = fill("port @PORT@ quorum @QUORUM@ dir @DIR@", &values).unwrap_err();
        assert_eq!(e.names, set(&["DIR", "QUORUM"]));
        assert_eq!(
            e.to_string(),
            "placeholders left unfilled in the template: @DIR@, @QUORUM@"
        );
    }
}
