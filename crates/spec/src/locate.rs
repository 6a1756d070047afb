//! Maps between byte offsets in a definition file, 1-based line/column positions and
//! field paths such as `teacher.endpoints[1].base_url`.

use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One step of a path into the TOML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A field path, e.g. `teacher.endpoints[0].base_url`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    pub fn root() -> Self {
        Self::default()
    }

    pub fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_owned()));
        next
    }

    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self { line, column }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Span index of a parsed document: finds where a path was written, and which path a
/// span belongs to.
pub(crate) struct Locator<'a> {
    root: Option<DeTable<'a>>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let root = DeTable::parse(text).ok().map(|table| table.into_inner());
        Self { root }
    }

    /// The span of the value at `path`, or of its deepest ancestor that exists (so an error
    /// about a missing key points at the table it should be in).
    pub(crate) fn span_of(&self, path: &FieldPath) -> Option<Range<usize>> {
        let mut table = self.root.as_ref()?;
        let mut best: Option<Range<usize>> = None;
        let mut value: Option<&DeValue<'a>> = None;
        for segment in &path.0 {
            let next = match (segment, value) {
                (Segment::Key(key), None) => table.get_key_value(key.as_str()),
                (Segment::Key(key), Some(DeValue::Table(inner))) => {
                    table = inner;
                    table.get_key_value(key.as_str())
                }
                (Segment::Index(index), Some(DeValue::Array(array))) => match array.get(*index) {
                    Some(item) => {
                        best = Some(item.span());
                        value = Some(item.get_ref());
                        continue;
                    }
                    None => return best,
                },
                _ => return best,
            };
            match next {
                Some((key, item)) => {
                    // Point at the key for tables (their span may be the whole section), at the
                    // value otherwise.
                    best = Some(match item.get_ref() {
                        DeValue::Table(_) | DeValue::Array(_) => key.span(),
                        _ => item.span(),
                    });
                    value = Some(item.get_ref());
                }
                None => return best,
            }
        }
        best
    }

    /// The innermost path whose key or value contains `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> FieldPath {
        let mut path = FieldPath::root();
        if let Some(root) = &self.root {
            descend_table(root, offset, &mut path);
        }
        path
    }
}

fn descend_table(table: &DeTable<'_>, offset: usize, path: &mut FieldPath) {
    for (key, value) in table.iter() {
        if key.span().contains(&offset) {
            path.0.push(Segment::Key(key.get_ref().to_string()));
            return;
        }
        if value.span().contains(&offset) || section_contains(value.get_ref(), offset) {
            path.0.push(Segment::Key(key.get_ref().to_string()));
            descend_value(value.get_ref(), offset, path);
            return;
        }
    }
}

fn descend_value(value: &DeValue<'_>, offset: usize, path: &mut FieldPath) {
    match value {
        DeValue::Table(table) => descend_table(table, offset, path),
        DeValue::Array(array) => {
            for (index, item) in array.iter().enumerate() {
                if item.span().contains(&offset) || section_contains(item.get_ref(), offset) {
                    path.0.push(Segment::Index(index));
                    descend_value(item.get_ref(), offset, path);
                    return;
                }
            }
        }
        _ => {}
    }
}

/// `[section]` tables have a header span that does not cover their keys, so look inside.
fn section_contains(value: &DeValue<'_>, offset: usize) -> bool {
    match value {
        DeValue::Table(table) => table.iter().any(|(key, value)| {
            key.span().contains(&offset)
                || value.span().contains(&offset)
                || section_contains(value.get_ref(), offset)
        }),
        DeValue::Array(array) => array
            .iter()
            .any(|item| item.span().contains(&offset) || section_contains(item.get_ref(), offset)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name = \"x\"\n[teacher]\nmodel = \"m\"\n[[teacher.endpoints]]\nbase_url = \"a\"\n[[teacher.endpoints]]\nbase_url = \"b\"\n";

    #[test]
    fn positions_are_one_based() {
        assert_eq!(Position::of_offset(DOC, 0), Position { line: 1, column: 1 });
        let offset = DOC.find("model").unwrap();
        assert_eq!(
            Position::of_offset(DOC, offset),
            Position { line: 3, column: 1 }
        );
    }

    #[test]
    fn finds_span_of_nested_array_field() {
        let locator = Locator::new(DOC);
        let path = FieldPath::root()
            .key("teacher")
            .key("endpoints")
            .index(1)
            .key("base_url");
        let span = locator.span_of(&path).unwrap();
        assert_eq!(&DOC[span], "\"b\"");
    }

    #[test]
    fn missing_key_points_at_parent() {
        let locator = Locator::new(DOC);
        let path = FieldPath::root().key("teacher").key("nope");
        let span = locator.span_of(&path).unwrap();
        assert_eq!(&DOC[span], "teacher");
    }

    #[test]
    fn path_at_offset_round_trips() {
        let locator = Locator::new(DOC);
        let offset = DOC.rfind("\"b\"").unwrap();
        assert_eq!(
            locator.path_at(offset).to_string(),
            "teacher.endpoints[1].base_url"
        );
    }
}
