//! The mapped values of one JSON-lines record, read in one pass without building the object:
//! only the mapped keys' values are kept, borrowed from the line unless a string holds escapes.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The text of the value of each key of `keys` in the JSON object `line`: a string's content
/// (unescaped), any other value as written (`12.50`, `true`, `[1,2]`); `None` where the key is
/// missing or null. A key given twice keeps its last value, as a JSON object does. An error
/// if `line` is not one JSON object.
pub(super) fn mapped_values<'a, const N: usize>(
    line: &'a [u8],
    keys: &[String; N],
) -> Result<[Option<Cow<'a, str>>; N], serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let values = ObjectSeed { keys }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(values)
}

struct ObjectSeed<'k, const N: usize> {
    keys: &'k [String; N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for ObjectSeed<'_, N> {
    type Value = [Option<Cow<'de, str>>; N];

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for ObjectSeed<'_, N> {
    type Value = [Option<Cow<'de, str>>; N];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values: [Option<Cow<'de, str>>; N] = std::array::from_fn(|_| None);
        while let Some(key) = map.next_key_seed(Text)? {
            // Several fields may read the same key.
            let mut wanted = self
                .keys
                .iter()
                .enumerate()
                .filter(|(_, k)| same_key(k, &key));
            let Some((first, _)) = wanted.next() else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let raw: &'de RawValue = map.next_value()?;
            let value = value_text(raw).map_err(de::Error::custom)?;
            for (other, _) in wanted {
                values[other] = value.clone();
            }
            values[first] = value;
        }
        Ok(values)
    }
}

/// Mapped keys often share a length (`merchant`, `category`, `latitude`): the first byte
/// settles most comparisons before a full one.
fn same_key(mapped: &str, key: &str) -> bool {
    mapped.len() == key.len()
        && mapped.as_bytes().first() == key.as_bytes().first()
        && mapped == key
}

/// A value's text: a string unescaped, `null` as `None`, anything else as written.
fn value_text(raw: &RawValue) -> Result<Option<Cow<'_, str>>, serde_json::Error> {
    let text = raw.get();
    match text.as_bytes().first() {
        // Already checked as a JSON string: without escapes, its content is what the quotes
        // hold.
        Some(b'"') if !text.contains('\\') => Ok(text.get(1..text.len() - 1).map(Cow::Borrowed)),
        Some(b'"') => serde_json::Deserializer::from_str(text)
            .deserialize_str(Text)
            .map(Some),
        _ if text == "null" => Ok(None),
        _ => Ok(Some(Cow::Borrowed(text))),
    }
}

/// A JSON string, borrowed from the input when it holds no escape.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<const N: usize>(line: &str, keys: [&str; N]) -> Result<[Option<String>; N], String> {
        let keys = keys.map(str::to_owned);
        mapped_values(line.as_bytes(), &keys)
            .map(|values| values.map(|v| v.map(Cow::into_owned)))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn strings_unescaped_other_values_as_written_null_as_missing() {
        let line = r#"{"a": "caf\u00e9 \"x\"", "n": 12.50, "t": true, "z": null, "o": {"k": [1, 2]}, "skip": [{"deep": 1}]}"#;
        let got = read(line, ["a", "n", "t", "z", "o", "absent"]).unwrap();
        assert_eq!(
            got,
            [
                Some("café \"x\"".to_owned()),
                Some("12.50".to_owned()),
                Some("true".to_owned()),
                None,
                Some(r#"{"k": [1, 2]}"#.to_owned()),
                None
            ]
        );
    }

    #[test]
    fn the_last_of_a_repeated_key_wins_and_two_fields_may_read_one_key() {
        let got = read(r#"{"k": "first", "k": "last"}"#, ["k", "other", "k"]).unwrap();
        assert_eq!(
            got,
            [Some("last".to_owned()), None, Some("last".to_owned())]
        );
        // An escaped key is the same key.
        let got = read(r#"{"\u006b": 1}"#, ["k"]).unwrap();
        assert_eq!(got, [Some("1".to_owned())]);
    }

    #[test]
    fn only_one_json_object_is_a_record() {
        for bad in [
            "[1, 2]",
            "\"text\"",
            "{\"a\": 1} trailing",
            "{\"a\": 1",
            "{not json",
            "",
        ] {
            assert!(read(bad, ["a"]).is_err(), "{bad}");
        }
        assert_eq!(read(" {\"a\": 1} ", ["a"]).unwrap(), [Some("1".to_owned())]);
    }
}
