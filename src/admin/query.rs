//! Query strings of the admin lists: parsed by hand so that every bad parameter is a 400
//! problem naming it (API.md), never a plain-text rejection.

use std::collections::HashMap;

use crate::error::{AppError, FieldError};

/// The parameters of a query string; a parameter given twice keeps its last value.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Params {
        Params(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// `?page=` (>= 1, default 1) and `?per_page=` (1..=200, default 50).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pagination {
    pub page: u32,
    pub per_page: u32,
}

pub const DEFAULT_PER_PAGE: u32 = 50;
pub const MAX_PER_PAGE: u32 = 200;
/// The largest page number: the description's `page` is a 32-bit integer.
pub const MAX_PAGE: u32 = 2_147_483_647;

impl Pagination {
    pub fn parse(params: &Params, errors: &mut Vec<FieldError>) -> Pagination {
        let mut number = |name: &str, default: u32, max: u32| match params.get(name) {
            None => default,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => {
                    errors.push(FieldError::new(
                        name,
                        format!("must be an integer from 1 to {max}"),
                    ));
                    default
                }
            },
        };
        Pagination {
            page: number("page", 1, MAX_PAGE),
            per_page: number("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE),
        }
    }

    pub fn limit(self) -> i64 {
        i64::from(self.per_page)
    }

    pub fn offset(self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per_page)
    }
}

/// `Err` with every field error collected, or `Ok`.
pub fn finish(errors: Vec<FieldError>) -> Result<(), AppError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Invalid(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paginate(q: &str) -> (Pagination, Vec<String>) {
        let mut errors = Vec::new();
        let p = Pagination::parse(&Params::parse(Some(q)), &mut errors);
        (p, errors.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn pages_default_and_bad_values_name_their_parameter() {
        let (p, e) = paginate("");
        assert_eq!((p.page, p.per_page, e.len()), (1, 50, 0));
        let (p, _) = paginate("page=3&per_page=200");
        assert_eq!((p.offset(), p.limit()), (400, 200));
        for (q, field) in [
            ("page=0", "page"),
            ("page=-1", "page"),
            ("page=x", "page"),
            ("page=2147483648", "page"),
            ("per_page=0", "per_page"),
            ("per_page=201", "per_page"),
            ("per_page=", "per_page"),
        ] {
            assert_eq!(paginate(q).1, vec![field], "{q}");
        }
    }
}
