//! Prompts from `prompts/*.md`, embedded at compile time (see build.rs).
//!
//! Format: a `---` line; `name:`, `title:`, `description:` lines and any
//! number of `argument: NAME | required|optional | description` lines; a
//! `---` line; then the Markdown body, where `{{NAME}}` is replaced by the
//! argument's value.

use std::collections::BTreeMap;

use rmcp::model::{GetPromptResult, Prompt, PromptArgument, PromptMessage, Role};

include!(concat!(env!("OUT_DIR"), "/prompts.rs"));

#[derive(Debug, Clone, PartialEq)]
pub struct PromptTemplate {
    pub name: String,
    pub title: String,
    pub description: String,
    pub arguments: Vec<(String, bool, String)>,
    pub body: String,
}

/// Parses one prompt file; `None` when it does not follow the format.
pub fn parse(text: &str) -> Option<PromptTemplate> {
    let text = text.strip_prefix("---\n")?;
    let (head, body) = text.split_once("\n---\n")?;
    let mut t = PromptTemplate {
        name: String::new(),
        title: String::new(),
        description: String::new(),
        arguments: Vec::new(),
        body: body.trim_start_matches('\n').to_owned(),
    };
    for line in head.lines() {
        let (key, value) = line.split_once(':')?;
        let value = value.trim();
        match key.trim() {
            "name" => t.name = value.to_owned(),
            "title" => t.title = value.to_owned(),
            "description" => t.description = value.to_owned(),
            "argument" => {
                let mut parts = value.splitn(3, '|').map(str::trim);
                let name = parts.next()?.to_owned();
                let required = parts.next()? == "required";
                let desc = parts.next().unwrap_or_default().to_owned();
                t.arguments.push((name, required, desc));
            }
            _ => return None,
        }
    }
    (!t.name.is_empty()).then_some(t)
}

/// Every embedded prompt that parses.
pub fn all() -> Vec<PromptTemplate> {
    PROMPT_FILES
        .iter()
        .filter_map(|(file, text)| {
            let p = parse(text);
            if p.is_none() {
                tracing::warn!(
                    file,
                    "prompt file does not follow the prompt format; skipped"
                );
            }
            p
        })
        .collect()
}

pub fn list() -> Vec<Prompt> {
    all()
        .into_iter()
        .map(|t| {
            let args = t
                .arguments
                .iter()
                .map(|(n, r, d)| PromptArgument::new(n).with_description(d).with_required(*r))
                .collect::<Vec<_>>();
            let mut p = Prompt::new(t.name, Some(t.description), Some(args));
            p.title = Some(t.title);
            p
        })
        .collect()
}

/// Renders a prompt; errors name what is missing.
pub fn get(name: &str, args: &BTreeMap<String, String>) -> Result<GetPromptResult, String> {
    let t = all()
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| format!("no prompt named '{name}'; call prompts/list"))?;
    let mut body = t.body.clone();
    for (arg, required, _) in &t.arguments {
        match args.get(arg) {
            Some(v) => body = body.replace(&format!("{{{{{arg}}}}}"), v),
            None if *required => return Err(format!("prompt '{name}' needs the argument '{arg}'")),
            None => body = body.replace(&format!("{{{{{arg}}}}}"), "(not given)"),
        }
    }
    let mut r = GetPromptResult::new(vec![PromptMessage::new_text(Role::User, body)]);
    r.description = Some(t.description);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_format_and_fills_arguments() {
        let text = "---\nname: demo\ntitle: Demo\ndescription: A demo.\nargument: days | optional | How many days\nargument: id | required | The id\n---\nLook {{days}} days ahead at {{id}}.\n";
        let t = parse(text).expect("parses");
        assert_eq!(t.name, "demo");
        assert_eq!(t.arguments.len(), 2);
        assert!(t.arguments[1].1);
        assert!(parse("no front matter").is_none());
        assert!(parse("---\nbogus: x\n---\nbody").is_none());
    }

    #[test]
    fn embedded_prompts_all_parse() {
        for (file, text) in PROMPT_FILES {
            assert!(
                parse(text).is_some(),
                "{file} does not follow the prompt format"
            );
        }
    }
}
