//! Bounded lists (SYSTEM.md §8): every list answers at most `limit` items (`?limit=`, default
//! [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and, when there are more, a `Link: <…>; rel="next"`
//! header (RFC 8288) to the next page.
//!
//! Pages are keysets, not offsets: the next link carries an opaque `after` cursor, the sort key
//! of the page's last item, and the next page starts strictly after it. Items inserted
//! meanwhile neither shift nor repeat what a client already read. What a cursor holds is the
//! list's business ([`Page::cursor`] parses it back); this module only carries it, and refuses
//! one the list cannot read with 400.
//!
//! The link is a relative reference made of the path the client called (the entry point
//! forwards `/api/…` unchanged) and its query, with `limit` and `after` replaced, so the filters
//! of the list carry over to every page.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::http::{FieldError, Problem};

/// Items per page when the client does not say.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most items one page holds.
pub const MAX_LIMIT: u32 = 1000;

/// The query parameters of a paginated list: `?limit=&after=`. Lists that take filters too
/// flatten this into their own query type, or extract it beside it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000; 100 when absent.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
    /// Where the page starts: the cursor of the previous page's `Link: rel="next"`. Opaque.
    pub after: Option<String>,
}

/// Page queries whose `after` is documented with the exact shape of one kind of cursor, so that
/// every value the OpenAPI document allows is one the list can read (an outside fuzzer sends
/// any string the pattern admits). Each converts into a [`PageQuery`].
macro_rules! page_query {
    ($(#[$doc:meta])* $name:ident, $pattern:literal, $example:literal, $shape:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            /// Items per page, 1 to 1000; 100 when absent.
            #[param(minimum = 1, maximum = 1000, default = 100)]
            pub limit: Option<i64>,
            /// Where the page starts: the cursor of the previous page's `Link: rel="next"`.
            #[param(pattern = $pattern, example = $example)]
            pub after: Option<String>,
        }

        impl $name {
            /// See [`PageQuery::page`]; an `after` of another shape than the pattern is a 400.
            pub fn page(self) -> Result<Page, Problem> {
                if self.after.as_deref().is_some_and(|after| !$shape(after)) {
                    return Err(not_a_cursor());
                }
                PageQuery {
                    limit: self.limit,
                    after: self.after,
                }
                .page()
            }
        }
    };
}

page_query!(
    /// A list keyed by a positive integer id below 10^18 (products, audit entries).
    IdPageQuery,
    r"^[1-9][0-9]{0,17}$",
    "42",
    shape::id
);
page_query!(
    /// A list keyed by a version, from 1 to 999,999,999 (an order's events).
    VersionPageQuery,
    r"^[1-9][0-9]{0,8}$",
    "3",
    shape::version
);
page_query!(
    /// A list keyed by a UUID in its hyphenated lower-case form (orders).
    UuidPageQuery,
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    "0192f0c1-7d2e-7b3a-9c4d-5e6f7a8b9c0d",
    shape::uuid
);
page_query!(
    /// A list keyed by a time in microseconds since 1970 (up to the year 2286) and a UUID in
    /// its simple form, joined by a dot (payments).
    TimeIdPageQuery,
    r"^[0-9]{1,16}\.[0-9a-f]{32}$",
    "1733533200123456.0192f0c17d2e7b3a9c4d5e6f7a8b9c0d",
    shape::time_id
);

/// The shapes of the patterns above, checked by hand: what the document admits is exactly what
/// the server takes.
mod shape {
    fn digits(text: &str, min: usize, max: usize) -> bool {
        (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
    }

    fn lower_hex(text: &str, len: usize) -> bool {
        text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    /// `^[1-9][0-9]{0,17}$`
    pub(super) fn id(text: &str) -> bool {
        digits(text, 1, 18) && !text.starts_with('0')
    }

    /// `^[1-9][0-9]{0,8}$`
    pub(super) fn version(text: &str) -> bool {
        digits(text, 1, 9) && !text.starts_with('0')
    }

    /// `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`
    pub(super) fn uuid(text: &str) -> bool {
        let parts: Vec<&str> = text.split('-').collect();
        parts.len() == 5
            && parts
                .iter()
                .zip([8, 4, 4, 4, 12])
                .all(|(part, len)| lower_hex(part, len))
    }

    /// `^[0-9]{1,16}\.[0-9a-f]{32}$`
    pub(super) fn time_id(text: &str) -> bool {
        text.split_once('.')
            .is_some_and(|(micros, id)| digits(micros, 1, 16) && lower_hex(id, 32))
    }
}

fn not_a_cursor() -> Problem {
    Problem::bad_request("`after` is not a cursor of this list; follow the Link header")
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub after: Option<String>,
}

impl PageQuery {
    /// A `limit` out of `1..=MAX_LIMIT` is a 422 problem.
    pub fn page(self) -> Result<Page, Problem> {
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(n) => match u32::try_from(n) {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid-page",
                        "The page request breaks a rule of the list",
                    )
                    .errors(vec![FieldError {
                        field: "limit".to_owned(),
                        message: format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                    }]));
                }
            },
        };
        Ok(Page {
            limit,
            after: self.after,
        })
    }
}

