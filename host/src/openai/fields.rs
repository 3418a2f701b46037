//! A request body's top-level fields, each value kept as the JSON text the
//! client sent.
//!
//! A proxy reads a handful of fields and forwards the rest. Building a JSON
//! tree for `messages` only to write it out again was most of the CPU a plain
//! request cost; raw values are checked for validity once, copied once, and
//! written out verbatim, in the client's order and with the client's exact
//! numbers. Code that needs a field's structure (composite strategies, the
//! in-process providers) parses that field when it asks for it.

use std::fmt;

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The fields of one JSON object, in the order they were received.
#[derive(Debug, Clone, Default)]
pub struct RawFields {
    entries: Vec<(String, Box<RawValue>)>,
}

impl RawFields {
    /// The raw JSON of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// Removes `key`, returning its raw JSON.
    pub fn remove(&mut self, key: &str) -> Option<Box<RawValue>> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(index).1)
    }

    /// Sets `key`, replacing an earlier value in place (JSON's last-wins rule).
    pub fn insert(&mut self, key: String, value: Box<RawValue>) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Sets `key` to `value`, serialized.
    pub fn insert_value(&mut self, key: &str, value: &Value) -> Result<(), serde_json::Error> {
        let raw = serde_json::value::to_raw_value(value)?;
        self.insert(key.to_owned(), raw);
        Ok(())
    }

    /// `key` parsed as `T`: `None` when absent, an error when it does not fit.
    pub fn parse<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, serde_json::Error>> {
        self.get(key).map(|raw| serde_json::from_str(raw.get()))
    }

    /// `key` as a JSON value, or `None` when absent (or, impossibly, invalid).
    pub fn value(&self, key: &str) -> Option<Value> {
        self.parse(key).and_then(Result::ok)
    }

    /// Whether `key` holds a JSON array.
    pub fn is_array(&self, key: &str) -> bool {
        self.get(key).is_some_and(|raw| raw.get().starts_with('['))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every field parsed, for code that works on the whole structure.
    pub fn to_map(&self) -> Result<Map<String, Value>, serde_json::Error> {
        self.entries
            .iter()
            .map(|(k, v)| Ok((k.clone(), serde_json::from_str(v.get())?)))
            .collect()
    }

    /// The fields of `map`, serialized.
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, serde_json::Error> {
        let entries = map
            .iter()
            .map(|(k, v)| Ok((k.clone(), serde_json::value::to_raw_value(v)?)))
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(Self { entries })
    }
}

impl Serialize for RawFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RawFields {
    /// Only from a JSON text (serde_json's raw values cannot come from a
    /// `Value`); anything but an object is refused.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = RawFields;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<RawFields, A::Error> {
                let mut fields = RawFields {
                    entries: Vec::with_capacity(access.size_hint().unwrap_or(8)),
                };
                while let Some((key, value)) = access.next_entry::<String, Box<RawValue>>()? {
                    fields.insert(key, value);
                }
                Ok(fields)
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_back_verbatim_in_order() {
        let text = r#"{"z":1.50,"a":[1, 2],"big":123456789012345678901234567890,"s":"\u00e9"}"#;
        let fields: RawFields = serde_json::from_str(text).unwrap();
        assert_eq!(
            serde_json::to_string(&fields).unwrap(),
            r#"{"z":1.50,"a":[1, 2],"big":123456789012345678901234567890,"s":"\u00e9"}"#
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let fields: RawFields = serde_json::from_str(r#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields.get("a").map(RawValue::get), Some("3"));
    }

    #[test]
    fn invalid_json_and_non_objects_are_refused() {
        assert!(serde_json::from_str::<RawFields>(r#"{"a":[1,}"#).is_err());
        assert!(serde_json::from_str::<RawFields>("[1]").is_err());
    }

    #[test]
    fn fields_parse_on_demand() {
        let mut fields: RawFields =
            serde_json::from_str(r#"{"messages":[{"role":"user"}],"n":2}"#).unwrap();
        assert!(fields.is_array("messages"));
        assert!(!fields.is_array("n"));
        assert_eq!(fields.parse::<u32>("n").unwrap().unwrap(), 2);
        fields.insert_value("n", &Value::from(3)).unwrap();
        assert_eq!(fields.value("n"), Some(Value::from(3)));
        let map = fields.to_map().unwrap();
        assert_eq!(RawFields::from_map(&map).unwrap().len(), 2);
    }
}
