//! YAML text to a tree, read as LiteLLM's YAML reader reads it: a key
//! written twice in one mapping keeps its last value (serde_yaml's own
//! tree refuses the file). Each such key is reported, so that loading can
//! say which value it used.

use std::fmt;

use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};

/// The tree of `text`, and the key paths written more than once in it.
pub fn parse(text: &str) -> Result<(Value, Vec<String>), serde_yaml::Error> {
    let mut repeated = Vec::new();
    let tree = Node {
        path: String::new(),
        repeated: &mut repeated,
    }
    .deserialize(serde_yaml::Deserializer::from_str(text))?;
    Ok((tree, repeated))
}

/// One node of the tree being read, with its key path.
struct Node<'a> {
    path: String,
    repeated: &'a mut Vec<String>,
}

impl Node<'_> {
    fn child(&mut self, path: String) -> Node<'_> {
        Node {
            path,
            repeated: self.repeated,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            match seq.next_element_seed(self.child(path))? {
                Some(item) => items.push(item),
                None => return Ok(Value::Sequence(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some(key) = map.next_key::<Value>()? {
            let name = match key.as_str() {
                Some(name) => name.to_owned(),
                None => format!("{key:?}"),
            };
            let path = if self.path.is_empty() {
                name
            } else {
                format!("{}.{name}", self.path)
            };
            let value = map.next_value_seed(self.child(path.clone()))?;
            if mapping.insert(key, value).is_some() {
                self.repeated.push(path);
            }
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, variant): (String, _) = data.variant()?;
        let value = variant.newtype_variant_seed(self)?;
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_is_serde_yamls_own() {
        let text = "a: 1\nb: [-2, 3.5, x, true, null, ~]\nc: {d: !tagged 4, 'e': \"f\"}\n";
        let (tree, repeated) = parse(text).unwrap();
        assert_eq!(tree, serde_yaml::from_str::<Value>(text).unwrap());
        assert!(repeated.is_empty());
    }

    #[test]
    fn a_key_written_twice_keeps_its_last_value_and_is_reported() {
        let text = "litellm_settings: {drop_params: true}\nmodel_list: []\n\
                    litellm_settings: {num_retries: 3}\nrouter_settings: {a: 1, a: 2}\n";
        let (tree, repeated) = parse(text).unwrap();
        assert_eq!(tree["litellm_settings"]["num_retries"], 3);
        assert!(tree["litellm_settings"].get("drop_params").is_none());
        assert_eq!(tree["router_settings"]["a"], 2);
        assert_eq!(repeated, ["litellm_settings", "router_settings.a"]);
    }

    #[test]
    fn broken_yaml_is_still_an_error_with_its_place() {
        let e = parse("a: [1, 2\n").unwrap_err().to_string();
        assert!(e.contains("line"), "{e}");
    }
}
