//! The little shell the README's commands are written in: words with
//! single and double quotes, backslash escapes and line continuations,
//! `$NAME`, `${NAME}` and `$(...)` (expanded later, in order, by the
//! replay), `|` pipelines, `NAME=value` assignments and `#` comments.
//! Anything else is not part of the README's language and fails the parse.

/// The README's code: the lines of its indented blocks (fenced blocks are
/// diagrams, not commands), with the line number of each block.
pub fn code_blocks(readme: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut fenced = false;
    let mut previous_blank = true;
    for (index, line) in readme.lines().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let code = !fenced && line.starts_with("    ");
        match (&mut current, code) {
            (Some((_, text)), true) => {
                text.push_str(&line[4..]);
                text.push('\n');
            }
            (None, true) if previous_blank => {
                current = Some((index + 1, format!("{}\n", &line[4..])));
            }
            // A blank line ends a block; code after it starts another.
            (Some(_), false) => blocks.extend(current.take()),
            _ => {}
        }
        previous_blank = line.trim().is_empty();
    }
    blocks.extend(current);
    blocks
}

/// A piece of a word.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text as written (quotes and escapes already removed).
    Lit(String),
    /// `$NAME` or `${NAME}`.
    Var(String),
    /// `$(...)`: the command inside, to run and replace by its output.
    Subst(String),
}

/// A word: its parts, concatenated once expanded (no word splitting).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Word(pub Vec<Part>);

impl Word {
    fn push_char(&mut self, c: char) {
        match self.0.last_mut() {
            Some(Part::Lit(s)) => s.push(c),
            _ => self.0.push(Part::Lit(c.to_string())),
        }
    }

    /// `NAME=rest` when the word starts with an unquoted assignment.
    pub fn assignment(&self) -> Option<(String, Word)> {
        let Some(Part::Lit(first)) = self.0.first() else {
            return None;
        };
        let (name, value) = first.split_once('=')?;
        let valid = name.chars().next()?.is_ascii_alphabetic()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return None;
        }
        let mut rest = vec![Part::Lit(value.to_string())];
        rest.extend(self.0[1..].iter().cloned());
        Some((name.to_string(), Word(rest)))
    }

    /// The word when it is plain text (no expansion).
    pub fn literal(&self) -> Option<String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Lit(s) => out.push_str(s),
                _ => return None,
            }
        }
        Some(out)
    }
}

/// One command line: the stages of its pipeline, with the text it came from
/// and its line in the source.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Each stage's words.
    pub stages: Vec<Vec<Word>>,
    /// The source text.
    pub text: String,
    /// 1-based line of its first character, counted from `first_line`.
    pub line: usize,
}

