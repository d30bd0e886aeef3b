//! Host keys of a YAML inventory: `node[01:20]`, `db-[a:c]`, `web[1:9:2]`, `host:2222`.
//!
//! The rules follow Ansible's `expand_hostname_range` and `parse_address` (ansible-core 2.x).
//! A range is `[begin:end]` or `[begin:end:step]`, and an empty begin means 0. Numbers keep the
//! width of a zero-padded begin, and single ASCII letters count through `a..zA..Z`. A key may
//! contain several ranges.

/// Upper bound on the hosts one key may expand to, so a typo such as `node[0:99999999]`
/// fails instead of exhausting memory.
pub(crate) const MAX_HOSTS_PER_PATTERN: usize = 100_000;

/// The hosts named by one inventory key, with the SSH port when the key ends in `:port`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HostPattern {
    pub hosts: Vec<String>,
    pub port: Option<u16>,
}

/// Expands an inventory host key into host names. The error text explains the rule broken.
pub(crate) fn expand(pattern: &str) -> Result<HostPattern, String> {
    let pattern = pattern.trim();
    if pattern.is_empty() {
        return Err("the host name is empty".into());
    }

    if let Some((address, port)) = bracketed_ipv6(pattern)? {
        return Ok(HostPattern {
            hosts: vec![address.to_owned()],
            port,
        });
    }

    // A bare IPv6 address has several colons and no brackets: it names one host, no port.
    if !pattern.contains('[') && pattern.matches(':').count() > 1 {
        return Ok(HostPattern {
            hosts: vec![pattern.to_owned()],
            port: None,
        });
    }

    let (name, port) = split_port(pattern)?;
    let mut hosts = Vec::new();
    expand_ranges(name, &mut hosts)?;
    Ok(HostPattern { hosts, port })
}

/// Recognizes `[2001:db8::1]` and `[2001:db8::1]:22`, which use brackets for an address,
/// not for a range.
fn bracketed_ipv6(pattern: &str) -> Result<Option<(&str, Option<u16>)>, String> {
    let Some(rest) = pattern.strip_prefix('[') else {
        return Ok(None);
    };
    let Some((inside, after)) = rest.split_once(']') else {
        return Ok(None);
    };
    let is_address =
        inside.matches(':').count() >= 2 && inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
    if !is_address {
        return Ok(None);
    }
    let port = match after {
        "" => None,
        _ => match after.strip_prefix(':') {
            Some(port) => Some(parse_port(port)?),
            None => return Ok(None),
        },
    };
    Ok(Some((inside, port)))
}

/// Splits a trailing `:port` that sits outside any range brackets.
fn split_port(pattern: &str) -> Result<(&str, Option<u16>), String> {
    let Some(colon) = pattern.rfind(':') else {
        return Ok((pattern, None));
    };
    let inside_range = pattern[colon..].contains(']');
    if inside_range {
        return Ok((pattern, None));
    }
    let (name, port) = (&pattern[..colon], &pattern[colon + 1..]);
    if name.is_empty() {
        return Err("the host name before the port is empty".into());
    }
    Ok((name, Some(parse_port(port)?)))
}

fn parse_port(port: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .map_err(|_| format!("port {port:?} must be a number from 0 to 65535"))
}

/// Expands the first `[begin:end(:step)]` of `name`, then the ranges left in each result.
fn expand_ranges(name: &str, hosts: &mut Vec<String>) -> Result<(), String> {
    let Some(open) = name.find('[') else {
        if name.contains(']') {
            return Err("']' without a matching '['".into());
        }
        hosts.push(name.to_owned());
        return Ok(());
    };
    let Some(close) = name[open..].find(']').map(|offset| open + offset) else {
        return Err("'[' without a matching ']'".into());
    };
    let (head, body, tail) = (&name[..open], &name[open + 1..close], &name[close + 1..]);

    for value in range_values(body)? {
        if hosts.len() >= MAX_HOSTS_PER_PATTERN {
            return Err(format!(
                "the pattern expands to more than {MAX_HOSTS_PER_PATTERN} hosts"
            ));
        }
        expand_ranges(&format!("{head}{value}{tail}"), hosts)?;
    }
    Ok(())
}

