//! Export lines, parsed straight from the JSON text.
//!
//! The fast path builds `AttributeValue`s while it reads the text, with no `serde_json::Value`
//! in between. It only accepts what the slow path (`serde_json::Value` + `item_from_ddb_json`)
//! accepts, with the same result; on anything else it gives up, and the line is parsed again by
//! the slow path, whose errors carry the attribute path.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::ddb_json::item_from_ddb_json;
use super::ddb_seed::{Dialect, ItemSeed, Skip};
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
            unreadable: None,
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
            *slot = Some(map.next_value_seed(ItemSeed(Dialect::Export))?);
        }
        Ok(line)
    }
}
