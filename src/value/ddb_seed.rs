//! serde seeds that read DynamoDB JSON (`{"name": {"S": "..."}, ...}`) straight into
//! `AttributeValue`s, with no `serde_json::Value` in between: the fast parsers of export lines
//! (`export_line`) and of Scan responses (`scan_response`).
//!
//! They accept only fully valid input and fail on anything else, with an error that says
//! little: each caller has a slower reference path it falls back to, which decides.

use crate::checkpoint::printable;
use std::fmt;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::Item;

/// What a reference parser accepts that the seeds must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// `item_from_ddb_json` (exports): base64 is decoded after JSON unescaping.
    Export,
    /// The AWS SDK's Scan deserializer: it decodes a `B` string's *escaped* text, so a blob
    /// written with a JSON escape is an error there; the seeds refuse it (the SDK decides).
    Sdk,
}

/// Reads and drops any JSON value, through `deserialize_any` so that it checks exactly what
/// parsing into `serde_json::Value` checks (e.g. numbers out of `f64` range, lone surrogates
/// in strings), which `IgnoredAny` does not.
pub(super) struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// Upper bound on pre-sizing from a deserializer's size hint (it is not trusted).
const MAX_HINT: usize = 1024;

/// A DynamoDB JSON item (`{"name": {"S": "..."}, ...}`), or the object of an `M`.
#[derive(Clone, Copy)]
pub(super) struct ItemSeed(pub Dialect);

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = Item;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed {
    type Value = Item;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of attributes")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let mut item = Item::with_capacity(map.size_hint().unwrap_or(0).min(MAX_HINT));
        // A repeated name: the last one wins, as in `serde_json::Value` and the SDK.
        while let Some(name) = map.next_key::<String>()? {
            let v = map.next_value_seed(AttrSeed(self.0))?;
            item.insert(name, v);
        }
        Ok(item)
    }
}

/// A DynamoDB type tag.
enum Tag {
    S,
    N,
    B,
    Bool,
    Null,
    Ss,
    Ns,
    Bs,
    M,
    L,
}

struct TagSeed;

impl<'de> DeserializeSeed<'de> for TagSeed {
    type Value = Tag;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Tag, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for TagSeed {
    type Value = Tag;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a DynamoDB type tag")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tag, E> {
        Ok(match v {
            "S" => Tag::S,
            "N" => Tag::N,
            "B" => Tag::B,
            "BOOL" => Tag::Bool,
            "NULL" => Tag::Null,
            "SS" => Tag::Ss,
            "NS" => Tag::Ns,
            "BS" => Tag::Bs,
            "M" => Tag::M,
            "L" => Tag::L,
            other => {
                return Err(E::custom(format_args!(
                    "unknown type tag {}",
                    printable(other)
                )))
            }
        })
    }
}

/// One DynamoDB JSON value: an object with exactly one type key.
#[derive(Clone, Copy)]
struct AttrSeed(Dialect);

impl<'de> DeserializeSeed<'de> for AttrSeed {
    type Value = AttributeValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AttributeValue, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AttrSeed {
    type Value = AttributeValue;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with one type key")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributeValue, A::Error> {
        let Some(tag) = map.next_key_seed(TagSeed)? else {
            return Err(de::Error::custom("no type key"));
        };
        let d = self.0;
        let v = match tag {
            Tag::S => AttributeValue::S(map.next_value()?),
            Tag::N => AttributeValue::N(map.next_value()?),
            Tag::B => AttributeValue::B(map.next_value_seed(BlobSeed(d))?),
            Tag::Bool => AttributeValue::Bool(map.next_value()?),
            Tag::Null => AttributeValue::Null(map.next_value()?),
            Tag::Ss => AttributeValue::Ss(map.next_value()?),
            Tag::Ns => AttributeValue::Ns(map.next_value()?),
            Tag::Bs => AttributeValue::Bs(map.next_value_seed(ListSeed(BlobSeed(d)))?),
            Tag::M => AttributeValue::M(map.next_value_seed(ItemSeed(d))?),
            Tag::L => AttributeValue::L(map.next_value_seed(ListSeed(AttrSeed(d)))?),
        };
        // A second key (even the same tag again, which `serde_json::Value` would merge):
        // leave it to the reference path.
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("more than one type key"));
        }
        Ok(v)
    }
}

/// A base64 string (`B`, and the elements of `BS`).
#[derive(Clone, Copy)]
struct BlobSeed(Dialect);

impl<'de> DeserializeSeed<'de> for BlobSeed {
    type Value = Blob;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Blob, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for BlobSeed {
    type Value = Blob;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a base64 string")
    }
    /// serde_json hands over the input's own text only when the string has no escape.
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Blob, E> {
        STANDARD.decode(v).map(Blob::new).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Blob, E> {
        match self.0 {
            Dialect::Export => STANDARD.decode(v).map(Blob::new).map_err(E::custom),
            Dialect::Sdk => Err(E::custom("an escape in base64 text")),
        }
    }
}

/// A JSON array, each element read with the seed `S`.
#[derive(Clone, Copy)]
pub(super) struct ListSeed<S>(pub S);

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for ListSeed<S> {
    type Value = Vec<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for ListSeed<S> {
    type Value = Vec<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_HINT));
        while let Some(x) = seq.next_element_seed(self.0)? {
            out.push(x);
        }
        Ok(out)
    }
}
