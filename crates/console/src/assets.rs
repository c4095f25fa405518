//! The console's stylesheet and its one script, compiled into the binary: nothing is fetched
//! from elsewhere at run time, and the page's Content-Security-Policy allows only this origin.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use platform::http::Problem;

const CSS: &str = include_str!("../assets/console.css");
const LIVE_JS: &str = include_str!("../assets/live.js");

pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "live.js" => (LIVE_JS, "text/javascript; charset=utf-8"),
        _ => return Problem::not_found("No such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Assets change only with the binary; an hour of caching spares the reloads.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}
