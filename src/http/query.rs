//! A query parameter an operation does not define is refused (`400 bad_request`,
//! `details.parameter`), by the OpenAPI document's own list of each operation's parameters: a
//! misspelt filter (`GET /events?carv_file_id=…`) is an error, not a silently wider answer.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorCode};

/// A route's path with every `{…}` segment alike, so axum's `/files/{id}` meets the
/// document's `/files/{carv_file_id}`.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The query parameters of each documented operation, by (method, path shape).
static DEFINED: LazyLock<HashMap<(String, String), HashSet<String>>> = LazyLock::new(|| {
    let mut defined = HashMap::new();
    let paths = super::openapi_document()["paths"].as_object();
    for (path, operations) in paths.into_iter().flatten() {
        let Some(operations) = operations.as_object() else {
            continue;
        };
        for (method, operation) in operations {
            let names = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            defined.insert((method.to_ascii_uppercase(), shape(path)), names);
        }
    }
    defined
});

/// Route layer: refuses a documented operation's request that carries a query parameter the
/// operation does not define. Routes outside the document (signed URLs) are left alone.
pub async fn refuse_unknown_parameters(req: Request, next: Next) -> Response {
    if let (Some(path), Some(query)) = (req.extensions().get::<MatchedPath>(), req.uri().query())
        && let Some(defined) = DEFINED.get(&(req.method().to_string(), shape(path.as_str())))
        && let Some((name, _)) = url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| !defined.contains(name.as_ref()))
    {
        return ApiError::new(
            ErrorCode::BadRequest,
            format!("This operation has no query parameter '{name}'"),
        )
        .with_detail("parameter", name.into_owned())
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::{DEFINED, shape};

    #[test]
    fn the_document_defines_the_paging_and_redirect_parameters() {
        let files = &DEFINED[&("GET".to_owned(), shape("/files"))];
        assert!(
            files.contains("limit") && files.contains("cursor"),
            "{files:?}"
        );
        let content = &DEFINED[&("GET".to_owned(), shape("/files/{id}/content"))];
        assert!(content.contains("redirect"), "{content:?}");
        assert!(DEFINED[&("POST".to_owned(), shape("/uploads"))].is_empty());
    }
}
