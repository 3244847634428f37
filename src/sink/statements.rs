//! The SQL text of the sink's upsert (see the module documentation of `sink`).

use crate::plan::{ident, TablePlan};

/// `by_text[i]`: compare column `i` by its text (its type has no `=`: see the module's
/// documentation).
pub(super) fn upsert_sql(
    t: &TablePlan,
    by_text: &[bool],
    stage: &str,
    run_xid: Option<u32>,
    distinct: bool,
) -> String {
    let (all, key, rest) = t.quoted_columns();
    let on_conflict = if rest.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let set: Vec<String> = rest.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
        let compared = |side: &str| -> Vec<String> {
            (0..t.columns.len())
                .filter(|i| !t.key.contains(i))
                .map(|i| {
                    let c = ident(&t.columns[i].name);
                    match by_text.get(i) {
                        Some(true) => format!("{side}.{c}::text"),
                        _ => format!("{side}.{c}"),
                    }
                })
                .collect()
        };
        let (old, new) = (compared("t"), compared("EXCLUDED"));
        format!(
            "DO UPDATE SET {} WHERE ROW({}) IS DISTINCT FROM ROW({})",
            set.join(", "),
            old.join(", "),
            new.join(", ")
        )
    };
    // Rows already in the target that a transaction of this run wrote (xmin newer than the
    // run's start; wraparound-safe through age()). The CTE sees the table before this INSERT.
    let earlier = match run_xid {
        Some(xid) => format!(
            ", old AS (SELECT 1 FROM {target} t JOIN src USING ({key}) WHERE age(t.xmin) <= age('{xid}'::xid))",
            target = t.sql_name(),
            key = key.join(", "),
        ),
        None => ", old AS (SELECT 1 WHERE false)".to_string(),
    };
    let src = if distinct {
        format!(
            "SELECT DISTINCT ON ({key}) {all} FROM pg_temp.{stage} ORDER BY {key}, {seq} DESC",
            key = key.join(", "),
            all = all.join(", "),
            seq = ident(&t.seq_column()),
        )
    } else {
        format!("SELECT {} FROM pg_temp.{stage}", all.join(", "))
    };
    format!(
        "WITH src AS ({src}){earlier}, \
         up AS (INSERT INTO {target} AS t ({all}) SELECT {all} FROM src ON CONFLICT ({key}) {on_conflict} \
         RETURNING (xmax = 0) AS inserted) \
         SELECT (SELECT count(*) FROM src), count(*) FILTER (WHERE inserted), \
         count(*) FILTER (WHERE NOT inserted), (SELECT count(*) FROM old) FROM up",
        key = key.join(", "),
        all = all.join(", "),
        target = t.sql_name(),
    )
}
