//! Chat templates rendered the way Hugging Face transformers renders them.
//!
//! transformers compiles `tokenizer_config.json`'s `chat_template` with Jinja2
//! (`trim_blocks`, `lstrip_blocks`, loop controls, a sandbox), passes `messages`,
//! `add_generation_prompt` and the special tokens (`bos_token`, `eos_token`, …), and adds
//! `raise_exception`, `strftime_now` and a `tojson` filter that is Python's `json.dumps`
//! (no HTML escaping, `ensure_ascii=False`). Templates also call Python string and dict
//! methods (`.strip()`, `.split()`, `.startswith()`, `.items()`, …); those are provided
//! through minijinja's unknown-method callback.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

/// One turn as a chat template sees it. Implemented by every crate's message type, so the
/// renderer needs no common message struct.
pub trait ChatTurn {
    fn role(&self) -> &str;
    fn content(&self) -> &str;
}

impl ChatTurn for distillery_spec::ChatMessage {
    fn role(&self) -> &str {
        &self.role
    }
    fn content(&self) -> &str {
        &self.content
    }
}

impl ChatTurn for (&str, &str) {
    fn role(&self) -> &str {
        self.0
    }
    fn content(&self) -> &str {
        self.1
    }
}

impl ChatTurn for (String, String) {
    fn role(&self) -> &str {
        &self.0
    }
    fn content(&self) -> &str {
        &self.1
    }
}

/// A template that does not compile, or a conversation it refuses to render.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template{}: {message}", source_name.as_ref().map(|p| format!(" from {}", p.display())).unwrap_or_default())]
    Template {
        source_name: Option<PathBuf>,
        message: String,
    },
    #[error("{origin}: {message}")]
    Render { origin: String, message: String },
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
}

type Result<T, E = TemplateError> = std::result::Result<T, E>;

/// ChatML, the fallback when a tokenizer has no chat template (and the format of the tiny
/// models this project makes). The assistant's content and its `<|im_end|>` sit in a
/// `{% generation %}` block, the convention transformers' `return_assistant_tokens_mask` and
/// TRL's `assistant_only_loss` read; the text it renders is plain ChatML.
pub const CHATML_FALLBACK_TEMPLATE: &str = "{%- for message in messages %}{%- if message['role'] == 'assistant' %}{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// Where a `{% generation %}` block starts and ends in a rendering. Noncharacters (Unicode
/// reserves them for a program's internal use), so no text a model reads carries them; a
/// message that does is refused rather than mis-masked.
const GENERATION_START: char = '\u{FDD0}';
const GENERATION_END: char = '\u{FDD1}';
/// The filter a `{% generation %}` block becomes.
const GENERATION_FILTER: &str = "__distillery_generation";

/// `{% generation %}` and `{% endgeneration %}` are tags of transformers' own Jinja extension,
/// which minijinja has no way to add. A filter block is the same kind of tag (so `-`/`+`
/// whitespace control, `trim_blocks` and `lstrip_blocks` act on it exactly as on the original)
/// and hands its rendered body to a filter, which wraps it in [`GENERATION_START`] and
/// [`GENERATION_END`]. Returns the rewritten source and whether it had any marker.
fn rewrite_generation_tags(source: &str) -> (String, bool) {
    let mut out = String::with_capacity(source.len() + 64);
    let mut rest = source;
    let mut found = false;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return (out, found);
        };
        let inner = &tag[2..end];
        let (open, body) = match inner.strip_prefix(['-', '+']) {
            Some(body) => (&inner[..1], body),
            None => ("", inner),
        };
        let (body, close) = match body.strip_suffix(['-', '+']) {
            Some(trimmed) => (trimmed, &body[trimmed.len()..]),
            None => (body, ""),
        };
        match body.trim() {
            "generation" => {
                found = true;
                let _ = write!(out, "{{%{open} filter {GENERATION_FILTER} {close}%}}");
            }
            "endgeneration" => {
                let _ = write!(out, "{{%{open} endfilter {close}%}}");
            }
            _ => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    (out, found)
}

