//! Public revocation endpoints and certificate export downloads.
//!
//! - `GET /api/v1/crl/{issuer_id}`: the issuer's CRL, DER
//!   (`application/pkix-crl`), or PEM with `?format=pem` or
//!   `Accept: application/x-pem-file`.
//! - `GET /api/v1/ocsp/{issuer_id}/{serial}` (certctl's form, hex serial),
//!   `GET /api/v1/ocsp/{issuer_id}/{base64 request}` (RFC 6960 appendix A)
//!   and `POST /api/v1/ocsp/{issuer_id}` with `application/ocsp-request`.
//! - `GET|POST /api/v1/exports/{token}`: single-use export links; the link is
//!   the credential. For PKCS#12 the GET uses the link up and shows a form
//!   asking for the password, carrying a one-time ticket in a hidden field;
//!   the POST downloads with the ticket (or, for programs, with the link's
//!   own token and a JSON password). The access log and the `api_request`
//!   audit event show these paths with the token replaced by its link id
//!   (`middleware.rs`).
//! - `POST /api/v1/certificates/{id}/export` (bearer): `{"format", "password"}`.
//!
//! CRL, OCSP and export links need no bearer token: relying parties and
//! browsers fetch them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use certctl_engine::ops::{self, ExportFile, ExportFormat, OpenedExport, Outcome};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, invalid_request};

const OCSP_RESPONSE: &str = "application/ocsp-response";
/// Largest OCSP request accepted (requests are a few hundred bytes).
const MAX_OCSP_REQUEST: usize = 16 * 1024;

#[derive(Debug, Default, Deserialize)]
pub struct CrlQuery {
    #[serde(default)]
    format: Option<String>,
}

pub async fn crl(
    State(state): State<AppState>,
    Path(issuer_id): Path<String>,
    Query(q): Query<CrlQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let crl = state.engine.crl(&issuer_id).await?;
    let wants_pem = q.format.as_deref() == Some("pem")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/x-pem-file"));
    let max_age = (crl.next_update - state.engine.now()).clamp(0, 300);
    let cache = format!("public, max-age={max_age}");
    if wants_pem {
        let b64 = base64::engine::general_purpose::STANDARD.encode(crl.der.as_slice());
        let mut pem = String::from("-----BEGIN X509 CRL-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END X509 CRL-----\n");
        return Ok((
            [
                (header::CONTENT_TYPE, "application/x-pem-file".to_owned()),
                (header::CACHE_CONTROL, cache),
            ],
            pem,
        )
            .into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/pkix-crl".to_owned()),
            (header::CACHE_CONTROL, cache),
        ],
        crl.der.as_ref().clone(),
    )
        .into_response())
}

fn ocsp_reply(der: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, OCSP_RESPONSE)], der).into_response()
}

/// `GET /ocsp/{issuer}/{x}`: `x` is a hex serial, or a base64 (possibly
/// URL-encoded) DER request. A DER request starts with 0x30, so its base64
/// starts with `M`, which is never a hex digit.
pub async fn ocsp_get(
    State(state): State<AppState>,
    Path((issuer_id, tail)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !tail.is_empty() && tail.len() <= 42 && tail.bytes().all(|b| b.is_ascii_hexdigit()) {
        let der = state
            .engine
            .ocsp_response_for_serial(&issuer_id, &tail)
            .await?;
        return Ok(ocsp_reply(der));
    }
    let text = percent_decode(&tail);
    let der = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text.trim()))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()));
    let Ok(der) = der else {
        return Ok(ocsp_reply(
            certctl_engine::pki::ocsp::OcspError::MalformedRequest.response(),
        ));
    };
    Ok(ocsp_reply(
        state.engine.ocsp_response(&issuer_id, &der).await,
    ))
}

pub async fn ocsp_post(
    State(state): State<AppState>,
    Path(issuer_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ok_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/ocsp-request"));
    if !ok_type {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "OCSP requests are POSTed as application/ocsp-request",
        )
            .into_response();
    }
    if body.len() > MAX_OCSP_REQUEST {
        return ocsp_reply(certctl_engine::pki::ocsp::OcspError::MalformedRequest.response());
    }
    ocsp_reply(state.engine.ocsp_response(&issuer_id, &body).await)
}

/// Decodes `%XX` escapes (base64 in a path may arrive with `%2B`, `%2F`, `%3D`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------- export

