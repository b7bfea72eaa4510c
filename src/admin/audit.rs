//! `/api/v1/admin/audit`: the audit log by actor, action and time, newest first.

use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use serde::Serialize;

use super::query::{self, Pagination, Params};
use crate::accounts::UserId;
use crate::accounts::routes::no_store;
use crate::app::AppState;
use crate::audit::EntryView;
use crate::audit::query::{self as log, Filter};
use crate::auth::Caller;
use crate::error::{AppError, FieldError, ProblemBody};
use crate::http::Json;
use crate::roles::{self, Permission};

/// A page of audit entries.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    items: Vec<EntryView>,
    page: u32,
    per_page: u32,
    total: i64,
}

/// An RFC 3339 timestamp in microseconds since the epoch.
fn micros(raw: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

fn parse_filter(params: &Params, errors: &mut Vec<FieldError>) -> Filter {
    let mut filter = Filter::default();
    if let Some(actor) = params.get("actor") {
        match UserId::parse(actor) {
            Some(id) => filter.actor = Some(id.to_string()),
            None => errors.push(FieldError::new("actor", "must be a user id")),
        }
    }
    if let Some(action) = params.get("action") {
        let valid = (1..=64).contains(&action.len())
            && action.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if valid {
            filter.action = Some(action.to_string());
        } else {
            errors.push(FieldError::new(
                "action",
                "must be an action name such as `login`",
            ));
        }
    }
    for (name, slot) in [("since", &mut filter.since), ("until", &mut filter.until)] {
        if let Some(raw) = params.get(name) {
            match micros(raw) {
                Some(at) => *slot = Some(at),
                None => errors.push(FieldError::new(name, "must be an RFC 3339 timestamp")),
            }
        }
    }
    filter
}

/// Audit entries matching every filter given, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin",
    security(("bearer" = [])),
    params(
        ("actor" = Option<String>, Query, description = "Only entries by this user id (a UUID)."),
        ("action" = Option<String>, Query, description = "Only entries of this action, e.g. `login_failed`.", pattern = "^[a-z_]{1,64}$"),
        ("since" = Option<String>, Query, description = "Only entries at or after this RFC 3339 time.", format = DateTime),
        ("until" = Option<String>, Query, description = "Only entries before this RFC 3339 time.", format = DateTime),
        ("page" = Option<u32>, Query, description = "Page number, from 1.", minimum = 1, maximum = 2147483647),
        ("per_page" = Option<u32>, Query, description = "Entries per page, 1 to 200 (default 50).", minimum = 1, maximum = 200),
    ),
    responses(
        (status = 200, description = "Matching entries, newest first; `details` includes what the entry recorded about people (audit readers only).", body = AuditPage),
        (status = 400, description = "A query parameter is invalid (`errors` names it).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks `audit:read` (slug `forbidden`; `mfa-required` when only a role that requires MFA would grant it and the session has no second factor).", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The admin API is not reachable from the caller's network.", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn search(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, AppError> {
    roles::require(&app.store, caller.principal(), Permission::AuditRead).await?;
    let params = Params::parse(raw.as_deref());
    let mut errors = Vec::new();
    let pagination = Pagination::parse(&params, &mut errors);
    let filter = parse_filter(&params, &mut errors);
    query::finish(errors)?;
    let (entries, total) = log::search(
        app.store.pool(),
        &filter,
        pagination.limit(),
        pagination.offset(),
    )
    .await?;
    Ok((
        no_store(),
        Json(AuditPage {
            items: entries.iter().map(EntryView::for_audit_readers).collect(),
            page: pagination.page,
            per_page: pagination.per_page,
            total,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_parsed_and_bad_ones_named() {
        let mut errors = Vec::new();
        let f = parse_filter(
            &Params::parse(Some(
                "action=login&since=2024-01-01T00:00:00Z&until=2024-01-01T00:00:01.5%2B00:00",
            )),
            &mut errors,
        );
        assert!(errors.is_empty());
        assert_eq!(f.action.as_deref(), Some("login"));
        assert_eq!(f.since, Some(1_704_067_200_000_000));
        assert_eq!(f.until, Some(1_704_067_201_500_000));

        let mut errors = Vec::new();
        parse_filter(
            &Params::parse(Some("actor=nobody&action=DROP%20TABLE&since=yesterday")),
            &mut errors,
        );
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["actor", "action", "since"]);
    }
}