fn generation_filter(body: String) -> Value {
    Value::from_safe_string(format!("{GENERATION_START}{body}{GENERATION_END}"))
}

/// A rendering with the byte ranges `{% generation %}` blocks produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// `None` when the template has no `{% generation %}` block; else each block's range in
    /// `text`, in order (empty blocks left out).
    pub generation_spans: Option<Vec<std::ops::Range<usize>>>,
}

const TEMPLATE_NAME: &str = "chat";

/// A compiled chat template plus the special tokens it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: Option<PathBuf>,
    /// True when the template came from the ChatML fallback.
    pub is_fallback: bool,
    /// The template marks assistant text with `{% generation %}` blocks.
    has_generation: bool,
    specials: Vec<(String, String)>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("is_fallback", &self.is_fallback)
            .field("specials", &self.specials)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// The ChatML template with `<|im_end|>` as the end-of-sequence token.
    pub fn chatml() -> Self {
        let mut t = Self::new(
            CHATML_FALLBACK_TEMPLATE,
            vec![("eos_token".into(), "<|im_end|>".into())],
            None,
        )
        .expect("the built-in ChatML template compiles");
        t.is_fallback = true;
        t
    }

    /// Compiles `source`; `specials` are globals such as `("bos_token", "<s>")`.
    pub fn new(
        source: &str,
        specials: Vec<(String, String)>,
        origin: Option<PathBuf>,
    ) -> Result<Self> {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("default delimiters are valid"),
        );
        env.add_filter("tojson", tojson_filter);
        env.add_filter(GENERATION_FILTER, generation_filter);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.set_unknown_method_callback(python_methods);
        let (compiled, has_generation) = rewrite_generation_tags(source);
        env.add_template_owned(TEMPLATE_NAME, compiled)
            .map_err(|e| TemplateError::Template {
                source_name: origin.clone(),
                message: describe(&e),
            })?;
        Ok(Self {
            env,
            source: source.to_string(),
            origin,
            is_fallback: false,
            has_generation,
            specials,
        })
    }

    /// Reads `chat_template` and the special tokens from a `tokenizer_config.json` value
    /// (the template may be a string or a list of `{name, template}`, where `default` wins).
    /// A `chat_template.jinja` next to the config (newer transformers) is used when the
    /// config has none. Falls back to ChatML when there is no template at all.
    pub fn from_tokenizer_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| TemplateError::Read {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let jinja = path.with_file_name("chat_template.jinja");
        let side_file = std::fs::read_to_string(&jinja).ok();
        Self::from_config_value(&value, side_file.as_deref(), Some(path.to_path_buf()))
    }

    /// As [`from_tokenizer_config`](Self::from_tokenizer_config), from parsed JSON.
    pub fn from_config_value(
        config: &serde_json::Value,
        side_template: Option<&str>,
        origin: Option<PathBuf>,
    ) -> Result<Self> {
        let mut specials = Vec::new();
        for key in [
            "bos_token",
            "eos_token",
            "unk_token",
            "pad_token",
            "sep_token",
            "cls_token",
            "mask_token",
        ] {
            let token = match config.get(key) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Object(o)) => o
                    .get("content")
                    .and_then(|c| c.as_str())
                    .map(str::to_string),
                _ => None,
            };
            if let Some(token) = token {
                specials.push((key.to_string(), token));
            }
        }
        let template = match config.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(list)) => {
                let named = |name: &str| {
                    list.iter().find_map(|t| {
                        (t.get("name")?.as_str()? == name)
                            .then(|| t.get("template")?.as_str().map(str::to_string))
                            .flatten()
                    })
                };
                named("default").or_else(|| {
                    list.first()
                        .and_then(|t| t.get("template")?.as_str().map(str::to_string))
                })
            }
            Some(serde_json::Value::Null) | None => side_template.map(str::to_string),
            Some(other) => {
                return Err(TemplateError::Template {
                    source_name: origin,
                    message: format!("`chat_template` must be a string or a list, got {other}"),
                });
            }
        };
        match template {
            Some(source) => Self::new(&source, specials, origin),
            None => {
                let mut t = Self::chatml();
                // Keep the tokenizer's own special tokens if it declared any.
                for (k, v) in specials {
                    t.specials.retain(|(key, _)| key != &k);
                    t.specials.push((k, v));
                }
                t.origin = origin;
                Ok(t)
            }
        }
    }

    /// The template source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The value of a special-token global such as `eos_token`.
    pub fn special(&self, name: &str) -> Option<&str> {
        self.specials
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the template marks assistant text with `{% generation %}` blocks.
    pub fn has_generation_markers(&self) -> bool {
        self.has_generation
    }

    /// Renders `messages`; `origin` names the row in errors.
    pub fn render<M: ChatTurn>(
        &self,
        messages: &[M],
        add_generation_prompt: bool,
        origin: &str,
    ) -> Result<String> {
        Ok(self
            .render_marked(messages, add_generation_prompt, origin)?
            .text)
    }

    /// Renders `messages` and says where the `{% generation %}` blocks put their text, as
    /// transformers' `return_assistant_tokens_mask` reads them.
    pub fn render_marked<M: ChatTurn>(
        &self,
        messages: &[M],
        add_generation_prompt: bool,
        origin: &str,
    ) -> Result<Rendered> {
        let raw = self.render_raw(messages, add_generation_prompt, origin)?;
        if !self.has_generation {
            return Ok(Rendered {
                text: raw,
                generation_spans: None,
            });
        }
        let mut text = String::with_capacity(raw.len());
        let mut spans = Vec::new();
        let mut open: Option<usize> = None;
        let unbalanced = || TemplateError::Render {
            origin: origin.to_string(),
            message: "chat template: `{% generation %}` blocks are nested or unbalanced".into(),
        };
        for c in raw.chars() {
            match c {
                GENERATION_START => {
                    if open.replace(text.len()).is_some() {
                        return Err(unbalanced());
                    }
                }
                GENERATION_END => {
                    let start = open.take().ok_or_else(unbalanced)?;
                    if start < text.len() {
                        spans.push(start..text.len());
                    }
                }
                c => text.push(c),
            }
        }
        if open.is_some() {
            return Err(unbalanced());
        }
        Ok(Rendered {
            text,
            generation_spans: Some(spans),
        })
    }

    fn render_raw<M: ChatTurn>(
        &self,
        messages: &[M],
        add_generation_prompt: bool,
        origin: &str,
    ) -> Result<String> {
        if self.has_generation
            && let Some((i, _)) = messages
                .iter()
                .enumerate()
                .find(|(_, m)| m.content().contains([GENERATION_START, GENERATION_END]))
        {
            return Err(TemplateError::Render {
                origin: origin.to_string(),
                message: format!(
                    "message {i} holds U+FDD0 or U+FDD1, Unicode noncharacters that mark \
                     `{{% generation %}}` blocks while rendering; remove them from the data"
                ),
            });
        }
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Render {
                origin: origin.to_string(),
                message: describe(&e),
            })?;
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_object(OrderedMap(vec![
                    ("role".into(), Value::from(m.role())),
                    ("content".into(), Value::from(m.content())),
                ]))
            })
            .collect();
        let mut ctx: Vec<(String, Value)> = vec![
            ("messages".into(), Value::from(msgs)),
            (
                "add_generation_prompt".into(),
                Value::from(add_generation_prompt),
            ),
        ];
        for (k, v) in &self.specials {
            ctx.push((k.clone(), Value::from(v.as_str())));
        }
        let ctx = Value::from_object(OrderedMap(ctx));
        tmpl.render(ctx).map_err(|e| TemplateError::Render {
            origin: origin.to_string(),
            message: describe(&e),
        })
    }
}

fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let _ = write!(s, ": {inner}");
        src = inner.source();
    }
    s
}

/// A map that keeps insertion order, like a Python dict (so `tojson` of a message prints
/// `role` before `content`, as transformers does).
#[derive(Debug)]
struct OrderedMap(Vec<(String, Value)>);

impl Object for OrderedMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.0
                .iter()
                .map(|(k, _)| Value::from(k.as_str()))
                .collect(),
        )
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current UTC time with the common strftime directives.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime(secs, &format)
}

fn strftime(unix_secs: i64, format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => write!(out, "{day:02}").unwrap(),
            Some('m') => write!(out, "{month:02}").unwrap(),
            Some('Y') => write!(out, "{year}").unwrap(),
            Some('y') => write!(out, "{:02}", year % 100).unwrap(),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('H') => write!(out, "{:02}", secs / 3600).unwrap(),
            Some('M') => write!(out, "{:02}", secs / 60 % 60).unwrap(),
            Some('S') => write!(out, "{:02}", secs % 60).unwrap(),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`.
fn tojson_filter(
    value: &Value,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> std::result::Result<Value, Error> {
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(usize::try_from(v)?),
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let _ = kwargs.get::<Option<bool>>("ensure_ascii")?;
    let separators = kwargs.get::<Option<Vec<String>>>("separators")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ));
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let mut out = String::new();
    let opts = JsonOpts {
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    write_json(&mut out, value, &opts, 0)?;
    Ok(Value::from_safe_string(out))
}

struct JsonOpts {
    indent: Option<usize>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

fn write_json(
    out: &mut String,
    v: &Value,
    o: &JsonOpts,
    depth: usize,
) -> std::result::Result<(), Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = o.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Ok(i) = i64::try_from(v.clone()) {
                write!(out, "{i}").unwrap();
            } else {
                let f = f64::try_from(v.clone())?;
                if f.is_finite() {
                    write!(out, "{f:?}").unwrap();
                } else if f.is_nan() {
                    out.push_str("NaN");
                } else if f > 0.0 {
                    out.push_str("Infinity");
                } else {
                    out.push_str("-Infinity");
                }
            }
        }
        ValueKind::String | ValueKind::Bytes => {
            json_string(out, v.as_str().unwrap_or_default());
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, depth + 1);
                write_json(out, item, o, depth + 1)?;
            }
            newline(out, depth);
            out.push(']');
        }
        ValueKind::Map | ValueKind::Plain => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if o.sort_keys {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, depth + 1);
                match key.as_str() {
                    Some(s) => json_string(out, s),
                    None => json_string(out, &key.to_string()),
                }
                out.push_str(&o.key_sep);
                write_json(out, &v.get_item(key)?, o, depth + 1)?;
            }
            newline(out, depth);
            out.push('}');
        }
        _ => json_string(out, &v.to_string()),
    }
    Ok(())
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn arg_str<'a>(args: &'a [Value], i: usize, method: &str) -> std::result::Result<&'a str, Error> {
    args.get(i).and_then(|v| v.as_str()).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("{method}() expects a string argument {}", i + 1),
        )
    })
}

fn opt_chars(args: &[Value]) -> Option<Vec<char>> {
    args.first()
        .and_then(|v| v.as_str())
        .map(|s| s.chars().collect())
}

/// Python `str`, `dict` and `list` methods that chat templates call.
fn python_methods(
    _state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, Error> {
    if let Some(s) = value.as_str().filter(|_| value.kind() == ValueKind::String) {
        return string_method(s, method, args);
    }
    match (value.kind(), method) {
        (ValueKind::Map, "items") => {
            let mut out = Vec::new();
            for k in value.try_iter()? {
                let v = value.get_item(&k)?;
                out.push(Value::from(vec![k, v]));
            }
            Ok(Value::from(out))
        }
        (ValueKind::Map, "keys") => Ok(Value::from(value.try_iter()?.collect::<Vec<_>>())),
        (ValueKind::Map, "values") => {
            let mut out = Vec::new();
            for k in value.try_iter()? {
                out.push(value.get_item(&k)?);
            }
            Ok(Value::from(out))
        }
        (ValueKind::Map, "get") => {
            let key = args.first().cloned().unwrap_or(Value::UNDEFINED);
            let v = value.get_item(&key)?;
            if v.is_undefined() {
                Ok(args.get(1).cloned().unwrap_or(Value::from(())))
            } else {
                Ok(v)
            }
        }
        (ValueKind::Seq, "index") => {
            let needle = args.first().cloned().unwrap_or(Value::UNDEFINED);
            value
                .try_iter()?
                .position(|v| v == needle)
                .map(Value::from)
                .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "value is not in list"))
        }
        (ValueKind::Seq, "count") => {
            let needle = args.first().cloned().unwrap_or(Value::UNDEFINED);
            Ok(Value::from(
                value.try_iter()?.filter(|v| *v == needle).count(),
            ))
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

fn string_method(s: &str, method: &str, args: &[Value]) -> std::result::Result<Value, Error> {
    let v = match method {
        "strip" => match opt_chars(args) {
            Some(cs) => Value::from(s.trim_matches(cs.as_slice())),
            None => Value::from(s.trim()),
        },
        "lstrip" => match opt_chars(args) {
            Some(cs) => Value::from(s.trim_start_matches(cs.as_slice())),
            None => Value::from(s.trim_start()),
        },
        "rstrip" => match opt_chars(args) {
            Some(cs) => Value::from(s.trim_end_matches(cs.as_slice())),
            None => Value::from(s.trim_end()),
        },
        "upper" => Value::from(s.to_uppercase()),
        "lower" => Value::from(s.to_lowercase()),
        "title" => Value::from(title_case(s)),
        "capitalize" => {
            let mut c = s.chars();
            Value::from(match c.next() {
                Some(f) => f
                    .to_uppercase()
                    .chain(c.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            })
        }
        "startswith" | "endswith" => {
            let arg = args.first().ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{method}() needs an argument"),
                )
            })?;
            let candidates: Vec<String> = if let Some(p) = arg.as_str() {
                vec![p.to_string()]
            } else {
                arg.try_iter()?
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            let hit = candidates.iter().any(|p| {
                if method == "startswith" {
                    s.starts_with(p.as_str())
                } else {
                    s.ends_with(p.as_str())
                }
            });
            Value::from(hit)
        }
        "split" | "rsplit" => {
            let sep = args.first().and_then(|v| v.as_str());
            let maxsplit = args
                .get(1)
                .and_then(|v| i64::try_from(v.clone()).ok())
                .filter(|n| *n >= 0)
                .map(|n| n as usize);
            let parts: Vec<Value> = match (sep, maxsplit, method) {
                (Some(sep), None, _) => s.split(sep).map(Value::from).collect(),
                (Some(sep), Some(n), "split") => s.splitn(n + 1, sep).map(Value::from).collect(),
                (Some(sep), Some(n), _) => {
                    let mut p: Vec<Value> = s.rsplitn(n + 1, sep).map(Value::from).collect();
                    p.reverse();
                    p
                }
                (None, _, _) => s.split_whitespace().map(Value::from).collect(),
            };
            Value::from(parts)
        }
        "replace" => {
            let from = arg_str(args, 0, method)?;
            let to = arg_str(args, 1, method)?;
            match args.get(2).and_then(|v| i64::try_from(v.clone()).ok()) {
                Some(n) if n >= 0 => Value::from(s.replacen(from, to, n as usize)),
                _ => Value::from(s.replace(from, to)),
            }
        }
        "find" => {
            let needle = arg_str(args, 0, method)?;
            Value::from(
                s.find(needle)
                    .map(|b| s[..b].chars().count() as i64)
                    .unwrap_or(-1),
            )
        }
        "count" => Value::from(s.matches(arg_str(args, 0, method)?).count()),
        "join" => {
            let items = args
                .first()
                .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "join() needs a list"))?;
            let parts: Vec<String> = items.try_iter()?.map(|v| v.to_string()).collect();
            Value::from(parts.join(s))
        }
        "isdigit" => Value::from(!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())),
        "isspace" => Value::from(!s.is_empty() && s.chars().all(char::is_whitespace)),
        "format" => {
            let mut out = String::new();
            let mut rest = s;
            let mut i = 0;
            while let Some(pos) = rest.find("{}") {
                out.push_str(&rest[..pos]);
                out.push_str(&args.get(i).map(|v| v.to_string()).unwrap_or_default());
                i += 1;
                rest = &rest[pos + 2..];
            }
            out.push_str(rest);
            Value::from(out)
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    };
    Ok(v)
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_alpha = false;
    for c in s.chars() {
        if c.is_alphabetic() {
            if prev_alpha {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            prev_alpha = true;
        } else {
            out.push(c);
            prev_alpha = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(r, c)| (r.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn chatml_renders_turns_and_generation_prompt() {
        let t = ChatTemplate::chatml();
        let m = msgs(&[("user", "hi"), ("assistant", "hello")]);
        assert_eq!(
            t.render(&m, false, "t").unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
        );
        assert_eq!(
            t.render(&m[..1], true, "t").unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn generation_blocks_give_the_assistant_spans_and_render_plain_text() {
        let t = ChatTemplate::chatml();
        assert!(t.has_generation_markers());
        let m = msgs(&[
            ("system", "be brief"),
            ("user", "hi"),
            ("assistant", "<think>\nx\n</think>\n\nhello"),
            ("user", "again"),
            ("assistant", "bye"),
        ]);
        let r = t.render_marked(&m, false, "t").unwrap();
        assert_eq!(
            r.text,
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n\
             <|im_start|>assistant\n<think>\nx\n</think>\n\nhello<|im_end|>\n\
             <|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\nbye<|im_end|>\n"
        );
        let spans: Vec<&str> = r
            .generation_spans
            .unwrap()
            .into_iter()
            .map(|s| &r.text[s])
            .collect();
        assert_eq!(
            spans,
            ["<think>\nx\n</think>\n\nhello<|im_end|>", "bye<|im_end|>"]
        );
        // No marker, no spans; a message holding a marker character is refused.
        let plain = ChatTemplate::new("{{ messages[0]['content'] }}", vec![], None).unwrap();
        assert!(!plain.has_generation_markers());
        assert_eq!(
            plain
                .render_marked(&m, false, "t")
                .unwrap()
                .generation_spans,
            None
        );
        let bad = msgs(&[("user", "a\u{FDD0}b")]);
        let e = t.render(&bad, false, "row 3").unwrap_err().to_string();
        assert!(e.contains("row 3") && e.contains("U+FDD0"), "{e}");
    }

    #[test]
    fn generation_tags_keep_jinja_whitespace_control() {
        // trim_blocks drops the newline after a block tag, `-` strips around it: the rewritten
        // tags must behave as transformers' own tags do.
        let src = "{% for m in messages %}[\n  {%- generation -%}\n  {{ m['content'] }}\n{% endgeneration %}\n]{% endfor %}";
        let t = ChatTemplate::new(src, vec![], None).unwrap();
        let r = t
            .render_marked(&msgs(&[("assistant", "A")]), false, "t")
            .unwrap();
        assert_eq!(r.text, "[A\n]");
        assert_eq!(&r.text[r.generation_spans.unwrap()[0].clone()], "A\n");
        let (rewritten, found) =
            rewrite_generation_tags("{%+ generation %}x{%- endgeneration +%}{% if x %}{% endif %}");
        assert!(found);
        assert_eq!(
            rewritten,
            format!(
                "{{%+ filter {GENERATION_FILTER} %}}x{{%- endfilter +%}}{{% if x %}}{{% endif %}}"
            )
        );
    }

    #[test]
    fn hf_style_template_with_python_methods_and_specials() {
        // Shaped like the DeepSeek-R1 / Llama templates: bos_token, strip(), split(),
        // startswith(), raise_exception, trim_blocks/lstrip_blocks.
        let src = r#"{{ bos_token }}
{%- for message in messages %}
    {%- if message['role'] == 'user' %}
{{ '<U>' + message['content'].strip() }}
    {%- elif message['role'] == 'assistant' %}
        {%- set c = message['content'] %}
        {%- if '</think>' in c %}{% set c = c.split('</think>')[-1].lstrip() %}{% endif %}
{{ '<A>' + c + eos_token }}
    {%- elif message['role'].startswith('sys') %}
{{ '<S>' + message['content'].upper() }}
    {%- else %}
{{ raise_exception('bad role ' + message['role']) }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<A>' }}{% endif %}"#;
        let cfg = serde_json::json!({
            "chat_template": src,
            "bos_token": {"content": "<s>", "lstrip": false},
            "eos_token": "</s>",
        });
        let t = ChatTemplate::from_config_value(&cfg, None, None).unwrap();
        assert!(!t.is_fallback);
        let m = msgs(&[
            ("system", "be brief"),
            ("user", "  q  "),
            ("assistant", "<think>r</think>  ans"),
        ]);
        assert_eq!(
            t.render(&m, false, "t").unwrap(),
            // As Jinja2 with trim_blocks: the newline after each block tag is dropped.
            "<s><S>BE BRIEF<U>q<A>ans</s>"
        );
        let err = t
            .render(&msgs(&[("tool", "x")]), false, "file.parquet row 3")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("file.parquet row 3") && err.contains("bad role tool"),
            "{err}"
        );
    }

    #[test]
    fn tojson_is_python_json_dumps() {
        let t = ChatTemplate::new(
            "{{ messages[0] | tojson }}|{{ messages | tojson(indent=1) }}|{{ messages[0].items() | list | length }}",
            vec![],
            None,
        )
        .unwrap();
        let m = msgs(&[("user", "a<b> \"é\"\n")]);
        assert_eq!(
            t.render(&m, false, "t").unwrap(),
            "{\"role\": \"user\", \"content\": \"a<b> \\\"é\\\"\\n\"}|[\n {\n  \"role\": \"user\",\n  \"content\": \"a<b> \\\"é\\\"\\n\"\n }\n]|2"
        );
    }

    #[test]
    fn missing_template_falls_back_to_chatml_and_list_templates_pick_default() {
        let t =
            ChatTemplate::from_config_value(&serde_json::json!({"eos_token": "<e>"}), None, None)
                .unwrap();
        assert!(t.is_fallback);
        assert_eq!(t.special("eos_token"), Some("<e>"));
        let cfg = serde_json::json!({"chat_template": [
            {"name": "tool_use", "template": "T"},
            {"name": "default", "template": "D{{ messages | length }}"}
        ]});
        let t = ChatTemplate::from_config_value(&cfg, None, None).unwrap();
        assert_eq!(t.render(&msgs(&[("user", "x")]), false, "t").unwrap(), "D1");
        let bad = ChatTemplate::from_config_value(
            &serde_json::json!({"chat_template": "{% if %}"}),
            None,
            Some(PathBuf::from("/m/tokenizer_config.json")),
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("/m/tokenizer_config.json"), "{bad}");
    }

    #[test]
    fn strftime_formats_a_known_date() {
        // 2024-02-29 13:05:09 UTC
        assert_eq!(
            strftime(1_709_211_909, "%d %b %Y %H:%M:%S %B %m"),
            "29 Feb 2024 13:05:09 February 02"
        );
    }
}
