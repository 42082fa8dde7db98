//! Building blocks for list queries: bind arguments, keyset cursors, pages.

use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A bind argument of a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// Accumulates `WHERE` clauses with numbered placeholders, which both SQLite
/// and PostgreSQL accept (`$1`, `$2`, ...).
#[derive(Debug, Default)]
pub(crate) struct Where {
    pub clauses: Vec<String>,
    pub args: Vec<Arg>,
}

impl Where {
    /// Adds a bind argument and returns its placeholder.
    pub fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    pub fn push(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// Binds accumulated arguments onto a query in order.
macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                $crate::store::query::Arg::Text(s) => q.bind(s.clone()),
                $crate::store::query::Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}
pub(crate) use bind_args;

/// An opaque keyset cursor: the sort key and id of the last row of a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The sort field the cursor was made for; a cursor used with another sort is refused.
    pub s: String,
    /// The last row's sort key (integer keys as numbers, text keys as strings).
    pub k: serde_json::Value,
    /// The last row's id.
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(s: &str) -> Result<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim())
            .map_err(|_| Error::invalid("cursor is not valid"))?;
        serde_json::from_slice(&bytes).map_err(|_| Error::invalid("cursor is not valid"))
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Total matching rows; given on the first page (no cursor), omitted on later ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Largest page a list returns.
pub const MAX_PAGE_SIZE: i64 = 1000;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: i64 = 50;

/// Clamps a requested page size.
pub fn page_size(requested: Option<i64>) -> Result<i64> {
    match requested {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(n) => Err(Error::invalid(format!(
            "per_page must be between 1 and {MAX_PAGE_SIZE}, got {n}"
        ))),
    }
}
