//! Warnings repeated across model_list entries, folded into one line: a
//! LiteLLM config of a few hundred deployments that all set the same
//! unread key would otherwise print a few hundred identical warnings.

/// Entries past which one key's identical warning is folded.
const FOLD_AFTER: usize = 3;

/// Entry indexes a folded warning names before "…".
const SHOWN: usize = 3;

/// `warnings` with those that differ only in their model_list index
/// (`file: model_list[N].rest: message`) folded into one line once more
/// than [`FOLD_AFTER`] entries share them, in the first one's place.
pub fn fold_repeated(warnings: Vec<String>) -> Vec<String> {
    let mut groups: Vec<(Option<Shape>, Vec<usize>)> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    for warning in warnings {
        let shape = Shape::of(&warning);
        match &shape {
            Some(s) => match groups.iter_mut().find(|(g, _)| g.as_ref() == Some(s)) {
                Some((_, members)) => members.push(kept.len()),
                None => groups.push((shape, vec![kept.len()])),
            },
            None => groups.push((None, vec![kept.len()])),
        }
        kept.push(warning);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (shape, members) in groups {
        match shape {
            Some(shape) if members.len() > FOLD_AFTER => {
                let indexes: Vec<String> = members
                    .iter()
                    .take(SHOWN)
                    .filter_map(|&i| Shape::index_in(&kept[i]))
                    .map(|n| format!("model_list[{n}]"))
                    .collect();
                out.push(format!(
                    "{}: model_list[*]{}: {} (in {} entries: {}, ...)",
                    shape.file,
                    shape.rest,
                    shape.message,
                    members.len(),
                    indexes.join(", ")
                ));
            }
            _ => out.extend(members.iter().map(|&i| std::mem::take(&mut kept[i]))),
        }
    }
    out
}

/// A warning about one model_list entry, without the entry's index.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    file: String,
    rest: String,
    message: String,
}

impl Shape {
    fn of(warning: &str) -> Option<Self> {
        let (file, after) = warning.split_once(": model_list[")?;
        let (_, after) = after.split_once(']')?;
        let (rest, message) = after.split_once(": ")?;
        Some(Self {
            file: file.to_owned(),
            rest: rest.to_owned(),
            message: message.to_owned(),
        })
    }

    fn index_in(warning: &str) -> Option<usize> {
        let (_, after) = warning.split_once(": model_list[")?;
        after.split_once(']')?.0.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unread(i: usize) -> String {
        format!("c.yaml: model_list[{i}].litellm_params.cooldown_time: unknown key, ignored")
    }

    #[test]
    fn a_warning_shared_by_many_entries_is_one_line_in_the_first_ones_place() {
        let mut warnings = vec!["c.yaml: router_settings.x: unknown key, ignored".to_owned()];
        warnings.extend((0..266).map(unread));
        warnings.push("c.yaml: model_list[7].api_key: no API key".to_owned());
        let folded = fold_repeated(warnings);
        assert_eq!(
            folded,
            [
                "c.yaml: router_settings.x: unknown key, ignored",
                "c.yaml: model_list[*].litellm_params.cooldown_time: unknown key, ignored \
                 (in 266 entries: model_list[0], model_list[1], model_list[2], ...)",
                "c.yaml: model_list[7].api_key: no API key",
            ]
        );
    }

    #[test]
    fn a_few_repeats_stay_as_they_are() {
        let warnings: Vec<String> = (0..3).map(unread).collect();
        assert_eq!(fold_repeated(warnings.clone()), warnings);
    }
}
