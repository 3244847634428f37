//! Scan responses (`{"Items": [...], "Count": n, "LastEvaluatedKey": {...}, ...}`), parsed
//! straight from the body's bytes into the SDK's `ScanOutput` by the seeds exports use.
//!
//! It accepts a strict subset of what the SDK's own deserializer accepts, and gives the same
//! values for it (checked field by field in the tests): anything unusual (a `null` where the
//! SDK would skip it, an unknown type tag, a `__type` key, base64 written with an escape, a
//! consumed-capacity breakdown per index) is refused, and the SDK parses that body.

use std::fmt;

use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::types::ConsumedCapacity;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ddb_seed::{Dialect, ItemSeed, Skip};
use super::Item;

/// Why the fast parser declined a body (for the debug log; the SDK then parses it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Declined(serde_json::Error);

/// Parse a Scan response body. `Err`: the SDK's deserializer must parse it.
pub fn parse_scan_response(body: &[u8]) -> Result<ScanOutput, Declined> {
    let mut items = Vec::new();
    let mut out = parse_scan_items(body, &mut |item| items.push(item))?;
    if out.items.is_some() {
        out.items = Some(items);
    }
    Ok(out)
}

/// `parse_scan_response` that hands each item to `each` as soon as it is parsed, in order,
/// instead of collecting them: the returned output's `items` is empty (`Some` when the body
/// has an `Items` array, as the SDK's would be). A body with `Items` twice
/// is declined (the SDK keeps the last array; `each` has seen both). On `Err`, `each` may
/// have seen some items: drop what it made.
pub fn parse_scan_items(body: &[u8], each: &mut dyn FnMut(Item)) -> Result<ScanOutput, Declined> {
    // Checked as UTF-8 once, not string by string (invalid UTF-8 is declined: the SDK decides).
    let text = std::str::from_utf8(body).map_err(|e| Declined(de::Error::custom(e)))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let out = de::Deserializer::deserialize_map(&mut de, ScanVisitor(each)).map_err(Declined)?;
    de.end().map_err(Declined)?;
    Ok(out)
}

struct ScanVisitor<'f>(&'f mut dyn FnMut(Item));

impl<'de> Visitor<'de> for ScanVisitor<'_> {
    type Value = ScanOutput;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Scan response object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ScanOutput, A::Error> {
        let mut out = ScanOutput::builder();
        let mut items_seen = false;
        // A repeated field: the last one wins, as in the SDK.
        while let Some(field) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            out = match field.as_ref() {
                "Items" => {
                    if std::mem::replace(&mut items_seen, true) {
                        return Err(de::Error::custom("Items twice"));
                    }
                    map.next_value_seed(EachItem(&mut *self.0))?;
                    out.set_items(Some(Vec::new()))
                }
                "Count" => out.set_count(Some(map.next_value::<i32>()?)),
                "ScannedCount" => out.set_scanned_count(Some(map.next_value::<i32>()?)),
                "LastEvaluatedKey" => {
                    out.set_last_evaluated_key(Some(map.next_value_seed(ItemSeed(Dialect::Sdk))?))
                }
                "ConsumedCapacity" => {
                    out.set_consumed_capacity(Some(map.next_value_seed(Capacity)?))
                }
                _ => {
                    map.next_value_seed(Skip)?;
                    out
                }
            };
        }
        Ok(out.build())
    }
}

/// The `Items` array, each element handed on as it is parsed.
struct EachItem<'f>(&'f mut dyn FnMut(Item));

impl<'de> DeserializeSeed<'de> for EachItem<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EachItem<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of items")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element_seed(ItemSeed(Dialect::Sdk))? {
            (self.0)(item);
        }
        Ok(())
    }
}

/// `ConsumedCapacity` as `ReturnConsumedCapacity: TOTAL` gives it; the per-table and per-index
/// breakdowns of INDEXES are left to the SDK.
struct Capacity;

impl<'de> DeserializeSeed<'de> for Capacity {
    type Value = ConsumedCapacity;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ConsumedCapacity, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Capacity {
    type Value = ConsumedCapacity;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a ConsumedCapacity object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConsumedCapacity, A::Error> {
        let mut c = ConsumedCapacity::builder();
        while let Some(field) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            c = match field.as_ref() {
                "TableName" => c.set_table_name(Some(map.next_value::<String>()?)),
                "CapacityUnits" => c.set_capacity_units(Some(map.next_value::<f64>()?)),
                "ReadCapacityUnits" => c.set_read_capacity_units(Some(map.next_value::<f64>()?)),
                "WriteCapacityUnits" => c.set_write_capacity_units(Some(map.next_value::<f64>()?)),
                "Table" | "LocalSecondaryIndexes" | "GlobalSecondaryIndexes" | "VectorIndexes" => {
                    return Err(de::Error::custom("a capacity breakdown"))
                }
                _ => {
                    map.next_value_seed(Skip)?;
                    c
                }
            };
        }
        Ok(c.build())
    }
}
