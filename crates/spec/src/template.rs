//! Prompt templates: literal text with `{field}` placeholders filled from a source row.
//!
//! Only `{identifier}` is a placeholder, so LaTeX such as `\boxed{}` needs no escaping;
//! `{{` and `}}` write a literal brace where one would otherwise start a placeholder.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Template {
    source: String,
    segments: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field(String),
}

/// A placeholder names a field the row does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the prompt template uses {{{field}}} but the row has no field `{field}`")]
pub struct MissingField {
    pub field: String,
}

impl Template {
    /// The default prompt of a pipeline without `[prompt] template`, and of `distillery eval`:
    /// the problem from `prompt_field`, a new line, then the R1 recipe's instruction
    /// ([`crate::R1_MATH_INSTRUCTION`]). A student trained on a pipeline's traces is evaluated
    /// with exactly the prompt it was trained on.
    pub fn r1_math(prompt_field: &str) -> Self {
        Self::parse(&format!(
            "{{{prompt_field}}}\n{}",
            crate::R1_MATH_INSTRUCTION
        ))
    }

    /// The default prompt of the `tagged` assistant format: the problem, then
    /// [`crate::R1_TAGGED_INSTRUCTION`].
    pub fn r1_tagged(prompt_field: &str) -> Self {
        Self::parse(&format!(
            "{{{prompt_field}}}\n{}",
            crate::R1_TAGGED_INSTRUCTION
        ))
    }

    pub fn parse(source: &str) -> Self {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{{") {
                literal.push('{');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("}}") {
                literal.push('}');
                rest = after;
            } else if let Some(name) = placeholder_at(rest) {
                if !literal.is_empty() {
                    segments.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                segments.push(Piece::Field(name.to_owned()));
                rest = &rest[name.len() + 2..];
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            segments.push(Piece::Literal(literal));
        }
        Self {
            source: source.to_owned(),
            segments,
        }
    }

    /// The field names the template reads, in order of first use.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|piece| match piece {
            Piece::Field(name) => Some(name.as_str()),
            Piece::Literal(_) => None,
        })
    }

    pub fn render<'a, F, S>(&self, mut lookup: F) -> Result<String, MissingField>
    where
        F: FnMut(&str) -> Option<S>,
        S: AsRef<str> + 'a,
    {
        let mut out = String::with_capacity(self.source.len() * 2);
        for piece in &self.segments {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Field(name) => match lookup(name) {
                    Some(value) => out.push_str(value.as_ref()),
                    None => {
                        return Err(MissingField {
                            field: name.clone(),
                        });
                    }
                },
            }
        }
        Ok(out)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// `{name}` at the start of `text`, where name is an identifier (dots allowed for nested fields).
fn placeholder_at(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('{')?;
    let end = inner.find('}')?;
    let name = &inner[..end];
    let mut chars = name.chars();
    let first = chars.next()?;
    let valid = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    valid.then_some(name)
}

impl From<String> for Template {
    fn from(source: String) -> Self {
        Self::parse(&source)
    }
}

impl From<Template> for String {
    fn from(template: Template) -> Self {
        template.source
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(field: &str) -> Option<&'static str> {
        match field {
            "question" => Some("What is 2+2?"),
            "meta.level" => Some("easy"),
            _ => None,
        }
    }

    #[test]
    fn fills_placeholders_and_keeps_latex_braces() {
        let template = Template::parse(
            "{question}\nPlease reason step by step, and put your final answer within \\boxed{}.",
        );
        assert_eq!(
            template.render(row).unwrap(),
            "What is 2+2?\nPlease reason step by step, and put your final answer within \\boxed{}."
        );
        assert_eq!(template.fields().collect::<Vec<_>>(), ["question"]);
    }

    #[test]
    fn r1_math_is_the_question_then_the_instruction() {
        let template = Template::r1_math("question");
        assert_eq!(
            template.render(row).unwrap(),
            format!("What is 2+2?\n{}", crate::R1_MATH_INSTRUCTION)
        );
        assert_eq!(template.fields().collect::<Vec<_>>(), ["question"]);
    }

    #[test]
    fn doubled_braces_escape() {
        let template = Template::parse("{{question}} is {question} ({meta.level}) {1} { x }");
        assert_eq!(
            template.render(row).unwrap(),
            "{question} is What is 2+2? (easy) {1} { x }"
        );
    }

    #[test]
    fn missing_field_is_named() {
        let template = Template::parse("Q: {problem}");
        let error = template.render(row).unwrap_err();
        assert_eq!(error.field, "problem");
    }

    #[test]
    fn unicode_literals_survive() {
        let template = Template::parse("→ {question} ✓ {");
        assert_eq!(template.render(row).unwrap(), "→ What is 2+2? ✓ {");
    }
}