fn file_response(file: ExportFile) -> Response {
    let disposition = format!("attachment; filename=\"{}\"", file.filename);
    let mut res = ([(header::CONTENT_TYPE, file.content_type)], file.bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `GET /api/v1/exports/{token}`: PEM/DER download at once. PKCS#12 asks
/// for the password first; opening the page uses the link up, and the form
/// carries the one-time ticket that the POST redeems, so the token (which
/// may have been seen on its way here) is worth nothing once the page shows.
pub async fn export_link_get(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    match state.engine.open_export_link(&token).await? {
        OpenedExport::PasswordForm { ticket, .. } => {
            // The ticket is base64url: nothing in it needs HTML escaping.
            let page = zeroize::Zeroizing::new(format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>certctl export</title></head>\
                 <body><h1>Download the PKCS#12 file</h1>\
                 <p>Choose the password that will protect the file (at least 8 characters). \
                 This page works once and for 5 minutes; the link is already used up.</p>\
                 <form method=\"post\"><input type=\"hidden\" name=\"ticket\" value=\"{}\">\
                 <input type=\"password\" name=\"password\" minlength=\"8\" required autofocus> \
                 <button type=\"submit\">Download</button></form></body></html>",
                ticket.as_str()
            ));
            Ok((
                [(header::CACHE_CONTROL, "no-store")],
                Html(page.to_string()),
            )
                .into_response())
        }
        OpenedExport::File(file) => Ok(file_response(file)),
    }
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: Option<String>,
    /// The one-time ticket of an opened PKCS#12 page.
    #[serde(default)]
    ticket: Option<String>,
}

/// `POST /api/v1/exports/{token}` with a form or JSON `password`.
pub async fn export_link_post(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let form: PasswordForm = if json {
        serde_json::from_slice(&body).map_err(|_| invalid_request("the body is not valid JSON"))?
    } else {
        urlencoded_form(&body)
    };
    // The page's ticket when there is one; otherwise the link itself (a
    // program POSTing the password without opening the page).
    let redeem = form.ticket.as_deref().unwrap_or(&token);
    let file = state
        .engine
        .download_export(redeem, form.password.as_deref())
        .await?;
    Ok(file_response(file))
}

/// Reads `password=...` and `ticket=...` from an urlencoded form without
/// another dependency.
fn urlencoded_form(body: &[u8]) -> PasswordForm {
    let text = String::from_utf8_lossy(body);
    let field = |name: &str| {
        text.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| percent_decode(&v.replace('+', " ")))
        })
    };
    PasswordForm {
        password: field("password"),
        ticket: field("ticket"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `POST /api/v1/certificates/{id}/export`: the file itself. PKCS#12 runs
/// `create_export_link` and redeems the link at once with the password, so
/// the password never enters an operation's input (nor the audit log).
pub async fn export_certificate(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: ExportBody = if body.iter().all(u8::is_ascii_whitespace) {
        ExportBody {
            format: None,
            password: None,
        }
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| invalid_request(format!("the request body is not valid: {e}")))?
    };
    let format = match req.format.as_deref() {
        None => ExportFormat::Pem,
        Some(f) => ExportFormat::parse(f)
            .ok_or_else(|| invalid_request("format must be pem, der or pkcs12"))?,
    };
    if format == ExportFormat::Pkcs12 {
        let password = req
            .password
            .ok_or_else(|| invalid_request("PKCS#12 export needs a password"))?;
        certctl_engine::pki::pkcs12::check_password(&password)?;
        let out = state
            .engine
            .call::<ops::CreateExportLink>(&principal, ops::CreateExportLinkInput { id, format })
            .await?;
        let link = match out {
            Outcome::Completed { result } => result,
            gated @ Outcome::ApprovalRequired(_) => {
                return Ok((StatusCode::ACCEPTED, Json(gated)).into_response());
            }
        };
        let token = ops::export_token_of(&link.url);
        return Ok(file_response(
            state.engine.download_export(token, Some(&password)).await?,
        ));
    }
    let out = state
        .engine
        .call::<ops::ExportCertificate>(&principal, ops::ExportCertificateInput { id, format })
        .await?
        .completed()?;
    let bytes = match (out.pem, out.der_base64) {
        (Some(pem), _) => pem.into_bytes(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| certctl_engine::Error::internal("export produced bad base64"))?,
        _ => return Err(certctl_engine::Error::internal("export produced nothing").into()),
    };
    let content_type = if format == ExportFormat::Der {
        "application/pkix-cert"
    } else {
        "application/pem-certificate-chain"
    };
    Ok(file_response(ExportFile {
        content_type,
        filename: out.filename,
        bytes,
    }))
}
