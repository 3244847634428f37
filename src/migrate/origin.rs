//! Where a migration's items come from (a live table or an export, local or `s3://`), the
//! key an export lacks (`--key`), and the plan that maps the items.

use std::sync::Arc;

use crate::cli::MigrateArgs;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::source::{KeyAttr, KeyAttrType, Source, TableInfo};

/// Where the items come from: a live table or an export.
pub(super) struct Origin {
    pub(super) info: TableInfo,
    pub(super) source: Option<Source>,
    pub(super) export: Option<crate::source::export::Export>,
    /// An `s3://` export: listed, to be downloaded under the run's lock.
    pub(super) download: Option<crate::source::s3::Download>,
    /// An s3:// export's local copies.
    pub(super) downloads: Option<crate::downloads::Downloads>,
}

impl Origin {
    pub(super) fn describe(&self) -> String {
        match (&self.source, &self.export) {
            (Some(s), _) => format!("{} ({})", self.info.name, s.describe_location()),
            (_, Some(e)) => format!("{} ({} files)", e.identity, e.files.len()),
            _ => self.info.name.clone(),
        }
    }
}

/// `--key PK[:S|N|B][,SK[:S|N|B]]` (type S by default).
pub(crate) fn parse_key(spec: &str) -> Result<Vec<KeyAttr>> {
    spec.split(',')
        .map(|part| {
            let (name, ty) = part.trim().split_once(':').unwrap_or((part.trim(), "S"));
            let ty = match ty.to_ascii_uppercase().as_str() {
                "S" => KeyAttrType::S,
                "N" => KeyAttrType::N,
                "B" => KeyAttrType::B,
                other => {
                    return Err(Error::config(format!(
                        "--key {spec}: type {other:?} of {name:?} is not S, N or B"
                    )))
                }
            };
            if name.is_empty() {
                return Err(Error::config(format!(
                    "--key {spec}: an attribute name is empty"
                )));
            }
            Ok(KeyAttr {
                name: name.to_string(),
                ty,
            })
        })
        .collect()
}

/// `work_dir`: where an s3:// export is downloaded (the checkpoint directory, or a local
/// folder of an s3:// one).
pub(super) async fn resolve_origin(
    args: &MigrateArgs,
    work_dir: &std::path::Path,
) -> Result<Origin> {
    match (&args.table, &args.export) {
        // With --export, --table names the stream's table (see `handover`), not the source.
        (Some(table), None) => {
            let source = Source::connect(&args.aws).await?;
            let mut info = source.describe(table).await?;
            if let Some(k) = &args.key {
                info.key = parse_key(k)?;
            }
            Ok(Origin {
                info,
                source: Some(source),
                export: None,
                download: None,
                downloads: None,
            })
        }
        (_, Some(path)) => {
            // The folder, also when given its manifest-summary.json (what AWS's console shows).
            let path = &crate::source::export::folder_of(path);
            let text = path.to_string_lossy().to_string();
            let (export, download, downloads) = if let Some(rest) = text.strip_prefix("s3://") {
                // Downloaded next to the checkpoint (files already there intact are not
                // fetched again), once the run holds its lock: here only listed.
                let dest = crate::downloads::Downloads::dir_for(work_dir, rest);
                let download =
                    crate::source::s3::prepare(&args.aws, &args.s3_endpoint_url, &text, &dest)
                        .await?;
                // Only now, the key list checked, is anything created.
                let d = crate::downloads::Downloads::open(work_dir, rest)?;
                (download.export.clone(), Some(download), Some(d))
            } else {
                (crate::source::export::open(path)?, None, None)
            };
            let key =
                match &args.key {
                    Some(k) => parse_key(k)?,
                    // With --follow, the key of the table whose stream is applied.
                    None if args.mapping.is_some() || args.follow => Vec::new(),
                    None => return Err(Error::config(
                        "an export carries no key schema: pass --key PK[,SK] (with :N or :B for \
                         number or binary keys) for the default mapping, or a --mapping file",
                    )),
                };
            let info = TableInfo {
                name: export.table_name.clone(),
                arn: export.identity.clone(),
                key,
                item_count: 0,
                size_bytes: 0,
            };
            Ok(Origin {
                info,
                source: None,
                export: Some(export),
                download,
                downloads,
            })
        }
        (None, None) => Err(Error::config("give either --table NAME or --export PATH")),
    }
}

/// The mapping file's plan, or the default mapping (into `--target-table` when given).
pub(super) fn load_plan(args: &MigrateArgs, info: &TableInfo) -> Result<Plan> {
    plan_for(args.mapping.as_deref(), args.target_table.as_deref(), info)
}

/// The mapping file's plan, or the default mapping (its table named by `--target-table`):
/// what migrate and verify both map the items with.
pub(crate) fn plan_for(
    mapping: Option<&std::path::Path>,
    target_table: Option<&str>,
    info: &TableInfo,
) -> Result<Plan> {
    match mapping {
        Some(path) => crate::mapping::load(path),
        None => {
            let mut plan = Plan::default_checked(info)?;
            if let (Some(spec), Some(t)) = (target_table, plan.tables.first_mut()) {
                (t.schema, t.name) = parse_target_table(spec)?;
            }
            Ok(plan)
        }
    }
}

/// `--target-table NAME` or `SCHEMA.NAME`: names as written, each a name PostgreSQL keeps whole.
pub(crate) fn parse_target_table(spec: &str) -> Result<(Option<String>, String)> {
    let (schema, name) = match spec.split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, spec),
    };
    for part in schema.iter().chain([&name]) {
        if part.is_empty() || part.len() > crate::plan::MAX_IDENT_BYTES {
            return Err(Error::config(format!(
                "--target-table {spec:?}: expected NAME or SCHEMA.NAME, each 1 to {} bytes",
                crate::plan::MAX_IDENT_BYTES
            )));
        }
    }
    Ok((schema.map(str::to_string), name.to_string()))
}

pub(super) fn read_limiter(
    args: &MigrateArgs,
) -> Result<Option<Arc<crate::source::scan::ReadLimiter>>> {
    match args.max_read_units {
        None => Ok(None),
        Some(n) if n.is_finite() && n > 0.0 => {
            Ok(Some(Arc::new(crate::source::scan::ReadLimiter::new(n))))
        }
        Some(n) => Err(Error::config(format!(
            "--max-read-units {n}: expected a positive number of read capacity units per second"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_target_table;

    #[test]
    fn target_table_is_a_name_or_schema_dot_name_taken_as_written() {
        let ok = |s: &str| parse_target_table(s).ok();
        assert_eq!(ok("full"), Some((None, "full".to_string())));
        assert_eq!(
            ok("app.Users 2"),
            Some((Some("app".to_string()), "Users 2".to_string()))
        );
        for bad in ["", ".t", "s.", &"x".repeat(64)] {
            let e = parse_target_table(bad).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains("SCHEMA.NAME")),
                "{bad:?}: {e:?}"
            );
        }
    }
}
