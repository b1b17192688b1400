//! Keeping apart what a PDF page draws apart.
//!
//! The PDF reader assembles a page's text from its pieces (one per text-showing operation, or
//! per run of one font) and decides itself where words end. Between pieces drawn far apart on
//! one line — the cells of a table, a form's label and its field — it sometimes puts nothing:
//! a price table in Chinese comes out as one token per row (`2.18华联绿豆`), a radio button's
//! caption is glued to its group's name. Search and résumé parsing cannot split those again.
//!
//! This pass looks at the page's pieces by where they are drawn: pieces on one line, in the
//! order of their left edges, that leave a gap between them (or overlap, as a caption drawn over
//! a field does) must be separated. Where the assembled text shows two such pieces touching, a
//! space goes between them — only there: every other character of the text stays as the reader
//! made it. A piece the text does not show as it is drawn (rewritten, reordered beyond reach)
//! is left alone.

/// One piece of text as a page draws it, in page space (y grows upwards).
#[derive(Debug, Clone, Copy)]
pub struct Piece<'a> {
    pub text: &'a str,
    pub left: f32,
    pub right: f32,
    pub bottom: f32,
    pub top: f32,
    /// The font size in points: gaps are judged in ems.
    pub size: f32,
}

/// A gap wider than this share of an em ends a word (pdftotext's word break is 0.1 em; a
/// word space is 0.25–0.33 em in most fonts; letter-spaced capitals stay under this).
const WORD_GAP_EM: f32 = 0.2;

/// Between two CJK characters the gap must be wider: justified CJK text spreads its characters
/// and has no spaces to separate words, so only a cell's or column's gap counts.
const CJK_GAP_EM: f32 = 0.5;

/// Pieces that overlap by more than this share of an em are drawn over each other, not
/// kerned: a caption over its field.
const OVERLAP_EM: f32 = 0.2;

/// How far from the last place found a line's first piece is looked for, in bytes: the text
/// follows the page's lines closely, and the search stays linear in the page's text.
const WINDOW: usize = 4096;

