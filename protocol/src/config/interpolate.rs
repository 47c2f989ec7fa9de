//! `${{ namespace.name }}` references, interpolated as dstack's `VariablesInterpolator` does
//! (src/dstack/_internal/utils/interpolator.py): `$$` is a literal `$`; a name is
//! `namespace.name` (letters, digits, `_`; one dot; not starting with a digit); namespaces
//! given to [`Interpolator::skip`] are left as written; every other unknown name is missing.
//!
//! Where dstack interpolates what: `secrets.*` in `env` values and `registry_auth` (when the job
//! starts), `env.*` in `registry_auth` (and a service's probes), `run.args` in `commands`.

use std::collections::BTreeMap;

/// What dstack's users see: the message names the reference, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InterpolateError(pub String);

/// Values by `namespace.name`, and the namespaces left as written.
#[derive(Debug, Clone, Default)]
pub struct Interpolator<'a> {
    variables: BTreeMap<String, &'a str>,
    skip: Vec<&'a str>,
}

impl<'a> Interpolator<'a> {
    pub fn new() -> Self {
        Interpolator::default()
    }

    /// Adds the variables of one namespace (`secrets`, `env`, `run`).
    pub fn namespace(
        mut self,
        namespace: &str,
        values: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        for (name, value) in values {
            self.variables.insert(format!("{namespace}.{name}"), value);
        }
        self
    }

    /// References into `namespace` are kept as written (for a later interpolation).
    pub fn skip(mut self, namespace: &'a str) -> Self {
        self.skip.push(namespace);
        self
    }

    /// The text with every known reference replaced, and the names that were missing.
    pub fn interpolate(&self, s: &str) -> Result<(String, Vec<String>), InterpolateError> {
        let mut out = String::with_capacity(s.len());
        let mut missing = Vec::new();
        let mut start = 0;
        while start < s.len() {
            let Some(dollar) = s[start..].find('$').map(|i| start + i) else {
                out.push_str(&s[start..]);
                break;
            };
            if dollar == s.len() - 1 {
                out.push_str(&s[start..]);
                break;
            }
            if s[dollar + 1..].starts_with('$') {
                out.push_str(&s[start..=dollar]);
                start = dollar + 2;
                continue;
            }
            let Some(opening) = s[start..].find(OPENING).map(|i| start + i) else {
                out.push_str(&s[start..]);
                break;
            };
            out.push_str(&s[start..opening]);
            let Some(closing) = s[opening..].find(CLOSING).map(|i| opening + i) else {
                return Err(InterpolateError(format!(
                    "No pattern closing: {}",
                    &s[opening..]
                )));
            };
            let name = s[opening + OPENING.len()..closing].trim();
            let root = namespace_root(name);
            if self.skip.contains(&root) {
                if !validate_name(name) {
                    return Err(illegal(name));
                }
                out.push_str(&s[opening..closing + CLOSING.len()]);
            } else if !validate_name(name) {
                return Err(illegal(name));
            } else if let Some(value) = self.variables.get(name) {
                out.push_str(value);
            } else {
                missing.push(name.to_string());
            }
            start = closing + CLOSING.len();
        }
        Ok((out, missing))
    }

    /// [`Interpolator::interpolate`], with missing names as dstack's error.
    pub fn interpolate_or_error(&self, s: &str) -> Result<String, InterpolateError> {
        let (text, missing) = self.interpolate(s)?;
        if missing.is_empty() {
            Ok(text)
        } else {
            Err(missing_error(&missing))
        }
    }
}

const OPENING: &str = "${{";
const CLOSING: &str = "}}";

fn illegal(name: &str) -> InterpolateError {
    InterpolateError(format!("Illegal reference name: {name}"))
}

/// dstack's message for references without a value: `Failed to interpolate due to missing
/// vars: ['secrets.hf_token']`.
pub fn missing_error(missing: &[String]) -> InterpolateError {
    let list: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
    InterpolateError(format!(
        "Failed to interpolate due to missing vars: [{}]",
        list.join(", ")
    ))
}

/// `groups[0].nodes[0].IP_ADDRESS` -> `groups`; `secrets.x` -> `secrets`.
pub fn namespace_root(name: &str) -> &str {
    let first = name.split('.').next().unwrap_or(name);
    first.split('[').next().unwrap_or(first)
}

/// dstack's rule: exactly one dot, not at either end; both parts start with a letter or `_`;
/// only letters, digits, `_` and the dot.
pub fn validate_name(s: &str) -> bool {
    let Some((namespace, name)) = s.split_once('.') else {
        return false;
    };
    let first = |t: &str| {
        t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
    };
    !name.contains('.')
        && first(namespace)
        && first(name)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Every `${{ ... }}` reference in `s`, trimmed, as written (valid or not).
pub fn references(s: &str) -> Vec<&str> {
    let mut refs = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find(OPENING) {
        let after = &rest[open + OPENING.len()..];
        match after.find(CLOSING) {
            Some(close) => {
                refs.push(after[..close].trim());
                rest = &after[close + CLOSING.len()..];
            }
            None => {
                refs.push(after.trim());
                break;
            }
        }
    }
    refs
}

/// Whether `s` has a `${{` that dstack would read as a reference.
pub fn has_reference(s: &str) -> bool {
    s.contains(OPENING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_are_replaced_and_unknown_ones_are_missing_as_dstack_says() {
        let i = Interpolator::new().namespace("secrets", [("hf_token", "abc")]);
        assert_eq!(
            i.interpolate_or_error("t=${{ secrets.hf_token }}!")
                .expect("ok"),
            "t=abc!"
        );
        assert_eq!(
            i.interpolate_or_error("${{secrets.hf_token}}${{ secrets.hf_token }}")
                .expect("ok"),
            "abcabc"
        );
        let e = i
            .interpolate_or_error("${{ secrets.nope }} ${{ env.X }}")
            .expect_err("missing");
        assert_eq!(
            e.0,
            "Failed to interpolate due to missing vars: ['secrets.nope', 'env.X']"
        );
    }

    #[test]
    fn dollars_and_skipped_namespaces_follow_dstack() {
        let i = Interpolator::new()
            .namespace("env", [("A", "1")])
            .skip("secrets");
        // `$$` is one literal `$`; a lone `$` stays.
        assert_eq!(i.interpolate_or_error("a$$b $c $").expect("ok"), "a$b $c $");
        assert_eq!(
            i.interpolate_or_error("${{ env.A }}-${{ secrets.k }}")
                .expect("ok"),
            "1-${{ secrets.k }}"
        );
        assert_eq!(
            i.interpolate_or_error("${{ secrets.k").expect_err("open").0,
            "No pattern closing: ${{ secrets.k"
        );
        assert_eq!(
            i.interpolate_or_error("${{ secrets }}").expect_err("bad").0,
            "Illegal reference name: secrets"
        );
        assert_eq!(
            i.interpolate_or_error("${{ a.b.c }}").expect_err("bad").0,
            "Illegal reference name: a.b.c"
        );
    }

    #[test]
    fn names_and_references() {
        assert!(validate_name("secrets.hf_token"));
        assert!(validate_name("_a._b1"));
        assert!(!validate_name("secrets.1x"));
        assert!(!validate_name("secrets.a-b"));
        assert!(!validate_name(".x"));
        assert_eq!(namespace_root("groups[0].nodes[0].IP_ADDRESS"), "groups");
        assert_eq!(references("x ${{ a.b }} y ${{c.d}}"), vec!["a.b", "c.d"]);
        assert!(has_reference("${{ a.b }}") && !has_reference("${a}"));
    }
}
