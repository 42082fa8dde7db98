//! List conventions shared by every list operation: `page`/`per_page`
//! (offset pages), `cursor`/`next_cursor` (keyset), `sort` (`-` for
//! descending), and `created_after`/`created_before`. Certificates, jobs and
//! the audit log page in SQL; the small inventory tables (agents, owners,
//! teams, profiles, policies, issuers, principals, targets, approvals) are read
//! in one query and paged here, which keeps one behaviour for all of them.

use std::cmp::Ordering;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::error::{Error, Result};
use crate::store::{Cursor, page_size};

/// Paging, sorting and time-range parameters of a list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ListParams {
    /// 1-based page (offset paging; not with `cursor`).
    pub page: Option<i64>,
    /// 1 to 1000, default 50.
    pub per_page: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Field; a `-` prefix sorts descending.
    pub sort: Option<String>,
    /// Created after (Unix time).
    pub created_after: Option<UnixTime>,
    /// Created before (Unix time).
    pub created_before: Option<UnixTime>,
}

/// A parsed `sort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub field: String,
    pub desc: bool,
}

impl SortKey {
    /// Parses `sort` against the fields a resource can be sorted by.
    pub fn parse(sort: Option<&str>, default: &str, allowed: &[&str]) -> Result<Self> {
        let s = sort.filter(|s| !s.is_empty()).unwrap_or(default);
        let (field, desc) = match s.strip_prefix('-') {
            Some(f) => (f, true),
            None => (s, false),
        };
        if !allowed.contains(&field) {
            return Err(Error::invalid(format!(
                "cannot sort by '{field}'; sortable fields: {}",
                allowed.join(", ")
            )));
        }
        Ok(Self {
            field: field.to_owned(),
            desc,
        })
    }

    pub fn as_string(&self) -> String {
        format!("{}{}", if self.desc { "-" } else { "" }, self.field)
    }
}

impl ListParams {
    /// `(page size, offset)`, checking that `page` and `cursor` are not mixed.
    pub fn window(&self) -> Result<(i64, i64)> {
        let size = page_size(self.per_page)?;
        let offset = match self.page {
            None => 0,
            Some(_) if self.cursor.is_some() => {
                return Err(Error::invalid("use either page or cursor, not both"));
            }
            Some(p) if (1..=1_000_000).contains(&p) => (p - 1) * size,
            Some(p) => return Err(Error::invalid(format!("page must be 1 or more, got {p}"))),
        };
        Ok((size, offset))
    }
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    /// Total matching items; given when no cursor was passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    /// The same page with each item converted.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> List<U> {
        List {
            data: self.data.into_iter().map(f).collect(),
            total: self.total,
            next_cursor: self.next_cursor,
        }
    }

    /// A complete list, unpaged.
    pub fn all(data: Vec<T>) -> Self {
        let total = Some(data.len() as i64);
        Self {
            data,
            total,
            next_cursor: None,
        }
    }
}

fn rank(v: &serde_json::Value) -> u8 {
    use serde_json::Value as V;
    match v {
        V::Null => 0,
        V::Bool(_) => 1,
        V::Number(_) => 2,
        V::String(_) => 3,
        _ => 4,
    }
}