/// The page's text with a space wherever two pieces drawn apart on one line touch in it.
pub fn separate(text: &str, pieces: &[Piece<'_>]) -> String {
    let mut inserts: Vec<(usize, char)> = Vec::new();
    let mut cursor = 0;
    // The last piece found of the line above: a line the text runs on into is split from it.
    let mut above: Option<(&Piece<'_>, usize)> = None;
    for line in lines(pieces) {
        let mut previous: Option<(&Piece<'_>, usize)> = None;
        let mut first_end = None;
        let mut last = None;
        for piece in line {
            let needle = piece.text.trim();
            // Where the piece should stand: right after its left neighbour, or, for a line's
            // first piece, after the last piece found of the line above (`true`).
            let anchor = match (previous, first_end) {
                (Some(before), _) => Some((before, false)),
                (None, None) => above.map(|before| (before, true)),
                _ => None,
            };
            let found = anchor
                .and_then(|((_, end), _)| follows(text, end, needle))
                .or_else(|| find_word_start(text, needle, cursor));
            let Some(at) = found else {
                previous = None;
                continue;
            };
            match anchor {
                Some(((before, end), false)) if end == at && apart(before, piece) => {
                    inserts.push((at, ' '));
                }
                Some(((before, end), true)) if end == at && below(before, piece) => {
                    inserts.push((at, '\n'));
                }
                _ => {}
            }
            let end = at + needle.len();
            first_end.get_or_insert(end);
            previous = Some((piece, end));
            last = previous;
        }
        if let Some(end) = first_end {
            cursor = cursor.max(end);
        }
        above = last;
    }
    if inserts.is_empty() {
        return text.to_owned();
    }
    inserts.sort_unstable();
    inserts.dedup_by_key(|(at, _)| *at);
    let mut out = String::with_capacity(text.len() + inserts.len());
    let mut from = 0;
    for (at, separator) in inserts {
        out.push_str(&text[from..at]);
        out.push(separator);
        from = at;
    }
    out.push_str(&text[from..]);
    out
}

/// The pieces grouped into lines, top to bottom, each line left to right. A piece joins a line
/// when at least half of the shorter one's height is shared with the line's first piece.
fn lines<'p, 'a>(pieces: &'p [Piece<'a>]) -> Vec<Vec<&'p Piece<'a>>> {
    let mut sorted: Vec<&Piece<'_>> = pieces
        .iter()
        .filter(|p| !p.text.trim().is_empty() && p.top > p.bottom && p.right >= p.left)
        .collect();
    sorted.sort_by(|a, b| (b.top + b.bottom).total_cmp(&(a.top + a.bottom)));
    let mut lines: Vec<Vec<&Piece<'_>>> = Vec::new();
    for piece in sorted {
        let joins = lines.last().is_some_and(|line| {
            let first = line[0];
            let shared = first.top.min(piece.top) - first.bottom.max(piece.bottom);
            let shorter = (first.top - first.bottom).min(piece.top - piece.bottom);
            shared >= shorter / 2.0
        });
        if joins {
            lines.last_mut().expect("a line").push(piece);
        } else {
            lines.push(vec![piece]);
        }
    }
    for line in &mut lines {
        line.sort_by(|a, b| a.left.total_cmp(&b.left));
    }
    lines
}

/// Whether the page draws `b` apart from `a`, its left neighbour on the line.
fn apart(a: &Piece<'_>, b: &Piece<'_>) -> bool {
    if a.text.ends_with(char::is_whitespace) || b.text.starts_with(char::is_whitespace) {
        return true;
    }
    let em = a.size.min(b.size);
    let em = if em > 0.0 {
        em
    } else {
        (a.top - a.bottom).min(b.top - b.bottom)
    };
    let gap = b.left - a.right;
    let cjk = a.text.trim_end().chars().next_back().is_some_and(is_cjk)
        && b.text.trim_start().chars().next().is_some_and(is_cjk);
    let wide = if cjk { CJK_GAP_EM } else { WORD_GAP_EM };
    gap > wide * em || gap < -OVERLAP_EM * em
}

/// Whether `b`, on the line after `a`'s, is drawn wholly below it and starts left of its end:
/// the next line, not a subscript.
fn below(a: &Piece<'_>, b: &Piece<'_>) -> bool {
    b.top <= a.bottom + 0.1 * (a.top - a.bottom) && b.left < a.right
}

/// Where `needle` stands in `text` at `end`, after any whitespace.
fn follows(text: &str, end: usize, needle: &str) -> Option<usize> {
    let rest = &text[end..];
    let at = end + (rest.len() - rest.trim_start().len());
    text[at..].starts_with(needle).then_some(at)
}

/// Where `needle` begins a word (at the start of the text or after whitespace) near `from`:
/// the first such place within [`WINDOW`] after it, or else the last within [`WINDOW`] before
/// it (the text may give a line before lines drawn above it, as a form's fields often are).
fn find_word_start(text: &str, needle: &str, from: usize) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    let starts_word = |at: &usize| *at == 0 || text[..*at].ends_with(char::is_whitespace);
    let ahead = floor_boundary(text, from + WINDOW + needle.len());
    let behind = floor_boundary(text, from.saturating_sub(WINDOW));
    text[from..ahead]
        .match_indices(needle)
        .map(|(i, _)| from + i)
        .find(starts_word)
        .or_else(|| {
            text[behind..floor_boundary(text, from + needle.len())]
                .match_indices(needle)
                .map(|(i, _)| behind + i)
                .filter(|at| *at < from)
                .filter(starts_word)
                .last()
        })
}

/// `at`, or the nearest character boundary of `text` below it.
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Characters of scripts written without spaces between words: CJK ideographs, kana, Hangul,
/// and their full-width punctuation and forms.
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{2E80}'..='\u{9FFF}'
        | '\u{AC00}'..='\u{D7AF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{FE30}'..='\u{FE4F}'
        | '\u{FF00}'..='\u{FFEF}'
        | '\u{20000}'..='\u{3FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, left: f32, bottom: f32, size: f32, width: f32) -> Piece<'_> {
        Piece {
            text,
            left,
            right: left + width,
            bottom,
            top: bottom + size,
            size,
        }
    }

    #[test]
    fn table_cells_drawn_apart_are_separated() {
        // A price table's row: codes, a quantity in a larger font, a product name.
        let row = [
            piece("商品编码", 70.5, 685.3, 9.1, 36.4),
            piece("数量", 115.7, 683.0, 12.0, 24.0),
            piece("334010052", 342.1, 684.2, 9.1, 41.0),
            piece("2.18", 397.1, 683.0, 12.0, 24.0),
            piece("华联绿豆", 424.9, 683.0, 9.1, 36.4),
        ];
        let text = "商品编码数量\n334010052 2.18华联绿豆";
        assert_eq!(
            separate(text, &row),
            "商品编码 数量\n334010052 2.18 华联绿豆"
        );
    }

    #[test]
    fn a_caption_drawn_over_its_field_is_separated() {
        let form = [
            piece("RdoGrp1", 82.8, 518.8, 12.0, 42.0),
            piece("Rdo1", 99.9, 515.0, 9.0, 18.0),
        ];
        assert_eq!(separate("RdoGrp1Rdo1\n", &form), "RdoGrp1 Rdo1\n");
    }

    #[test]
    fn pieces_of_one_word_stay_together() {
        // A word split by a font change (a bold first letter), kerned text, and CJK text
        // spread by justification: no gap worth a space.
        let pieces = [
            piece("R", 72.0, 700.0, 10.0, 7.2),
            piece("esume", 79.3, 700.0, 10.0, 28.0),
            piece("To", 72.0, 680.0, 10.0, 11.0),
            piece("day", 82.5, 680.0, 10.0, 16.0),
            piece("简", 72.0, 660.0, 10.0, 10.0),
            piece("历", 85.0, 660.0, 10.0, 10.0),
        ];
        let text = "Resume\nToday\n简历";
        assert_eq!(separate(text, &pieces), text);
    }

    #[test]
    fn only_touching_pieces_of_one_line_are_separated() {
        // Already apart in the text; on different lines; a piece the text does not show.
        let pieces = [
            piece("Name", 72.0, 700.0, 10.0, 25.0),
            piece("Ada", 200.0, 700.0, 10.0, 18.0),
            piece("x", 72.0, 650.0, 10.0, 5.0),
            piece("2", 77.0, 656.0, 6.0, 3.0),
            piece("missing", 300.0, 700.0, 10.0, 30.0),
        ];
        let text = "Name Ada\nx2";
        assert_eq!(separate(text, &pieces), text);
    }

    #[test]
    fn a_piece_is_only_found_where_a_word_begins() {
        // "0" and "2" are cells apart on a line, but the text shows them only inside a
        // number: nothing is split.
        let pieces = [
            piece("0", 72.0, 700.0, 10.0, 5.0),
            piece("2", 120.0, 700.0, 10.0, 5.0),
        ];
        assert_eq!(separate("2021 102", &pieces), "2021 102");
        assert_eq!(separate("2021 02", &pieces), "2021 0 2");
    }

    #[test]
    fn a_line_run_on_into_the_next_is_split_from_it() {
        // A name with its affiliation marks, the institution on the line below, run together
        // by the reader; a subscript is not a line of its own.
        let pieces = [
            piece("Erik Blomain, MD, PhD § ¥", 28.0, 415.2, 11.0, 136.9),
            piece("Stanford Cancer Institute", 28.0, 403.2, 11.0, 121.7),
            piece("H", 28.0, 380.0, 11.0, 8.0),
            piece("O", 41.0, 380.0, 11.0, 8.0),
            piece("2", 36.0, 377.0, 7.0, 5.0),
        ];
        assert_eq!(
            separate(
                "Erik Blomain, MD, PhD § ¥Stanford Cancer Institute\nH2O",
                &pieces
            ),
            "Erik Blomain, MD, PhD § ¥\nStanford Cancer Institute\nH2O"
        );
    }

    #[test]
    fn a_line_the_text_gives_before_lines_drawn_above_it_is_found() {
        let pieces = [
            piece("Form", 72.0, 760.0, 12.0, 30.0),
            piece("RdoGrp1", 82.8, 518.8, 12.0, 42.0),
            piece("Rdo1", 99.9, 515.0, 9.0, 18.0),
            piece("Text1", 72.0, 700.0, 12.0, 30.0),
        ];
        assert_eq!(
            separate("Form\nRdoGrp1Rdo1\nText1\n", &pieces),
            "Form\nRdoGrp1 Rdo1\nText1\n"
        );
    }
}
