//! Verify, the known rejects: the keys of the items migrate recorded in its rejects files for
//! this source and target, read once before the source is (a local file, or an `s3://`
//! folder of parts fetched into a private copy that is removed after reading).
//!
//! A source item whose key is among them is *known rejected*: its rows are loaded into the
//! scratch tables marked so (see `scratch`), and `compare` counts those the target lacks as
//! `rejected_known` instead of `missing_in_target`. Only items are matched, by their key
//! attributes in DynamoDB JSON (the reject line's `key`); lines that are not items (an
//! export's malformed lines) name no key and are skipped. Without key attributes (an export
//! verified with a `--mapping` and no `--key`) nothing can be matched, and no reject is
//! known. The file is bounded by `--max-rejects`, so its keys fit in memory.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

use crate::checkpoint::Storage;
use crate::error::{Error, Result};
use crate::value::{self, Item};

/// The keys of the rejected items, as [`key_of_item`] spells them.
#[derive(Debug, Default)]
pub struct Known {
    keys: HashSet<String>,
}

impl Known {
    /// Read the rejects files `names` of `storage` (those that exist).
    pub fn read(storage: &dyn Storage, names: &[String], key_attrs: &[String]) -> Result<Known> {
        let mut known = Known::default();
        if key_attrs.is_empty() {
            return Ok(known);
        }
        for name in names {
            if storage.keeps_copies() {
                let copy = storage
                    .local_dir()?
                    .join(format!("verify-{}-{name}", std::process::id()));
                let read = storage
                    .fetch(name, &copy, None)
                    .and_then(|()| known.add_file(&copy, key_attrs));
                let _ = std::fs::remove_file(&copy);
                read?;
            } else {
                known.add_file(&storage.local_dir()?.join(name), key_attrs)?;
            }
        }
        Ok(known)
    }

    fn add_file(&mut self, path: &Path, key_attrs: &[String]) -> Result<()> {
        let f = match crate::private::open(path, std::fs::OpenOptions::new().read(true)) {
            Ok(f) => f,
            Err(_) if !path.exists() => return Ok(()),
            Err(e) => return Err(e),
        };
        for line in std::io::BufReader::new(f).lines() {
            let line = line.map_err(|e| Error::file(path, e))?;
            if let Some(k) = key_of_line(&line, key_attrs) {
                self.keys.insert(k);
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `item` is among the rejected items.
    pub fn holds(&self, item: &Item, key_attrs: &[String]) -> bool {
        !self.keys.is_empty() && self.keys.contains(&key_of_item(item, key_attrs))
    }
}

/// An item's key attributes in DynamoDB JSON, one per line (a missing one is `null`).
fn key_of_item(item: &Item, key_attrs: &[String]) -> String {
    key_attrs
        .iter()
        .map(|k| match item.get(k) {
            Some(v) => value::value_to_ddb_json(v).to_string(),
            None => "null".into(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A reject line's key, spelled as [`key_of_item`] spells it; None for a line that names no
/// key or none of `key_attrs`.
fn key_of_line(line: &str, key_attrs: &[String]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let key = v.get("key")?.as_object()?;
    if !key_attrs.iter().any(|k| key.contains_key(k)) {
        return None;
    }
    Some(
        key_attrs
            .iter()
            .map(|k| key.get(k).map_or_else(|| "null".into(), |v| v.to_string()))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejects::Rejects;
    use crate::transform::Reject;
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn a_reject_lines_key_matches_its_item_and_no_other() {
        let keys = vec!["PK".to_string(), "SK".to_string()];
        let item = |pk: &str, n: &str| -> Item {
            [
                ("PK".to_string(), AttributeValue::S(pk.into())),
                ("SK".to_string(), AttributeValue::N(n.into())),
                ("x".to_string(), AttributeValue::Bool(true)),
            ]
            .into_iter()
            .collect()
        };
        let reject = Reject {
            table: Some("t".into()),
            column: None,
            kind: "refused by PostgreSQL",
            reason: "r".into(),
        };
        let line = Rejects::line(&reject, &keys, &item("a\"b", "1"), Some(0));
        let mut known = Known::default();
        known.keys.extend(key_of_line(&line, &keys));
        assert_eq!(known.keys.len(), 1);
        assert!(known.holds(&item("a\"b", "1"), &keys));
        assert!(!known.holds(&item("a\"b", "2"), &keys));
        assert!(!known.holds(&item("a", "1"), &keys));
        // A line that is not an item names no key.
        assert_eq!(key_of_line(r#"{"file":"f","line":2}"#, &keys), None);
    }
}