/// Parses `text` (whose first line is line `first_line` of its file) into
/// command lines.
pub fn parse(text: &str, first_line: usize) -> Result<Vec<Pipeline>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line = first_line;
    let mut out = Vec::new();
    let mut stages: Vec<Vec<Word>> = Vec::new();
    let mut words: Vec<Word> = Vec::new();
    let mut word: Option<Word> = None;
    let mut start = 0;
    let mut start_line = line;
    let finish_word = |word: &mut Option<Word>, words: &mut Vec<Word>| {
        if let Some(w) = word.take() {
            words.push(w);
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                i += 2;
                line += 1;
            }
            '\\' => {
                let next = *chars.get(i + 1).ok_or("a backslash at the end")?;
                word.get_or_insert_with(Word::default).push_char(next);
                i += 2;
            }
            ' ' | '\t' => {
                finish_word(&mut word, &mut words);
                i += 1;
            }
            '\n' | ';' => {
                finish_word(&mut word, &mut words);
                if !words.is_empty() {
                    stages.push(std::mem::take(&mut words));
                }
                if !stages.is_empty() {
                    out.push(Pipeline {
                        stages: std::mem::take(&mut stages),
                        text: chars[start..i]
                            .iter()
                            .collect::<String>()
                            .trim()
                            .to_string(),
                        line: start_line,
                    });
                }
                if c == '\n' {
                    line += 1;
                }
                i += 1;
                start = i;
                start_line = line;
            }
            '|' => {
                finish_word(&mut word, &mut words);
                if words.is_empty() {
                    return Err(format!("line {line}: a pipe without a command before it"));
                }
                stages.push(std::mem::take(&mut words));
                i += 1;
            }
            '#' if word.is_none() => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\'' => {
                let end = (i + 1..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .ok_or_else(|| format!("line {line}: an unclosed single quote"))?;
                let quoted: String = chars[i + 1..end].iter().collect();
                line += quoted.matches('\n').count();
                let w = word.get_or_insert_with(Word::default);
                for c in quoted.chars() {
                    w.push_char(c);
                }
                i = end + 1;
            }
            '"' => {
                let w = word.get_or_insert_with(Word::default);
                i += 1;
                loop {
                    let c = *chars
                        .get(i)
                        .ok_or_else(|| format!("line {line}: an unclosed double quote"))?;
                    match c {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' => match chars.get(i + 1) {
                            Some('\n') => {
                                line += 1;
                                i += 2;
                            }
                            Some(&e @ ('"' | '\\' | '$' | '`')) => {
                                w.push_char(e);
                                i += 2;
                            }
                            _ => {
                                w.push_char('\\');
                                i += 1;
                            }
                        },
                        '$' => i = dollar(&chars, i, w, line)?,
                        '`' => return Err(format!("line {line}: backquotes are not supported")),
                        c => {
                            if c == '\n' {
                                line += 1;
                            }
                            w.push_char(c);
                            i += 1;
                        }
                    }
                }
            }
            '$' => {
                let w = word.get_or_insert_with(Word::default);
                i = dollar(&chars, i, w, line)?;
            }
            '`' | '&' | '>' | '<' | '(' | ')' | '{' | '}' if word.is_none() => {
                return Err(format!("line {line}: {c:?} is not supported here"));
            }
            c => {
                word.get_or_insert_with(Word::default).push_char(c);
                i += 1;
            }
        }
    }
    finish_word(&mut word, &mut words);
    if !words.is_empty() {
        stages.push(words);
    }
    if !stages.is_empty() {
        out.push(Pipeline {
            stages,
            text: chars[start..].iter().collect::<String>().trim().to_string(),
            line: start_line,
        });
    }
    Ok(out)
}

