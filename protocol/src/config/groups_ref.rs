//! dstack's `${{ groups[i].nodes[j].IP_ADDRESS }}` references (src/dstack/_internal/utils/
//! nodes_interpolator.py): the address of node `j` of node group `i` of a task (and
//! `groups[i].replicas[j]` of a service's replica groups). `$${{` is an escape, as everywhere;
//! any other name under `groups` is dstack's `Illegal reference name`.

use super::interpolate::{namespace_root, InterpolateError};

/// What a reference points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    Nodes,
    Replicas,
}

impl Member {
    pub fn as_str(self) -> &'static str {
        match self {
            Member::Nodes => "nodes",
            Member::Replicas => "replicas",
        }
    }
}

/// One reference in a text: its byte range (the whole `${{ ... }}`) and what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRef {
    pub start: usize,
    pub end: usize,
    pub group: usize,
    pub member: Member,
    pub index: usize,
}

impl GroupRef {
    pub fn name(&self) -> String {
        format!(
            "groups[{}].{}[{}].IP_ADDRESS",
            self.group,
            self.member.as_str(),
            self.index
        )
    }
}

/// `groups[I].MEMBER[J].IP_ADDRESS`, exactly.
fn parse_name(name: &str) -> Option<(usize, Member, usize)> {
    let rest = name.strip_prefix("groups[")?;
    let (group, rest) = rest.split_once("].")?;
    let (member, rest) = if let Some(r) = rest.strip_prefix("nodes[") {
        (Member::Nodes, r)
    } else {
        (Member::Replicas, rest.strip_prefix("replicas[")?)
    };
    let (index, rest) = rest.split_once(']')?;
    if rest != ".IP_ADDRESS" {
        return None;
    }
    let number = |t: &str| {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<usize>().ok())
            .flatten()
    };
    Some((number(group)?, member, number(index)?))
}

/// Every `groups` reference in `s`, in order; a name under `groups` that is not an address
/// reference is an error. Other references are not looked at.
pub fn find(s: &str) -> Result<Vec<GroupRef>, InterpolateError> {
    let mut refs = Vec::new();
    let mut at = 0;
    while let Some(open) = s[at..].find("${{").map(|i| at + i) {
        let escaped = open > 0 && s.as_bytes()[open - 1] == b'$';
        let Some(close) = s[open..].find("}}").map(|i| open + i) else {
            break;
        };
        let name = s[open + 3..close].trim();
        if !escaped && namespace_root(name) == "groups" {
            let (group, member, index) = parse_name(name)
                .ok_or_else(|| InterpolateError(format!("Illegal reference name: {name}")))?;
            refs.push(GroupRef {
                start: open,
                end: close + 2,
                group,
                member,
                index,
            });
        }
        at = close + 2;
    }
    Ok(refs)
}

/// dstack's bounds check: every `member` reference names a group and a slot that exist
/// (`sizes[i]`: how many nodes or replicas group `i` has).
pub fn check_bounds(s: &str, member: Member, sizes: &[usize]) -> Result<(), InterpolateError> {
    for r in find(s)? {
        if r.member != member {
            return Err(InterpolateError(format!(
                "Illegal reference name: {}",
                r.name()
            )));
        }
        if sizes.get(r.group).is_none_or(|&n| r.index >= n) {
            return Err(InterpolateError(format!(
                "Invalid reference {}: out of range",
                r.name()
            )));
        }
    }
    Ok(())
}

/// `s` with each reference replaced by `view[group][index]` (the addresses, by group).
pub fn replace(s: &str, member: Member, view: &[Vec<String>]) -> Result<String, InterpolateError> {
    let sizes: Vec<usize> = view.iter().map(Vec::len).collect();
    check_bounds(s, member, &sizes)?;
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for r in find(s)? {
        let ip = &view[r.group][r.index];
        if ip.is_empty() {
            return Err(InterpolateError(format!(
                "IP not available for {}",
                r.name()
            )));
        }
        out.push_str(&s[at..r.start]);
        out.push_str(ip);
        at = r.end;
    }
    out.push_str(&s[at..]);
    Ok(out)
}

/// `s` with every `groups` reference taken out (what the other interpolations then read).
pub fn without_refs(s: &str) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for r in find(s)? {
        out.push_str(&s[at..r.start]);
        at = r.end;
    }
    out.push_str(&s[at..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_found_checked_and_replaced_as_dstack_does() {
        let s = "ray start --address=${{ groups[0].nodes[0].IP_ADDRESS }}:6379 $${{ groups[9].x }} ${{ run.args }}";
        let refs = find(s).expect("valid");
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].name(), "groups[0].nodes[0].IP_ADDRESS");
        let view = vec![vec!["10.0.0.1".to_string()], vec!["10.0.0.2".to_string()]];
        assert_eq!(
            replace(s, Member::Nodes, &view).expect("replaced"),
            "ray start --address=10.0.0.1:6379 $${{ groups[9].x }} ${{ run.args }}"
        );
        assert_eq!(
            find("${{ groups[0].nodes[0].IP }}").unwrap_err().0,
            "Illegal reference name: groups[0].nodes[0].IP"
        );
        assert_eq!(
            check_bounds("${{groups[1].nodes[1].IP_ADDRESS}}", Member::Nodes, &[1, 1])
                .unwrap_err()
                .0,
            "Invalid reference groups[1].nodes[1].IP_ADDRESS: out of range"
        );
        assert_eq!(
            check_bounds(
                "${{ groups[0].replicas[0].IP_ADDRESS }}",
                Member::Nodes,
                &[1]
            )
            .unwrap_err()
            .0,
            "Illegal reference name: groups[0].replicas[0].IP_ADDRESS"
        );
        assert_eq!(
            without_refs("a ${{ groups[0].nodes[0].IP_ADDRESS }} b").expect("valid"),
            "a  b"
        );
    }
}
