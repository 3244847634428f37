//! DynamoDB JSON (`{"name": {"S": "..."}}`), as exports, checkpoints and rejects hold it;
//! lossless both ways (N keeps its original text).

use crate::checkpoint::printable;
use std::fmt;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::{push_seg, Item, Seg, ValueError};

fn strings(xs: &[String]) -> Value {
    Value::Array(xs.iter().cloned().map(Value::String).collect())
}

/// DynamoDB JSON of one item: `{"name": {"S": "..."}, ...}`.
pub fn item_to_ddb_json(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), value_to_ddb_json(v)))
            .collect(),
    )
}

/// DynamoDB JSON of one value (`{"N": "1.50"}` keeps the original number text).
/// An unsupported (unknown) value becomes `{"UNKNOWN": null}`, which does not parse back.
pub fn value_to_ddb_json(v: &AttributeValue) -> Value {
    let (tag, val) = match v {
        AttributeValue::S(s) => ("S", Value::String(s.clone())),
        AttributeValue::N(n) => ("N", Value::String(n.clone())),
        AttributeValue::B(b) => ("B", Value::String(STANDARD.encode(b.as_ref()))),
        AttributeValue::Bool(b) => ("BOOL", Value::Bool(*b)),
        AttributeValue::Null(b) => ("NULL", Value::Bool(*b)),
        AttributeValue::M(m) => ("M", item_to_ddb_json(m)),
        AttributeValue::L(l) => ("L", Value::Array(l.iter().map(value_to_ddb_json).collect())),
        AttributeValue::Ss(ss) => ("SS", strings(ss)),
        AttributeValue::Ns(ns) => ("NS", strings(ns)),
        AttributeValue::Bs(bs) => (
            "BS",
            Value::Array(
                bs.iter()
                    .map(|b| Value::String(STANDARD.encode(b.as_ref())))
                    .collect(),
            ),
        ),
        _ => ("UNKNOWN", Value::Null),
    };
    let mut o = Map::new();
    o.insert(tag.to_owned(), val);
    Value::Object(o)
}

fn bad(path: &str, msg: impl fmt::Display) -> ValueError {
    if path.is_empty() {
        ValueError::DdbJson(msg.to_string())
    } else {
        ValueError::DdbJson(format!("at {path}: {msg}"))
    }
}

fn json_str<'v>(v: &'v Value, path: &str, tag: &str) -> Result<&'v str, ValueError> {
    v.as_str()
        .ok_or_else(|| bad(path, format_args!("{tag} must be a string")))
}

fn json_arr<'v>(v: &'v Value, path: &str, tag: &str) -> Result<&'v [Value], ValueError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| bad(path, format_args!("{tag} must be an array")))
}

fn json_bool(v: &Value, path: &str, tag: &str) -> Result<bool, ValueError> {
    v.as_bool()
        .ok_or_else(|| bad(path, format_args!("{tag} must be a boolean")))
}

fn blob(v: &Value, path: &str, tag: &str) -> Result<Blob, ValueError> {
    let s = json_str(v, path, tag)?;
    STANDARD
        .decode(s)
        .map(Blob::new)
        .map_err(|e| bad(path, format_args!("{tag} is not base64: {e}")))
}

fn string_list(v: &Value, path: &str, tag: &str) -> Result<Vec<String>, ValueError> {
    json_arr(v, path, tag)?
        .iter()
        .map(|x| json_str(x, path, tag).map(str::to_owned))
        .collect()
}

fn map_from(obj: &Map<String, Value>, top: bool, path: &mut String) -> Result<Item, ValueError> {
    let mut item = Item::with_capacity(obj.len());
    for (k, v) in obj {
        let len = path.len();
        push_seg(path, if top { Seg::Attr(k) } else { Seg::Field(k) });
        let r = value_from(v, path);
        path.truncate(len);
        item.insert(k.clone(), r?);
    }
    Ok(item)
}

fn value_from(v: &Value, path: &mut String) -> Result<AttributeValue, ValueError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad(path, "expected an object with one type key"))?;
    let mut it = obj.iter();
    let (tag, val) = match (it.next(), it.next()) {
        (Some(one), None) => one,
        _ => {
            return Err(bad(
                path,
                format_args!("expected one type key, found {}", obj.len()),
            ))
        }
    };
    let p = path.as_str();
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(json_str(val, p, tag)?.to_owned()),
        "N" => AttributeValue::N(json_str(val, p, tag)?.to_owned()),
        "B" => AttributeValue::B(blob(val, p, tag)?),
        "BOOL" => AttributeValue::Bool(json_bool(val, p, tag)?),
        "NULL" => AttributeValue::Null(json_bool(val, p, tag)?),
        "SS" => AttributeValue::Ss(string_list(val, p, tag)?),
        "NS" => AttributeValue::Ns(string_list(val, p, tag)?),
        "BS" => AttributeValue::Bs(
            json_arr(val, p, tag)?
                .iter()
                .map(|x| blob(x, p, tag))
                .collect::<Result<_, _>>()?,
        ),
        "M" => {
            let m = val
                .as_object()
                .ok_or_else(|| bad(p, "M must be an object"))?;
            AttributeValue::M(map_from(m, false, path)?)
        }
        "L" => {
            let xs = json_arr(val, p, tag)?;
            let mut l = Vec::with_capacity(xs.len());
            for (i, x) in xs.iter().enumerate() {
                let len = path.len();
                push_seg(path, Seg::Index(i));
                let r = value_from(x, path);
                path.truncate(len);
                l.push(r?);
            }
            AttributeValue::L(l)
        }
        other => {
            return Err(bad(
                p,
                format_args!("unknown type tag {}", printable(other)),
            ))
        }
    })
}

/// Parses a DynamoDB JSON item (`{"name": {"S": "..."}, ...}`).
pub fn item_from_ddb_json(v: &Value) -> Result<Item, ValueError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("", "item must be an object of attributes"))?;
    map_from(obj, true, &mut String::new())
}

/// Parses one DynamoDB JSON value (`{"N": "1.50"}`); N strings are kept as written.
pub fn value_from_ddb_json(v: &Value) -> Result<AttributeValue, ValueError> {
    value_from(v, &mut String::new())
}
