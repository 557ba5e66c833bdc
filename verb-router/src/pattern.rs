//! Turning user-written patterns into matchit's syntax, and checking them.
//!
//! Everything matchit would refuse (or panic on) is caught here first, so the
//! caller gets a precise [`RouteError::Invalid`](crate::RouteError::Invalid)
//! reason and matchit is only ever handed well-formed routes.

/// Most parameters one pattern may hold.
///
/// matchit renames parameters to single letters internally and panics past
/// the 25th, so the limit is enforced here.
pub(crate) const MAX_PARAMS: usize = 25;

/// Name given to a catch-all written as a bare `*`.
pub(crate) const DEFAULT_CATCH_ALL: &str = "wildcard";

/// Whether `b` may appear in an Express-style parameter name.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Converts `pattern` to matchit syntax and validates the result.
///
/// On failure returns the reason, worded for
/// [`RouteError::Invalid`](crate::RouteError::Invalid).
pub(crate) fn to_matchit(pattern: &str) -> Result<String, String> {
    let Some(body) = pattern.strip_prefix('/') else {
        return Err("pattern must start with `/`".to_owned());
    };

    let mut out = String::with_capacity(pattern.len() + 8);
    let mut segments = body.split('/').peekable();
    while let Some(segment) = segments.next() {
        out.push('/');
        let is_last = segments.peek().is_none();

        if segment.contains(['{', '}']) {
            // matchit syntax, copied as-is and checked below.
            out.push_str(segment);
        } else if let Some(rest) = segment.strip_prefix(':') {
            let name_len = rest.bytes().take_while(|&b| is_name_byte(b)).count();
            if name_len == 0 {
                return Err(
                    "`:` must be followed by a parameter name (letters, digits, `_`)".to_owned(),
                );
            }
            let (name, literal) = rest.split_at(name_len);
            out.push('{');
            out.push_str(name);
            out.push('}');
            out.push_str(literal);
        } else if let Some(name) = segment.strip_prefix('*') {
            if !is_last {
                return Err(format!(
                    "catch-all `{segment}` must be the last segment of the pattern"
                ));
            }
            let name = if name.is_empty() {
                DEFAULT_CATCH_ALL
            } else {
                name
            };
            if !name.bytes().all(is_name_byte) {
                return Err(format!(
                    "catch-all name `{name}` may only hold letters, digits and `_`"
                ));
            }
            out.push_str("{*");
            out.push_str(name);
            out.push('}');
        } else {
            out.push_str(segment);
        }
    }

    check_matchit(&out)?;
    Ok(out)
}

/// Checks a route in matchit syntax against the rules matchit enforces, plus
/// a few of our own (unique names, parameter limit).
fn check_matchit(route: &str) -> Result<(), String> {
    let mut names: Vec<&str> = Vec::new();
    let bytes = route.as_bytes();
    let mut segment_params = 0;
    let mut i = 0;

    while i < bytes.len() {
        match bytes[i] {
            b'/' => {
                segment_params = 0;
                i += 1;
            }
            b'{' if bytes.get(i + 1) == Some(&b'{') => i += 2,
            b'}' if bytes.get(i + 1) == Some(&b'}') => i += 2,
            b'}' => {
                return Err("unmatched `}` (write `}}` for a literal brace)".to_owned());
            }
            b'{' => {
                let start = i + 1;
                let Some(len) = bytes[start..]
                    .iter()
                    .position(|&b| matches!(b, b'}' | b'{' | b'/'))
                else {
                    return Err("unclosed `{` (write `{{` for a literal brace)".to_owned());
                };
                let end = start + len;
                if bytes[end] != b'}' {
                    return Err("unclosed `{` (write `{{` for a literal brace)".to_owned());
                }
                if bytes.get(end + 1) == Some(&b'}') {
                    return Err(
                        "ambiguous `}}}` after a parameter; rename or restructure the segment"
                            .to_owned(),
                    );
                }
                let inner = &route[start..end];
                let (name, catch_all) = match inner.strip_prefix('*') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                if name.is_empty() {
                    return Err(if catch_all {
                        "catch-all parameter has an empty name".to_owned()
                    } else {
                        "parameter has an empty name".to_owned()
                    });
                }
                if name.contains('*') {
                    return Err(format!(
                        "parameter name `{name}` may not contain `*` (only a leading `*` marks a catch-all)"
                    ));
                }
                if catch_all && end + 1 != bytes.len() {
                    return Err(format!(
                        "catch-all `{{*{name}}}` must be at the end of the pattern"
                    ));
                }
                segment_params += 1;
                if segment_params > 1 {
                    return Err("only one parameter is allowed per segment".to_owned());
                }
                if names.contains(&name) {
                    return Err(format!("parameter name `{name}` is used twice"));
                }
                names.push(name);
                if names.len() > MAX_PARAMS {
                    return Err(format!(
                        "too many parameters (at most {MAX_PARAMS} per pattern)"
                    ));
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Removes matchit's brace escapes (`{{` → `{`, `}}` → `}`), the way matchit
/// spells routes in its conflict errors.
pub(crate) fn unescape(route: &str) -> String {
    route.replace("{{", "{").replace("}}", "}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn express_segments_translate_to_matchit_syntax() {
        assert_eq!(to_matchit("/").unwrap(), "/");
        assert_eq!(to_matchit("/users/:id").unwrap(), "/users/{id}");
        assert_eq!(to_matchit("/:file.json").unwrap(), "/{file}.json");
        assert_eq!(to_matchit("/files/*rest").unwrap(), "/files/{*rest}");
        assert_eq!(to_matchit("/files/*").unwrap(), "/files/{*wildcard}");
        assert_eq!(to_matchit("/a:b/c*").unwrap(), "/a:b/c*");
        assert_eq!(to_matchit("/x/").unwrap(), "/x/");
    }

    #[test]
    fn matchit_segments_pass_through_unchanged() {
        assert_eq!(to_matchit("/users/{id}").unwrap(), "/users/{id}");
        assert_eq!(to_matchit("/{{lit}}/:id").unwrap(), "/{{lit}}/{id}");
        assert_eq!(to_matchit("/img-{id}.png").unwrap(), "/img-{id}.png");
        assert_eq!(to_matchit("/{*rest}").unwrap(), "/{*rest}");
    }

    #[test]
    fn brace_rules_match_matchit() {
        for bad in [
            "/{", "/}", "/{}", "/{*}", "/{a", "/a}", "/{a}}}", "/{a{b}", "/{a}{b}", "/{a*b}",
            "/{*a}/b", "/{*a}b",
        ] {
            assert!(to_matchit(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn unescape_drops_doubled_braces() {
        assert_eq!(unescape("/{{a}}/{b}"), "/{a}/{b}");
    }
}
