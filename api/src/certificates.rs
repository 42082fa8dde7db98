//! `GET /api/v1/certificates` and `GET /api/v1/certificates/{id}`: the first
//! resource-shaped routes, thin mirrors of `list_certificates` and
//! `get_certificate`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use certctl_engine::clock::UnixTime;
use certctl_engine::domain::EffectiveStatus;
use certctl_engine::ops::{
    CertificateDetails, CertificateIdInput, CertificatePage, GetCertificate, ListCertificates,
    ListCertificatesInput,
};
use certctl_engine::store::{CertificateFilter, CertificateSort};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, invalid_request};

/// The query string of a certificate list. Fields map one to one onto
/// [`ListCertificatesInput`]; `fields` is a comma-separated list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<EffectiveStatus>,
    owner_id: Option<String>,
    team_id: Option<String>,
    issuer_id: Option<String>,
    profile_id: Option<String>,
    environment: Option<String>,
    common_name: Option<String>,
    expires_before: Option<UnixTime>,
    expires_after: Option<UnixTime>,
    created_after: Option<UnixTime>,
    created_before: Option<UnixTime>,
    include_archived: Option<bool>,
    sort: Option<CertificateSort>,
    cursor: Option<String>,
    per_page: Option<i64>,
    fields: Option<String>,
}

impl From<ListQuery> for ListCertificatesInput {
    fn from(q: ListQuery) -> Self {
        ListCertificatesInput {
            filter: CertificateFilter {
                status: q.status,
                owner_id: q.owner_id,
                team_id: q.team_id,
                issuer_id: q.issuer_id,
                profile_id: q.profile_id,
                environment: q.environment,
                common_name: q.common_name,
                expires_before: q.expires_before,
                expires_after: q.expires_after,
                created_after: q.created_after,
                created_before: q.created_before,
                include_archived: q.include_archived.unwrap_or(false),
            },
            sort: q.sort,
            cursor: q.cursor.filter(|c| !c.is_empty()),
            per_page: q.per_page,
            fields: q.fields.map(|f| {
                f.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
        }
    }
}

/// `GET /api/v1/certificates`: `{"data": [...], "total": N, "next_cursor": "..."}`.
pub async fn list(
    State(state): State<AppState>,
    Caller(principal): Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<CertificatePage>, ApiError> {
    let Query(query) = query.map_err(|e| invalid_request(e.body_text()))?;
    let page = state
        .engine
        .call::<ListCertificates>(&principal, query.into())
        .await?
        .completed()?;
    Ok(Json(page))
}

/// `GET /api/v1/certificates/{id}`: the certificate with its versions and targets.
pub async fn get(
    State(state): State<AppState>,
    Caller(principal): Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<CertificateDetails>, ApiError> {
    let Path(id) = id.map_err(|e| invalid_request(e.body_text()))?;
    let details = state
        .engine
        .call::<GetCertificate>(&principal, CertificateIdInput { id })
        .await?
        .completed()?;
    Ok(Json(details))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(qs: &str) -> Result<ListCertificatesInput, String> {
        let uri: axum::http::Uri = format!("/x?{qs}").parse().map_err(|e| format!("{e}"))?;
        Query::<ListQuery>::try_from_uri(&uri)
            .map(|Query(q)| q.into())
            .map_err(|e| e.body_text())
    }

    #[test]
    fn query_maps_onto_the_operation_input() {
        let i = parse(
            "status=expiring&owner_id=own-1&sort=-not_after&per_page=10&fields=id,%20common_name,&expires_before=100",
        )
        .unwrap();
        assert_eq!(i.filter.status, Some(EffectiveStatus::Expiring));
        assert_eq!(i.filter.owner_id.as_deref(), Some("own-1"));
        assert_eq!(i.filter.expires_before, Some(100));
        assert_eq!(i.sort, Some(CertificateSort::NotAfterDesc));
        assert_eq!(i.per_page, Some(10));
        assert_eq!(
            i.fields,
            Some(vec!["id".to_owned(), "common_name".to_owned()])
        );
    }

    #[test]
    fn bad_queries_are_refused() {
        assert!(parse("status=sparkling").is_err());
        assert!(parse("per_page=ten").is_err());
        assert!(parse("colour=blue").is_err());
    }
}
