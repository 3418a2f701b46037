//! A URL as it may be shown in listings, status pages, answers and log
//! lines: scheme, host, port and path. `user:password@`, the query and the
//! fragment go, as they may carry a credential (`?key=sk-...`, Azure's
//! `?api-key=`, a collector's basic auth).

/// `url` as it may be shown. The userinfo goes first, so a `?` or `#`
/// inside a malformed password cannot hide the `@` that ends it.
pub fn public_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return before_query(url).to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let host_start = rest
        .get(..authority_end)
        .and_then(|authority| authority.rfind('@'))
        .map_or(0, |at| at + 1);
    let public = rest.get(host_start..).unwrap_or_default();
    format!("{scheme}://{}", before_query(public))
}

/// `url` up to its query (`?`) or fragment (`#`).
fn before_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scheme_host_port_and_path_are_shown() {
        for (given, shown) in [
            (
                "https://user:pw@example.test/v1?key=s",
                "https://example.test/v1",
            ),
            ("https://h.example/v1?key=sk-secret", "https://h.example/v1"),
            ("https://h.example?key=sk-secret", "https://h.example"),
            ("https://h.example/v1#sk-secret", "https://h.example/v1"),
            ("https://u:p?w#d@h.example/v1?x=1", "https://h.example/v1"),
            ("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"),
            ("h.example/v1?key=sk-secret", "h.example/v1"),
        ] {
            assert_eq!(public_url(given), shown, "{given}");
        }
    }
}