/// Lists the values of one range body such as `01:20`, `a:c` or `1:9:2`.
fn range_values(body: &str) -> Result<Vec<String>, String> {
    let bounds: Vec<&str> = body.split(':').collect();
    if !(2..=3).contains(&bounds.len()) {
        return Err(format!("range [{body}] must be [begin:end] or [begin:end:step]"));
    }
    let begin = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    if end.is_empty() {
        return Err(format!("range [{body}] has no end value"));
    }
    let step = match bounds.get(2) {
        None => 1,
        Some(step) => match step.parse::<usize>() {
            Ok(step) if step > 0 => step,
            _ => {
                return Err(format!(
                    "step {step:?} in range [{body}] must be a positive whole number"
                ))
            }
        },
    };

    if let (Some(first), Some(last)) = (letter_index(begin), letter_index(end)) {
        if first > last {
            return Err(format!("range [{body}] begins after its end"));
        }
        return Ok((first..=last)
            .step_by(step)
            .map(|i| char::from(LETTERS[i]).to_string())
            .collect());
    }

    let numbers = |text: &str| {
        text.parse::<u64>()
            .map_err(|_| format!("range [{body}] must use whole numbers or single letters, found {text:?}"))
    };
    let (first, last) = (numbers(begin)?, numbers(end)?);
    if first > last {
        return Err(format!("range [{body}] begins after its end"));
    }
    let width = if begin.len() > 1 && begin.starts_with('0') {
        if end.len() != begin.len() {
            return Err(format!(
                "range [{body}] has a zero-padded begin, so begin and end must have the same number of digits"
            ));
        }
        begin.len()
    } else {
        0
    };
    let count = (last - first) / step as u64 + 1;
    if count > MAX_HOSTS_PER_PATTERN as u64 {
        return Err(format!(
            "range [{body}] expands to more than {MAX_HOSTS_PER_PATTERN} hosts"
        ));
    }
    Ok((first..=last).step_by(step).map(|n| format!("{n:0width$}")).collect())
}

/// Python's `string.ascii_letters`, the order Ansible counts letter ranges in.
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn letter_index(text: &str) -> Option<usize> {
    match text.as_bytes() {
        [byte] => LETTERS.iter().position(|letter| letter == byte),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(pattern: &str) -> Vec<String> {
        expand(pattern).unwrap().hosts
    }

    #[test]
    fn plain_name_is_one_host() {
        assert_eq!(hosts("web1.example.com"), ["web1.example.com"]);
    }

    #[test]
    fn zero_padded_range_keeps_width() {
        let expanded = hosts("node[01:20]");
        assert_eq!(expanded.len(), 20);
        assert_eq!(expanded[0], "node01");
        assert_eq!(expanded[19], "node20");
    }

    #[test]
    fn unpadded_range_and_step() {
        assert_eq!(hosts("web[8:12:2].lan"), ["web8.lan", "web10.lan", "web12.lan"]);
    }

    #[test]
    fn empty_begin_means_zero() {
        assert_eq!(hosts("n[:2]"), ["n0", "n1", "n2"]);
    }

    #[test]
    fn letter_range() {
        assert_eq!(hosts("db-[a:c]"), ["db-a", "db-b", "db-c"]);
    }

    #[test]
    fn letter_range_crosses_case() {
        assert_eq!(hosts("x[y:B]"), ["xy", "xz", "xA", "xB"]);
    }

    #[test]
    fn two_ranges_multiply() {
        assert_eq!(hosts("r[1:2]-[a:b]"), ["r1-a", "r1-b", "r2-a", "r2-b"]);
    }

    #[test]
    fn port_is_split() {
        let pattern = expand("jump.example.com:2222").unwrap();
        assert_eq!(pattern.hosts, ["jump.example.com"]);
        assert_eq!(pattern.port, Some(2222));
    }

    #[test]
    fn range_with_port() {
        let pattern = expand("node[1:2]:22").unwrap();
        assert_eq!(pattern.hosts, ["node1", "node2"]);
        assert_eq!(pattern.port, Some(22));
    }

    #[test]
    fn ipv6_forms() {
        assert_eq!(
            expand("2001:db8::1").unwrap(),
            HostPattern {
                hosts: vec!["2001:db8::1".into()],
                port: None
            }
        );
        assert_eq!(
            expand("[2001:db8::1]:22").unwrap(),
            HostPattern {
                hosts: vec!["2001:db8::1".into()],
                port: Some(22)
            }
        );
    }

    #[test]
    fn invalid_ranges_are_rejected() {
        for (pattern, expected) in [
            ("node[1:2:3:4]", "must be [begin:end]"),
            ("node[1:]", "no end value"),
            ("node[5:1]", "begins after its end"),
            ("node[01:100]", "same number of digits"),
            ("node[1:b]", "whole numbers or single letters"),
            ("node[1:5:0]", "positive whole number"),
            ("node[1:5", "without a matching ']'"),
            ("node[0:99999999]", "more than"),
            ("host:99999", "port"),
        ] {
            let message = expand(pattern).unwrap_err();
            assert!(message.contains(expected), "{pattern}: {message}");
        }
    }
}