impl Page {
    /// How many rows to read: one more than the page holds, to learn whether a next page exists.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// The cursor parsed by the list's `parse`, if the request has one; 400 if it does not
    /// parse (a cursor is only ever one this list gave out).
    pub fn cursor<T>(&self, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, Problem> {
        match &self.after {
            None => Ok(None),
            Some(raw) => parse(raw).map(Some).ok_or_else(not_a_cursor),
        }
    }

    /// The page's response: at most `limit` of `rows` (read with [`Page::fetch`]) as a JSON
    /// array, and a `Link: rel="next"` when there were more. `cursor` makes the cursor of an
    /// item: the next page starts after it.
    pub fn respond<T: Serialize>(
        &self,
        uri: &Uri,
        mut rows: Vec<T>,
        cursor: impl Fn(&T) -> String,
    ) -> Response {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let link = match rows.last() {
            Some(last) if more => next_link(uri, self.limit, &cursor(last)),
            _ => None,
        };
        let mut response = axum::Json(rows).into_response();
        if let Some(link) = link {
            response.headers_mut().insert(header::LINK, link);
        }
        response
    }
}

/// `<path?query&limit=…&after=…>; rel="next"`: the request's path and query with `limit` and
/// `after` replaced.
pub fn next_link(uri: &Uri, limit: u32, after: &str) -> Option<HeaderValue> {
    let mut query: Vec<&str> = (uri.query().unwrap_or_default().split('&'))
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            !pair.is_empty() && key != "limit" && key != "after"
        })
        .collect();
    let limit = format!("limit={limit}");
    let after = format!("after={}", encode(after));
    query.push(&limit);
    query.push(&after);
    let value = format!("<{}?{}>; rel=\"next\"", uri.path(), query.join("&"));
    HeaderValue::from_str(&value).ok()
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: Option<i64>) -> Result<Page, Problem> {
        PageQuery { limit, after: None }.page()
    }

    #[test]
    fn the_limit_defaults_to_100_and_stays_within_1_to_1000() {
        assert_eq!(page(None).map(|p| p.limit).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(page(Some(1)).map(|p| p.limit).ok(), Some(1));
        assert_eq!(page(Some(1000)).map(|p| p.limit).ok(), Some(1000));
        for bad in [0, -1, 1001, i64::MAX] {
            let problem = page(Some(bad)).err().map(|p| (p.status, p.kind));
            assert_eq!(
                problem,
                Some((StatusCode::UNPROCESSABLE_ENTITY, "invalid-page")),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_cursor_has_exactly_the_shape_its_pattern_documents() {
        assert!(shape::id("1") && shape::id("999999999999999999"));
        assert!(!shape::id("0") && !shape::id("01") && !shape::id("-1") && !shape::id(""));
        assert!(!shape::id("1000000000000000000") && !shape::id("1a"));
        assert!(shape::version("999999999") && !shape::version("1000000000"));
        assert!(shape::uuid("0192f0c1-7d2e-7b3a-9c4d-5e6f7a8b9c0d"));
        assert!(!shape::uuid("0192F0C1-7D2E-7B3A-9C4D-5E6F7A8B9C0D"));
        assert!(!shape::uuid("0192f0c17d2e7b3a9c4d5e6f7a8b9c0d"));
        assert!(shape::time_id(
            "1733533200123456.0192f0c17d2e7b3a9c4d5e6f7a8b9c0d"
        ));
        assert!(!shape::time_id(
            "17335332001234567.0192f0c17d2e7b3a9c4d5e6f7a8b9c0d"
        ));
        assert!(!shape::time_id("1733.0192f0c1-7d2e-7b3a-9c4d-5e6f7a8b9c0d"));
        // The largest values the shapes admit still parse as the lists read them.
        assert!("999999999999999999".parse::<i64>().is_ok());
        assert!("999999999".parse::<i32>().is_ok());
        let refused = IdPageQuery {
            limit: None,
            after: Some("0".to_owned()),
        }
        .page()
        .err()
        .map(|p| p.status);
        assert_eq!(refused, Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn the_next_link_keeps_the_path_and_filters_and_replaces_limit_and_after() {
        let uri: Uri = "/api/payments?customerId=42&limit=5&after=old&x"
            .parse()
            .unwrap_or_default();
        let link =
            next_link(&uri, 5, "1733.0f/a b").and_then(|v| v.to_str().ok().map(str::to_owned));
        assert_eq!(
            link.as_deref(),
            Some("</api/payments?customerId=42&x&limit=5&after=1733.0f%2Fa%20b>; rel=\"next\"")
        );
        let bare: Uri = "/api/stock".parse().unwrap_or_default();
        let link = next_link(&bare, 100, "3").and_then(|v| v.to_str().ok().map(str::to_owned));
        assert_eq!(
            link.as_deref(),
            Some("</api/stock?limit=100&after=3>; rel=\"next\"")
        );
    }

    #[test]
    fn a_page_holds_at_most_limit_items_and_links_only_when_more_exist() {
        let uri: Uri = "/api/stock".parse().unwrap_or_default();
        let p = page(Some(2)).unwrap_or(Page {
            limit: 0,
            after: None,
        });
        let full = p.respond(&uri, vec![1, 2, 3], |n| n.to_string());
        assert_eq!(
            full.headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok()),
            Some("</api/stock?limit=2&after=2>; rel=\"next\"")
        );
        let last = p.respond(&uri, vec![1, 2], |n| n.to_string());
        assert!(last.headers().get(header::LINK).is_none());
    }
}
