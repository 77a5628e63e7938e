//! The mapped values of one JSON-lines record, read in one pass without building the object:
//! only the mapped keys' values are kept, borrowed from the line unless a string holds escapes.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A mapped key's value: `None` when the key is absent, `Some(None)` when it is null.
pub(super) type Value<'a> = Option<Option<Cow<'a, str>>>;

/// The value of each key of `keys` in the JSON object `line`: a string's content (unescaped),
/// any other value as written (`12.50`, `1e2`, `true`, `[1,2]`). A key given twice keeps its
/// last value, as a JSON object does. An error if `line` is not one JSON object in UTF-8.
///
/// The keys the mapping does not read are checked for JSON syntax (structure, escapes, control
/// characters) but not decoded: a lone UTF-16 surrogate escape in one of their strings is not
/// an error, as it is in a mapped string. Numbers are kept as text, so a number beyond `f64`'s
/// range is an error only where a field needs its value (the amount, say).
pub(super) fn mapped_values<'a, const N: usize>(
    line: &'a [u8],
    keys: &[String; N],
) -> Result<[Value<'a>; N], serde_json::Error> {
    // Checked once here, every string borrowed from the line is valid UTF-8.
    let line = std::str::from_utf8(line).map_err(|e| {
        de::Error::custom(format_args!(
            "invalid UTF-8 at byte {}",
            e.valid_up_to() + 1
        ))
    })?;
    let mut deserializer = serde_json::Deserializer::from_str(line);
    let values = ObjectSeed { keys }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(values)
}

struct ObjectSeed<'k, const N: usize> {
    keys: &'k [String; N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for ObjectSeed<'_, N> {
    type Value = [Value<'de>; N];

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for ObjectSeed<'_, N> {
    type Value = [Value<'de>; N];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values: [Value<'de>; N] = std::array::from_fn(|_| None);
        while let Some(key) = map.next_key_seed(Text)? {
            // Several fields may read the same key.
            let mut wanted = self.keys.iter().enumerate().filter(|(_, k)| **k == *key);
            let Some((first, _)) = wanted.next() else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let raw: &'de RawValue = map.next_value()?;
            let value = value_text(raw).map_err(de::Error::custom)?;
            for (other, _) in wanted {
                values[other] = Some(value.clone());
            }
            values[first] = Some(value);
        }
        Ok(values)
    }
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

    type Read<const N: usize> = Result<[Option<Option<String>>; N], String>;

    fn read<const N: usize>(line: &[u8], keys: [&str; N]) -> Read<N> {
        let keys = keys.map(str::to_owned);
        mapped_values(line, &keys)
            .map(|values| values.map(|v| v.map(|v| v.map(Cow::into_owned))))
            .map_err(|e| e.to_string())
    }

    fn text(value: &str) -> Option<Option<String>> {
        Some(Some(value.to_owned()))
    }

    #[test]
    fn strings_unescaped_other_values_as_written_null_apart_from_missing() {
        let line = br#"{"a": "caf\u00e9 \"x\"", "n": 12.50, "t": true, "z": null, "o": {"k": [1, 2]}, "skip": [{"deep": 1}]}"#;
        let got = read(line, ["a", "n", "t", "z", "o", "absent"]).unwrap();
        assert_eq!(
            got,
            [
                text("café \"x\""),
                text("12.50"),
                text("true"),
                Some(None),
                text(r#"{"k": [1, 2]}"#),
                None
            ]
        );
        // Numbers keep their spelling: an id written 1.50 stays 1.50, not 1.5.
        let got = read(
            br#"{"a": 1.50, "b": 1e2, "c": -0, "d": 1e400}"#,
            ["a", "b", "c", "d"],
        );
        assert_eq!(
            got.unwrap(),
            [text("1.50"), text("1e2"), text("-0"), text("1e400")]
        );
    }

    #[test]
    fn the_last_of_a_repeated_key_wins_and_two_fields_may_read_one_key() {
        let got = read(br#"{"k": "first", "k": "last"}"#, ["k", "other", "k"]).unwrap();
        assert_eq!(got, [text("last"), None, text("last")]);
        let got = read(br#"{"k": "x", "k": null}"#, ["k"]).unwrap();
        assert_eq!(got, [Some(None)]);
        // An escaped key is the same key.
        let got = read(br#"{"\u006b": 1}"#, ["k"]).unwrap();
        assert_eq!(got, [text("1")]);
    }

    #[test]
    fn only_one_json_object_in_utf8_is_a_record() {
        let bad: [&[u8]; 10] = [
            b"[1, 2]",
            b"\"text\"",
            b"{\"a\": 1} trailing",
            b"{\"a\": 1",
            b"{not json",
            b"",
            // Invalid UTF-8, in a mapped string and in one the mapping skips.
            b"{\"a\": \"\xff\"}",
            b"{\"a\": 1, \"skipped\": \"\xff\"}",
            // A control character in a skipped string; a lone surrogate in a mapped one.
            b"{\"a\": 1, \"skipped\": \"tab\there\"}",
            br#"{"a": "\ud800"}"#,
        ];
        for line in bad {
            assert!(
                read(line, ["a"]).is_err(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let error = read(b"{\"a\": \"ok\", \"b\": \"\xff\"}", ["a"]).unwrap_err();
        assert_eq!(error, "invalid UTF-8 at byte 19");
        assert_eq!(read(b" {\"a\": 1} ", ["a"]).unwrap(), [text("1")]);
    }
}
