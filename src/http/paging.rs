//! Pages of a list (`GET /events`, `GET /files`): newest first, `limit` entries, an opaque
//! `cursor` that names the last entry of the previous page (its time and id), and the `next`
//! path. A cursor is a position, not a snapshot: entries added since never shift a page.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::error::{ApiError, ErrorCode, Result};
use crate::repo::PageCursor;

/// Entries per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;

/// A `400` naming the query parameter that is wrong.
pub fn bad_parameter(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message).with_detail("parameter", name)
}

/// What a list request asked for: its own filters are read by the caller.
pub struct Page {
    pub limit: i64,
    pub cursor: Option<PageCursor>,
    /// The filters, as they go into the `next` path.
    filters: Vec<(String, String)>,
}

impl Page {
    /// Reads `limit` and `cursor` from a query string and hands every other parameter to
    /// `filter`, which keeps what it knows (returning `true`) or refuses it.
    pub fn parse(
        query: Option<&str>,
        mut filter: impl FnMut(&str, &str) -> Result<bool>,
    ) -> Result<Page> {
        let mut page = Page {
            limit: DEFAULT_PAGE,
            cursor: None,
            filters: Vec::new(),
        };
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match name.as_ref() {
                "limit" => {
                    page.limit = value
                        .parse::<i64>()
                        .ok()
                        .filter(|l| (1..=MAX_PAGE).contains(l))
                        .ok_or_else(|| {
                            bad_parameter(
                                "limit",
                                format!("limit is a number from 1 to {MAX_PAGE}"),
                            )
                        })?;
                }
                "cursor" => {
                    page.cursor = parse_cursor(&value).map_err(|()| {
                        bad_parameter("cursor", "cursor is not one this service gave out")
                    })?;
                }
                other => {
                    if filter(other, &value)? {
                        page.filters.push((other.to_owned(), value.into_owned()));
                    }
                }
            }
        }
        Ok(page)
    }

    /// What to ask the database for: one more than a page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts what was fetched to a page and says where the next one starts (`path?…`), if any.
    pub fn finish<T>(
        &self,
        path: &str,
        entries: &mut Vec<T>,
        position: impl Fn(&T) -> (DateTime<Utc>, Uuid),
    ) -> Option<String> {
        let more = entries.len() as i64 > self.limit;
        entries.truncate(self.limit as usize);
        let last = entries.last().filter(|_| more)?;
        let (created_at, id) = position(last);
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.filters {
            next.append_pair(name, value);
        }
        next.append_pair("limit", &self.limit.to_string());
        next.append_pair("cursor", &cursor_text(created_at, id));
        Some(format!("{path}?{}", next.finish()))
    }
}

/// The cursor of the page after the entry at this position.
fn cursor_text(created_at: DateTime<Utc>, id: Uuid) -> String {
    format!("{:x}{}", created_at.timestamp_micros(), id.simple())
}

/// Reads a cursor; `Ok(None)` for an empty one (the first page). Any position of the right
/// form is a place in the list, even one no page ended at.
fn parse_cursor(raw: &str) -> std::result::Result<Option<PageCursor>, ()> {
    if raw.is_empty() {
        return Ok(None);
    }
    let split = raw
        .len()
        .checked_sub(32)
        .filter(|n| (1..=16).contains(n))
        .ok_or(())?;
    let (micros, id) = (raw.get(..split).ok_or(())?, raw.get(split..).ok_or(())?);
    let micros = u64::from_str_radix(micros, 16).map_err(|_| ())?;
    let created_at = i64::try_from(micros)
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let id = Uuid::try_parse(id).map_err(|_| ())?;
    Ok(Some(PageCursor { created_at, id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_the_position_it_names() {
        let at = DateTime::from_timestamp_micros(1_763_900_000_123_456).unwrap();
        let id = Uuid::new_v4();
        let cursor = parse_cursor(&cursor_text(at, id)).unwrap().unwrap();
        assert_eq!((cursor.created_at, cursor.id), (at, id));
        assert_eq!(parse_cursor(""), Ok(None));
        for bad in ["xyz", "0", &"f".repeat(49), &format!("g{}", id.simple())] {
            assert_eq!(parse_cursor(bad), Err(()), "{bad}");
        }
    }

    #[test]
    fn the_next_path_keeps_the_filters_and_only_follows_a_full_page() {
        let page = Page::parse(
            Some("state=promoted&limit=2"),
            |name, _| Ok(name == "state"),
        )
        .unwrap();
        let at = Utc::now();
        let mut entries = vec![(at, Uuid::nil()), (at, Uuid::max()), (at, Uuid::nil())];
        let next = page.finish("/files", &mut entries, |e| *e).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(
            next.starts_with("/files?state=promoted&limit=2&cursor="),
            "{next}"
        );
        let mut last_page = vec![(at, Uuid::nil())];
        assert_eq!(page.finish("/files", &mut last_page, |e| *e), None);
    }
}
