//! Export lines, parsed straight from the JSON text.
//!
//! The fast path builds `AttributeValue`s while it reads the text, with no `serde_json::Value`
//! in between. It only accepts what the slow path (`serde_json::Value` + `item_from_ddb_json`)
//! accepts, with the same result; on anything else it gives up, and the line is parsed again by
//! the slow path, whose errors carry the attribute path.

use std::fmt;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::ddb_json::item_from_ddb_json;
use super::{Item, ValueError};
use crate::changes::Change;

/// What one export line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportChange {
    /// `Item` (full export): insert or update.
    Upsert(Item),
    /// `Keys`, `NewImage`, `OldImage` (incremental export): a change, applied by the rules of
    /// `crate::changes` (a line without `NewImage` is a deletion).
    Change(Change),
}

/// Why an export line is not an item; the `Display` text is the reject reason.
#[derive(Debug, thiserror::Error)]
pub enum ExportLineError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error("expected an object with Item, NewImage, OldImage or Keys")]
    NoImage,
}

/// Parses one line of a DynamoDB export (`{"Item": {...}}`, or `{"Keys": {...}, "NewImage":
/// {...}, "OldImage": {...}}`; other fields are ignored). `Item` is an upsert; else the images
/// present make a change. Any image present but invalid makes the line an error.
pub fn parse_export_line(text: &str) -> Result<ExportChange, ExportLineError> {
    match export_line_fast(text) {
        Ok(line) => line.into_change(),
        // The fast path gives up on anything unusual: the slow path says exactly what is wrong.
        Err(_) => export_line_slow(text),
    }
}

/// `parse_export_line` through `serde_json::Value` (the reference the fast path must match).
pub(super) fn export_line_slow(text: &str) -> Result<ExportChange, ExportLineError> {
    let v: Value = serde_json::from_str(text).map_err(ExportLineError::NotJson)?;
    let item = |field: &str| v.get(field).map(item_from_ddb_json).transpose();
    if let Some(it) = item("Item")? {
        return Ok(ExportChange::Upsert(it));
    }
    ExportLine {
        item: None,
        new_image: item("NewImage")?,
        old_image: item("OldImage")?,
        keys: item("Keys")?,
    }
    .into_change()
}

/// The images of one export line, as the fast path reads them (absent fields are `None`).
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct ExportLine {
    pub item: Option<Item>,
    pub new_image: Option<Item>,
    pub old_image: Option<Item>,
    pub keys: Option<Item>,
}

impl ExportLine {
    fn into_change(self) -> Result<ExportChange, ExportLineError> {
        if let Some(it) = self.item {
            return Ok(ExportChange::Upsert(it));
        }
        if self.new_image.is_none() && self.old_image.is_none() && self.keys.is_none() {
            return Err(ExportLineError::NoImage);
        }
        Ok(ExportChange::Change(Change {
            keys: self.keys,
            old: self.old_image,
            new: self.new_image,
        }))
    }
}

/// The fast path alone: every field it keeps is fully valid, or it fails. Its error says
/// nothing useful (callers fall back to [`export_line_slow`]).
pub(super) fn export_line_fast(text: &str) -> Result<ExportLine, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let line = de::Deserializer::deserialize_map(&mut de, LineVisitor)?;
    de.end()?;
    Ok(line)
}

/// A top-level field of an export line.
enum Field {
    Item,
    NewImage,
    OldImage,
    Keys,
    Other,
}

struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Field;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(match v {
            "Item" => Field::Item,
            "NewImage" => Field::NewImage,
            "OldImage" => Field::OldImage,
            "Keys" => Field::Keys,
            _ => Field::Other,
        })
    }
}

struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = ExportLine;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an export line object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExportLine, A::Error> {
        let mut line = ExportLine::default();
        // A repeated field: the last one wins, as in `serde_json::Value`.
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            let slot = match field {
                Field::Item => &mut line.item,
                Field::NewImage => &mut line.new_image,
                Field::OldImage => &mut line.old_image,
                Field::Keys => &mut line.keys,
                Field::Other => {
                    map.next_value_seed(Skip)?;
                    continue;
                }
            };
            *slot = Some(map.next_value_seed(ItemSeed)?);
        }
        Ok(line)
    }
}

/// Reads and drops any JSON value, through `deserialize_any` so that it checks exactly what
/// parsing into `serde_json::Value` checks (e.g. numbers out of `f64` range, lone surrogates
/// in strings), which `IgnoredAny` does not.
struct Skip;

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
struct ItemSeed;

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
        // A repeated name: the last one wins, as in `serde_json::Value`.
        while let Some(name) = map.next_key::<String>()? {
            let v = map.next_value_seed(AttrSeed)?;
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
            other => return Err(E::custom(format_args!("unknown type tag {other:?}"))),
        })
    }
}

/// One DynamoDB JSON value: an object with exactly one type key.
#[derive(Clone, Copy)]
struct AttrSeed;

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
        let v = match tag {
            Tag::S => AttributeValue::S(map.next_value()?),
            Tag::N => AttributeValue::N(map.next_value()?),
            Tag::B => AttributeValue::B(map.next_value_seed(BlobSeed)?),
            Tag::Bool => AttributeValue::Bool(map.next_value()?),
            Tag::Null => AttributeValue::Null(map.next_value()?),
            Tag::Ss => AttributeValue::Ss(map.next_value()?),
            Tag::Ns => AttributeValue::Ns(map.next_value()?),
            Tag::Bs => AttributeValue::Bs(map.next_value_seed(ListSeed(BlobSeed))?),
            Tag::M => AttributeValue::M(map.next_value_seed(ItemSeed)?),
            Tag::L => AttributeValue::L(map.next_value_seed(ListSeed(AttrSeed))?),
        };
        // A second key (even the same tag again, which `serde_json::Value` would merge):
        // leave it to the slow path.
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("more than one type key"));
        }
        Ok(v)
    }
}

/// A base64 string (`B`, and the elements of `BS`).
#[derive(Clone, Copy)]
struct BlobSeed;

impl<'de> DeserializeSeed<'de> for BlobSeed {
    type Value = Blob;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Blob, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for BlobSeed {
    type Value = Blob;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a base64 string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Blob, E> {
        STANDARD.decode(v).map(Blob::new).map_err(E::custom)
    }
}

/// A JSON array, each element read with the seed `S`.
struct ListSeed<S>(S);

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
