//! Reading a kubelet `CredentialProviderConfig` written in YAML: the
//! `matchImages` of one named provider. Only the shapes such files take are
//! understood (block mappings and sequences, flow sequences, quoted
//! scalars, comments), by indentation as YAML nests them, so a provider's
//! `env` entries (`- name: …`) are never taken for another provider.

/// One meaningful line: its indentation and its text without the comment.
struct Line<'a> {
    indent: usize,
    text: &'a str,
}

/// The lines that carry content, comments and document markers removed.
fn lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .map(|l| {
            let body = without_comment(l).trim_end();
            Line { indent: body.len() - body.trim_start().len(), text: body.trim_start() }
        })
        .filter(|l| !l.text.is_empty() && l.text != "---" && l.text != "...")
        .collect()
}

/// `line` up to a `#` that starts a comment (at the start or after a
/// blank, outside quotes).
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') if previous.is_whitespace() => return &line[..i],
            (None, '"' | '\'') => quote = Some(c),
            (Some('"'), '\\') => {}
            (Some(q), c) if c == q && !(q == '"' && previous == '\\') => quote = None,
            _ => {}
        }
        previous = c;
    }
    line
}

/// A scalar's value: quotes removed (JSON's escapes for double quotes).
fn scalar(s: &str) -> String {
    let s = s.trim();
    if s.starts_with('"') {
        if let Ok(v) = serde_json::from_str::<String>(s) {
            return v;
        }
    }
    match s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => s.trim_matches('"').to_owned(),
    }
}

/// The items of a flow sequence `[a, "b", …]`.
fn flow(s: &str) -> Vec<String> {
    let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
    let mut out = Vec::new();
    let (mut item, mut quote) = (String::new(), None);
    for c in inner.chars() {
        match (quote, c) {
            (None, ',') => out.push(std::mem::take(&mut item)),
            (None, '"' | '\'') => {
                quote = Some(c);
                item.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                item.push(c);
            }
            _ => item.push(c),
        }
    }
    out.push(item);
    out.iter().map(|i| scalar(i)).filter(|i| !i.is_empty()).collect()
}

/// `key: value` split, when `text` is a mapping entry.
fn entry(text: &str) -> Option<(&str, &str)> {
    let (key, value) = text.split_once(':')?;
    let key = key.trim().trim_matches('"').trim_matches('\'');
    (!key.is_empty() && !key.contains(' ')).then_some((key, value.trim()))
}

/// The `matchImages` of every provider named `name` under `providers:`.
pub(crate) fn match_images(text: &str, name: &str) -> Vec<String> {
    let lines = lines(text);
    let Some(start) =
        lines.iter().position(|l| l.indent == 0 && entry(l.text).is_some_and(|(k, _)| k == "providers"))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut i = start + 1;
    // Each provider is a `- ` item; its keys sit where the item's text starts.
    while let Some(item) = lines.get(i).filter(|l| l.text.starts_with('-')) {
        let item_indent = item.indent;
        let first = item.text[1..].trim_start();
        // The item's own lines; its keys sit where its first key starts.
        let mut keys = Vec::new();
        i += 1;
        while let Some(l) = lines.get(i).filter(|l| l.indent > item_indent) {
            keys.push((l.indent, l.text));
            i += 1;
        }
        let key_indent = if first.is_empty() {
            keys.first().map_or(item_indent + 2, |k| k.0)
        } else {
            let at = item_indent + (item.text.len() - first.len());
            keys.insert(0, (at, first));
            at
        };
        let (mut named, mut images) = (false, Vec::new());
        let mut k = 0;
        while k < keys.len() {
            let (indent, text) = keys[k];
            k += 1;
            let Some((key, value)) = entry(text).filter(|_| indent == key_indent) else { continue };
            match key {
                "name" => named = scalar(value) == name,
                "matchImages" if value.starts_with('[') => {
                    // A flow sequence may run over several lines, to its `]`.
                    let mut whole = value.to_owned();
                    while !whole.contains(']') && k < keys.len() {
                        whole.push(' ');
                        whole.push_str(keys[k].1);
                        k += 1;
                    }
                    images = flow(&whole);
                }
                "matchImages" => {
                    // Its items are the dashes at the first one's indentation.
                    let mut at = None;
                    while let Some(&(indent, text)) = keys.get(k) {
                        let nested = indent > key_indent || (indent == key_indent && text.starts_with('-'));
                        if !nested {
                            break;
                        }
                        if let Some(item) = text.strip_prefix('-') {
                            if *at.get_or_insert(indent) == indent {
                                images.push(scalar(item));
                            }
                        }
                        k += 1;
                    }
                }
                _ => {}
            }
        }
        if named {
            out.extend(images);
        }
        // Lines below `providers:` that are not provider items end it.
        if lines.get(i).is_some_and(|l| l.indent < item_indent || !l.text.starts_with('-')) {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::match_images;

    const NAME: &str = "ecr-credd-kubelet-provider";

    #[test]
    fn env_entries_before_match_images_are_not_providers() {
        let text = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: ecr-credd-kubelet-provider\n    env:\n      - name: ECR_CREDD_SOCKET\n        value: /run/x.sock\n    matchImages:\n      - \"a.example\"\n      - 'b.example'   # the second\n    defaultCacheDuration: 6h\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n";
        assert_eq!(match_images(text, NAME), ["a.example", "b.example"]);
    }

    #[test]
    fn flow_sequences_dashes_at_the_keys_indent_and_other_providers() {
        let text = "# nodes\nproviders:\n- name: ecr-credential-provider\n  matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n- matchImages:\n  - c.example:5000\n  - \"d.example\" # why\n  name: \"ecr-credd-kubelet-provider\"\n- name: ecr-credd-kubelet-provider\n  matchImages: [ e.example, 'f.example',\n    \"g.example#1\" ]\n";
        assert_eq!(
            match_images(text, NAME),
            ["c.example:5000", "d.example", "e.example", "f.example", "g.example#1"]
        );
        assert_eq!(match_images(text, "ecr-credential-provider"), ["*.dkr.ecr.*.amazonaws.com"]);
        let bare_dash =
            "providers:\n  -\n    name: ecr-credd-kubelet-provider\n    matchImages:\n    - h.example\n";
        assert_eq!(match_images(bare_dash, NAME), ["h.example"]);
    }

    #[test]
    fn a_file_without_providers_or_without_ours_has_none() {
        assert!(match_images("kind: CredentialProviderConfig\n", NAME).is_empty());
        assert!(match_images("providers: []\n", NAME).is_empty());
        let other = "providers:\n  - name: other\n    matchImages:\n      - a.example\n";
        assert!(match_images(other, NAME).is_empty());
        // A nested key called providers is not the list.
        let nested =
            "spec:\n  providers:\n    - name: ecr-credd-kubelet-provider\n      matchImages: [a.example]\n";
        assert!(match_images(nested, NAME).is_empty());
    }
}
