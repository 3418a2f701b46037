//! Fallback tables: which model groups to try when a group fails.

use std::collections::HashMap;

use crate::config::FallbackList;

use super::error::FallbackKind;

/// `fallbacks`, `context_window_fallbacks`, `content_policy_fallbacks` and
/// `default_fallbacks`, merged from router_settings and litellm_settings.
#[derive(Debug, Clone, Default)]
pub struct Fallbacks {
    pub generic: HashMap<String, Vec<String>>,
    pub context_window: HashMap<String, Vec<String>>,
    pub content_policy: HashMap<String, Vec<String>>,
    pub default: Vec<String>,
    /// How many fallback groups one request may try in all.
    pub max: usize,
}

/// Flattens LiteLLM's list-of-single-key-maps form.
pub fn table(lists: &[Option<&FallbackList>]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for list in lists.iter().flatten() {
        for entry in list.iter() {
            for (group, targets) in entry {
                out.entry(group.clone())
                    .or_default()
                    .extend(targets.iter().cloned());
            }
        }
    }
    out
}

impl Fallbacks {
    /// Every name some fallback list names as a target.
    pub fn targets(&self) -> impl Iterator<Item = &String> {
        self.generic
            .values()
            .chain(self.context_window.values())
            .chain(self.content_policy.values())
            .flatten()
            .chain(&self.default)
    }

    /// The groups to try after `group` failed with `kind`, reached by the
    /// name `asked` (the client's, or a fallback entry's; one a wildcard or
    /// an alias serves may differ from the group's): its lists first, as
    /// LiteLLM looks them up by the name asked for, then the group's. For each name a specific list
    /// (context window, content policy) wins when present, then the generic
    /// list; with neither, `default_fallbacks`.
    pub fn after<'a>(
        &'a self,
        asked: Option<&str>,
        group: &str,
        kind: FallbackKind,
    ) -> &'a [String] {
        let lists_of = |name: &str| {
            let specific = match kind {
                FallbackKind::ContextWindow => self.context_window.get(name),
                FallbackKind::ContentPolicy => self.content_policy.get(name),
                FallbackKind::Generic => None,
            };
            specific.or_else(|| self.generic.get(name))
        };
        asked
            .filter(|asked| *asked != group)
            .and_then(lists_of)
            .or_else(|| lists_of(group))
            .map(Vec::as_slice)
            .unwrap_or(self.default.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_list_wins_then_generic_then_default() {
        let f = Fallbacks {
            generic: HashMap::from([("a".into(), vec!["g".into()])]),
            context_window: HashMap::from([("a".into(), vec!["big".into()])]),
            default: vec!["d".into()],
            ..Fallbacks::default()
        };
        assert_eq!(
            f.after(None, "a", FallbackKind::ContextWindow),
            ["big".to_owned()]
        );
        assert_eq!(
            f.after(None, "a", FallbackKind::ContentPolicy),
            ["g".to_owned()]
        );
        assert_eq!(
            f.after(None, "zzz", FallbackKind::Generic),
            ["d".to_owned()]
        );
    }

    #[test]
    fn the_asked_names_lists_come_before_its_groups() {
        let f = Fallbacks {
            generic: HashMap::from([
                ("wild/x".into(), vec!["named".into()]),
                ("wild/*".into(), vec!["group".into()]),
            ]),
            ..Fallbacks::default()
        };
        let after = |asked| f.after(Some(asked), "wild/*", FallbackKind::Generic);
        assert_eq!(after("wild/x"), ["named".to_owned()]);
        assert_eq!(after("wild/y"), ["group".to_owned()]);
    }
}