/// Reads the expansion starting at `chars[i] == '$'` into `word`; the index
/// after it.
fn dollar(chars: &[char], i: usize, word: &mut Word, line: usize) -> Result<usize, String> {
    match chars.get(i + 1) {
        Some('(') => {
            let mut depth = 0;
            let mut j = i + 1;
            let mut quote: Option<char> = None;
            while j < chars.len() {
                let c = chars[j];
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some('"'), '\\') => j += 1,
                    (Some(_), _) => {}
                    (None, '\'' | '"') => quote = Some(c),
                    (None, '(') => depth += 1,
                    (None, ')') => {
                        depth -= 1;
                        if depth == 0 {
                            let inner: String = chars[i + 2..j].iter().collect();
                            word.0.push(Part::Subst(inner));
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err(format!("line {line}: an unclosed $("))
        }
        Some('{') => {
            let end = (i + 2..chars.len())
                .find(|&j| chars[j] == '}')
                .ok_or_else(|| format!("line {line}: an unclosed ${{"))?;
            word.0.push(Part::Var(chars[i + 2..end].iter().collect()));
            Ok(end + 1)
        }
        Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            word.0.push(Part::Var(chars[i + 1..j].iter().collect()));
            Ok(j)
        }
        _ => {
            word.push_char('$');
            Ok(i + 1)
        }
    }
}

/// Applies the `jq` filter the README uses to `input`: `.`-paths with
/// `[]` iteration, `select(PATH == "text")`, stages joined by `|`. Each
/// output is a JSON value.
pub fn jq(filter: &str, input: &serde_json::Value) -> Result<Vec<serde_json::Value>, String> {
    let mut values = vec![input.clone()];
    for stage in split_top(filter, '|') {
        let stage = stage.trim();
        let mut next = Vec::new();
        for value in values {
            if let Some(inner) = stage
                .strip_prefix("select(")
                .and_then(|s| s.strip_suffix(')'))
            {
                let (path, expected) = inner
                    .split_once("==")
                    .ok_or_else(|| format!("jq: only `select(PATH == VALUE)`: {stage}"))?;
                let expected: serde_json::Value = serde_json::from_str(expected.trim())
                    .map_err(|e| format!("jq: {expected}: {e}"))?;
                if path_values(path.trim(), &value)?.contains(&expected) {
                    next.push(value);
                }
            } else {
                next.extend(path_values(stage, &value)?);
            }
        }
        values = next;
    }
    Ok(values)
}

/// Splits at `sep` outside parentheses and quotes.
fn split_top(text: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let (mut depth, mut quoted) = (0, false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == sep && depth == 0 && !quoted => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

/// The values of a path such as `.configs[].configId` (`.` alone: the
/// value; a missing key: null).
fn path_values(path: &str, value: &serde_json::Value) -> Result<Vec<serde_json::Value>, String> {
    let rest = path
        .strip_prefix('.')
        .ok_or_else(|| format!("jq: only paths starting with `.`: {path}"))?;
    let mut values = vec![value.clone()];
    for segment in rest.split('.').filter(|s| !s.is_empty()) {
        let (key, iterate) = match segment.strip_suffix("[]") {
            Some(key) => (key, true),
            None => (segment, false),
        };
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("jq: unsupported path segment {segment:?}"));
        }
        let mut next = Vec::new();
        for v in values {
            let v = if key.is_empty() {
                v
            } else {
                v.get(key).cloned().unwrap_or(serde_json::Value::Null)
            };
            if iterate {
                match v {
                    serde_json::Value::Array(items) => next.extend(items),
                    serde_json::Value::Null => {}
                    other => return Err(format!("jq: cannot iterate over {other}")),
                }
            } else {
                next.push(v);
            }
        }
        values = next;
    }
    Ok(values)
}

#[test]
fn the_readme_shell_is_parsed() {
    let text = "A=x.y\ncurl -H \"a: $(cat f)\" \\\n  -d '{\"k\":\n1}' $A/M   # note\n# only a comment\nK='\"c\":\"d\"'\n";
    let lines = parse(text, 1).unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].stages[0][0].assignment().unwrap().0, "A");
    let words = &lines[1].stages[0];
    assert_eq!(words.len(), 6);
    assert_eq!(
        words[2].0,
        vec![Part::Lit("a: ".into()), Part::Subst("cat f".into())]
    );
    assert_eq!(words[4].literal().unwrap(), "{\"k\":\n1}");
    assert_eq!(
        words[5].0,
        vec![Part::Var("A".into()), Part::Lit("/M".into())]
    );
    assert_eq!(lines[1].line, 2);
    assert_eq!(lines[2].line, 6);
    let (name, value) = lines[2].stages[0][0].assignment().unwrap();
    assert_eq!(
        (name.as_str(), value.literal().unwrap().as_str()),
        ("K", "\"c\":\"d\"")
    );
    assert!(parse("echo 'open", 1).is_err());
}

#[test]
fn the_readme_jq_filters_work() {
    let v = serde_json::json!({"configs":[{"name":"a","configId":"1"},{"name":"end-of-day","configId":"2"}]});
    let out = jq(".configs[] | select(.name==\"end-of-day\") | .configId", &v).unwrap();
    assert_eq!(out, vec![serde_json::json!("2")]);
    assert_eq!(jq(".configs[].name", &v).unwrap().len(), 2);
    assert!(jq("map(.x)", &v).is_err());
}