/// A total order on JSON scalars: null < booleans < numbers < strings.
fn cmp_values(a: &serde_json::Value, b: &serde_json::Value) -> Ordering {
    use serde_json::Value as V;
    match (a, b) {
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        (V::Number(x), V::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (V::String(x), V::String(y)) => x.cmp(y),
        _ if rank(a) != rank(b) => rank(a).cmp(&rank(b)),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Filters, sorts and pages rows read in full. Rows must serialize to
/// objects with an `id` and (for the time-range filters) a `created_at`.
pub fn paginate<T: Serialize>(
    rows: Vec<T>,
    p: &ListParams,
    default_sort: &str,
    sortable: &[&str],
) -> Result<List<T>> {
    let (size, offset) = p.window()?;
    let sort = SortKey::parse(p.sort.as_deref(), default_sort, sortable)?;
    let mut keyed: Vec<(serde_json::Value, String, T)> = Vec::with_capacity(rows.len());
    for row in rows {
        let v = serde_json::to_value(&row).map_err(|e| Error::internal(e.to_string()))?;
        let created = v.get("created_at").and_then(|c| c.as_i64());
        if let Some(after) = p.created_after
            && created.is_none_or(|c| c <= after)
        {
            continue;
        }
        if let Some(before) = p.created_before
            && created.is_none_or(|c| c >= before)
        {
            continue;
        }
        let key = v.get(&sort.field).cloned().unwrap_or_default();
        let id = v
            .get("id")
            .and_then(|i| i.as_str())
            .unwrap_or_default()
            .to_owned();
        keyed.push((key, id, row));
    }
    let order = |ak: &serde_json::Value, ai: &str, bk: &serde_json::Value, bi: &str| {
        let o = cmp_values(ak, bk).then_with(|| ai.cmp(bi));
        if sort.desc { o.reverse() } else { o }
    };
    keyed.sort_by(|a, b| order(&a.0, &a.1, &b.0, &b.1));
    let total = keyed.len() as i64;
    let start = match &p.cursor {
        Some(c) if !c.is_empty() => {
            let c = Cursor::decode(c)?;
            if c.s != sort.as_string() {
                return Err(Error::invalid(
                    "cursor was made for another sort order; start again without a cursor",
                ));
            }
            keyed
                .iter()
                .position(|r| order(&r.0, &r.1, &c.k, &c.id) == Ordering::Greater)
                .unwrap_or(keyed.len())
        }
        _ => offset as usize,
    };
    let end = (start + size as usize).min(keyed.len());
    let next_cursor = if end < keyed.len() && end > start {
        let last = &keyed[end - 1];
        Some(
            Cursor {
                s: sort.as_string(),
                k: last.0.clone(),
                id: last.1.clone(),
            }
            .encode(),
        )
    } else {
        None
    };
    let data = keyed
        .into_iter()
        .skip(start)
        .take(end.saturating_sub(start))
        .map(|r| r.2)
        .collect();
    Ok(List {
        data,
        total: p.cursor.is_none().then_some(total),
        next_cursor,
    })
}

/// Declares a list operation's input: the [`ListParams`] fields inline
/// (so unknown fields are still refused) plus the resource's own filters.
macro_rules! list_input {
    // A list with a required field (`kind`), hence no `Default`.
    (required $(#[$m:meta])* $name:ident { $($body:tt)* }) => {
        list_input!(@emit [] $(#[$m])* $name { $($body)* });
    };
    ($(#[$m:meta])* $name:ident { $($body:tt)* }) => {
        list_input!(@emit [Default] $(#[$m])* $name { $($body)* });
    };
    (@emit [$($extra:ident)?] $(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        // No container `default`, so a required field can be declared; the
        // optional ones are `Option`s, which serde and schemars leave optional.
        #[derive(Debug, Clone, $($extra,)? serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// 1-based page (offset paging; not with `cursor`).
            pub page: Option<i64>,
            /// 1 to 1000, default 50.
            pub per_page: Option<i64>,
            /// `next_cursor` of the previous page.
            pub cursor: Option<String>,
            /// Field; a `-` prefix sorts descending.
            pub sort: Option<String>,
            /// Created after (Unix time).
            pub created_after: Option<$crate::clock::UnixTime>,
            /// Created before (Unix time).
            pub created_before: Option<$crate::clock::UnixTime>,
            $($(#[$fm])* pub $f: $t,)*
        }

        impl $name {
            /// The paging, sorting and time-range part.
            pub fn list_params(&self) -> $crate::ops::ListParams {
                $crate::ops::ListParams {
                    page: self.page,
                    per_page: self.per_page,
                    cursor: self.cursor.clone().filter(|c| !c.is_empty()),
                    sort: self.sort.clone(),
                    created_after: self.created_after,
                    created_before: self.created_before,
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        id: String,
        name: String,
        created_at: i64,
    }

    fn rows(n: i64) -> Vec<Row> {
        (0..n)
            .map(|i| Row {
                id: format!("r-{i:03}"),
                name: format!("n{}", (n - i) % 4),
                created_at: 100 + i,
            })
            .collect()
    }

    fn ids(l: &List<Row>) -> Vec<&str> {
        l.data.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn offset_pages_and_cursor_pages_agree() {
        let p = |page, cursor: Option<String>| ListParams {
            page,
            per_page: Some(3),
            cursor,
            sort: Some("-name".into()),
            ..Default::default()
        };
        let mut by_cursor = Vec::new();
        let mut cursor = None;
        loop {
            let l = paginate(rows(10), &p(None, cursor.clone()), "name", &["name"]).unwrap();
            by_cursor.extend(ids(&l).into_iter().map(str::to_owned));
            match l.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut by_page = Vec::new();
        for page in 1..=4 {
            let l = paginate(rows(10), &p(Some(page), None), "name", &["name"]).unwrap();
            assert_eq!(l.total, Some(10));
            by_page.extend(ids(&l).into_iter().map(str::to_owned));
        }
        assert_eq!(by_cursor, by_page);
        assert_eq!(by_page.len(), 10);
    }

    #[test]
    fn filters_and_refusals() {
        let p = ListParams {
            created_after: Some(104),
            created_before: Some(108),
            ..Default::default()
        };
        let l = paginate(rows(10), &p, "created_at", &["created_at"]).unwrap();
        assert_eq!(ids(&l), ["r-005", "r-006", "r-007"]);
        let bad_sort = ListParams {
            sort: Some("colour".into()),
            ..Default::default()
        };
        assert!(paginate(rows(2), &bad_sort, "name", &["name"]).is_err());
        let mixed = ListParams {
            page: Some(2),
            cursor: Some("x".into()),
            ..Default::default()
        };
        assert!(paginate(rows(2), &mixed, "name", &["name"]).is_err());
    }
}
