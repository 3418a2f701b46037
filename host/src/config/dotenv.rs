//! The `.env` file beside a config, read much as LiteLLM's loader
//! (python-dotenv) reads it: `KEY=VALUE` lines, an `export ` before the key allowed,
//! blank lines and `#` comments skipped. A value in single quotes is taken
//! as written; one in double quotes may span lines and takes `\n`, `\t`,
//! `\"` and `\\` escapes; an unquoted one is trimmed and ends at ` #`.
//! Values are never expanded (python-dotenv expands `${NAME}`): a `$` in
//! a key or password is part of it, and the references a config value
//! makes are resolved by [`super::Env`].
//! dotenvy, which expands `$NAME` in every unquoted value and drops an unset
//! one without a word, cut such secrets short, hence a reader of its own.

/// The variables `text` sets, in file order; an error names the line.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let at = index + 1;
        let (key, rest) = line
            .split_once('=')
            .ok_or_else(|| format!("line {at}: expected KEY=VALUE"))?;
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(format!("line {at}: {key:?} is not a variable name"));
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some('\'') => single_quoted(&rest[1..]).ok_or_else(|| unclosed(at, '\''))?,
            Some('"') => double_quoted(&rest[1..], &mut lines).ok_or_else(|| unclosed(at, '"'))?,
            _ => unquoted(rest),
        };
        vars.push((key.to_owned(), value));
    }
    Ok(vars)
}

fn unclosed(line: usize, quote: char) -> String {
    format!("line {line}: the value's {quote} quote is not closed")
}

/// A single-quoted value's text, up to its closing quote on the line.
fn single_quoted(rest: &str) -> Option<String> {
    rest.split_once('\'').map(|(value, _)| value.to_owned())
}

/// A double-quoted value, escapes undone, continued over the next lines of
/// `lines` until its closing quote.
fn double_quoted<'a>(
    first: &'a str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Option<String> {
    let mut value = String::new();
    let mut text = first;
    loop {
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(value),
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some('r') => value.push('\r'),
                    Some(other @ ('"' | '\\' | '\'')) => value.push(other),
                    Some(other) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                },
                c => value.push(c),
            }
        }
        let (_, next) = lines.next()?;
        value.push('\n');
        text = next;
    }
}

/// An unquoted value: trimmed, ending at a ` #` comment.
fn unquoted(rest: &str) -> String {
    let value = match rest.find(" #").or_else(|| rest.find("\t#")) {
        Some(comment) => &rest[..comment],
        None => rest,
    };
    value.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    #[test]
    fn values_are_read_as_written_never_expanded() {
        let read = vars(
            "# a comment\n\nLITELLM_MASTER_KEY=sk-$abc123\nexport UPKEY=Pa$$w0rd$x # note\nQ='lit $HOME \\n'\nD=\"a\\tb \\\"c\\\" $HOME\"\nEMPTY=\n",
        );
        assert_eq!(
            read,
            [
                ("LITELLM_MASTER_KEY".to_owned(), "sk-$abc123".to_owned()),
                ("UPKEY".to_owned(), "Pa$$w0rd$x".to_owned()),
                ("Q".to_owned(), "lit $HOME \\n".to_owned()),
                ("D".to_owned(), "a\tb \"c\" $HOME".to_owned()),
                ("EMPTY".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn a_double_quoted_value_may_span_lines() {
        assert_eq!(
            vars("PEM=\"-----BEGIN-----\nabc\n-----END-----\"\nNEXT=1\n"),
            [
                (
                    "PEM".to_owned(),
                    "-----BEGIN-----\nabc\n-----END-----".to_owned()
                ),
                ("NEXT".to_owned(), "1".to_owned()),
            ]
        );
    }

    #[test]
    fn a_malformed_line_is_named() {
        for (text, says) in [
            ("OK=1\nno equals here\n", "line 2"),
            ("A='open\n", "line 1"),
            ("A=\"open\nstill\n", "line 1"),
            ("B C=1\n", "line 1"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }
}
