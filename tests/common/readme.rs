//! The README's code blocks, so that the suites run what it tells users
//! to run, and the two cannot drift apart.

use std::path::Path;

/// The contents of every fenced block of language `lang` in the README's
/// section `heading` (a whole `## ` line), indentation of the fence removed.
pub fn blocks(heading: &str, lang: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = std::fs::read_to_string(&path).expect("read README.md");
    let section: Vec<&str> = text
        .lines()
        .skip_while(|line| *line != heading)
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .collect();
    assert!(!section.is_empty(), "README.md has no section {heading:?}");
    let open = format!("```{lang}");
    let mut out = Vec::new();
    let mut lines = section.into_iter();
    while let Some(line) = lines.next() {
        if line.trim() != open {
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| l.trim() != "```")
            .map(|l| l.strip_prefix(indent).unwrap_or(l))
            .collect();
        out.push(body.join("\n") + "\n");
    }
    out
}

/// The queries of a PromQL block: each starts on a new line and
/// continues on the indented lines after it, or until its brackets close;
/// comments and blank lines stand between queries.
pub fn queries(block: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for line in block.lines() {
        let between = line.trim().is_empty() || line.trim_start().starts_with('#');
        let continues = open
            && (out.last().is_some_and(|q| unclosed(q) > 0)
                || (!between && line.starts_with(char::is_whitespace)));
        if continues {
            let query = out.last_mut().expect("an open query");
            query.push('\n');
            query.push_str(line);
        } else if between {
            open = false;
        } else {
            out.push(line.to_owned());
            open = true;
        }
    }
    out
}

/// Brackets opened and not yet closed in `query`, outside strings.
fn unclosed(query: &str) -> i32 {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in query.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            },
        }
    }
    depth
}
