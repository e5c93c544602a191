//! `configure docker`: `credHelpers` entries routing hosts to the helper,
//! merged into a `config.json` whose other keys keep their values and order.

use std::path::Path;

use super::json::Json;
use super::ConfigureError;

/// The helper's name as docker spells it (`docker-credential-ecr-credd`).
pub(crate) const HELPER: &str = "ecr-credd";

/// What a merge would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The new text, or `None` when nothing changes.
    pub text: Option<String>,
    /// One line per host: what happened to it.
    pub notes: Vec<String>,
}

fn parse(path: &Path, text: &str) -> Result<Json, ConfigureError> {
    if text.trim().is_empty() {
        return Ok(Json::Object(Vec::new()));
    }
    let value: Json = serde_json::from_str(text).map_err(|e| ConfigureError::Malformed {
        path: path.into(),
        line: e.line(),
        column: e.column(),
        reason: e.to_string().split(" at line ").next().unwrap_or_default().to_owned(),
    })?;
    match value {
        Json::Object(_) => Ok(value),
        _ => Err(ConfigureError::Shape { path: path.into(), what: "the file is not a JSON object".into() }),
    }
}

/// `credHelpers` for `hosts` added to (or, with `remove`, taken out of)
/// the config at `path` whose text is `existing`. A host another helper
/// holds is a conflict unless `force`.
pub(crate) fn plan(
    path: &Path,
    existing: Option<&str>,
    hosts: &[String],
    remove: bool,
    force: bool,
) -> Result<Plan, ConfigureError> {
    let mut config = parse(path, existing.unwrap_or_default())?;
    let store = config.get("credsStore").and_then(Json::as_str).map(str::to_owned);
    let stored: Vec<String> = match config.get("auths") {
        Some(Json::Object(auths)) => auths.iter().map(|(k, _)| k.clone()).collect(),
        _ => Vec::new(),
    };
    let fields = config.fields_mut().ok_or_else(|| ConfigureError::Shape {
        path: path.into(),
        what: "the file is not a JSON object".into(),
    })?;
    if !fields.iter().any(|(k, _)| k == "credHelpers") {
        if remove {
            let notes = hosts.iter().map(|h| format!("{h}: not configured (no credHelpers)")).collect();
            return Ok(Plan { text: None, notes });
        }
        fields.push(("credHelpers".into(), Json::Object(Vec::new())));
    }
    let helpers =
        fields.iter_mut().find(|(k, _)| k == "credHelpers").and_then(|(_, v)| v.fields_mut()).ok_or_else(
            || ConfigureError::Shape { path: path.into(), what: "credHelpers is not an object".into() },
        )?;

    let mut notes = Vec::new();
    let mut conflicts = Vec::new();
    let mut changed = false;
    for host in hosts {
        let current = helpers.iter().position(|(k, _)| k == host);
        let value = current.and_then(|i| helpers[i].1.as_str().map(str::to_owned));
        match (remove, current, value.as_deref()) {
            (true, Some(i), Some(HELPER)) => {
                helpers.remove(i);
                changed = true;
                notes.push(format!("{host}: removed"));
            }
            (true, _, Some(other)) => notes.push(format!("{host}: left to docker-credential-{other}")),
            (true, _, _) => notes.push(format!("{host}: not configured")),
            (false, Some(_), Some(HELPER)) => notes.push(format!("{host}: already routed to the helper")),
            (false, Some(i), other) if force => {
                let was =
                    other.map_or_else(|| "a non-string".to_owned(), |o| format!("docker-credential-{o}"));
                helpers[i].1 = Json::String(HELPER.into());
                changed = true;
                notes.push(format!("{host}: replaced {was} (--force)"));
            }
            (false, Some(_), other) => conflicts.push(format!(
                "{host} is routed to {}",
                other.map_or_else(|| "a non-string value".to_owned(), |o| format!("docker-credential-{o}"))
            )),
            (false, None, _) => {
                helpers.push((host.clone(), Json::String(HELPER.into())));
                changed = true;
                let mut note = format!("{host}: added");
                if stored.contains(host) {
                    note += " (its stored login in auths is no longer used)";
                }
                if let Some(store) = store.as_deref().filter(|s| *s != HELPER) {
                    note += &format!(" (credsStore {store:?} still serves other hosts)");
                }
                notes.push(note);
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(ConfigureError::Conflict { path: path.into(), conflicts });
    }
    // Adding puts a new credHelpers last; one the user placed elsewhere,
    // empty or not, is theirs and stays.
    let emptied = changed && helpers.is_empty();
    if remove && emptied && fields.last().is_some_and(|(k, _)| k == "credHelpers") {
        fields.pop();
    }
    Ok(Plan { text: changed.then(|| config.to_text_like(existing.unwrap_or_default())), notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXISTING: &str = r#"{
	"auths": {
		"111122223333.dkr.ecr.eu-west-1.amazonaws.com": {"auth": "QVdTOnN0YWxl"},
		"ghcr.io": {"auth": "dTpw"}
	},
	"credsStore": "desktop",
	"credHelpers": {"gcr.io": "gcloud"},
	"proxies": {"default": {"httpsProxy": "http://proxy:3128"}}
}"#;

    fn hosts(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn merges_keeping_every_other_key_and_its_order_and_twice_changes_nothing() {
        let p = Path::new("config.json");
        let ecr = "111122223333.dkr.ecr.eu-west-1.amazonaws.com";
        let plan = plan(p, Some(EXISTING), &hosts(&[ecr]), false, false).unwrap();
        let text = plan.text.unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["credHelpers"], serde_json::json!({"gcr.io": "gcloud", ecr: "ecr-credd"}));
        assert_eq!(v["credsStore"], "desktop");
        assert_eq!(v["proxies"]["default"]["httpsProxy"], "http://proxy:3128");
        assert_eq!(v["auths"]["ghcr.io"]["auth"], "dTpw");
        let order: Vec<usize> = ["\"auths\"", "\"credsStore\"", "\"credHelpers\"", "\"proxies\""]
            .iter()
            .map(|k| text.find(k).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(plan.notes[0].contains("its stored login in auths is no longer used"), "{:?}", plan.notes);
        assert!(
            plan.notes[0].contains("credsStore \"desktop\" still serves other hosts"),
            "{:?}",
            plan.notes
        );

        let again = super::plan(p, Some(&text), &hosts(&[ecr]), false, false).unwrap();
        assert_eq!(again.text, None);
        assert_eq!(again.notes, [format!("{ecr}: already routed to the helper")]);

        // --remove undoes exactly what was added.
        let removed = super::plan(p, Some(&text), &hosts(&[ecr]), true, false).unwrap();
        let back: serde_json::Value = serde_json::from_str(&removed.text.unwrap()).unwrap();
        assert_eq!(back, serde_json::from_str::<serde_json::Value>(EXISTING).unwrap());
    }

    #[test]
    fn removing_keeps_an_empty_cred_helpers_the_user_had() {
        let p = Path::new("config.json");
        let had = "{\n\t\"credHelpers\": {},\n\t\"auths\": {}\n}\n";
        let added = plan(p, Some(had), &hosts(&["a.example"]), false, false).unwrap().text.unwrap();
        let removed = plan(p, Some(&added), &hosts(&["a.example"]), true, false).unwrap().text.unwrap();
        let (back, before): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(&removed).unwrap(), serde_json::from_str(had).unwrap());
        assert_eq!(back, before, "{removed}");
        assert_eq!(removed, had, "the bytes come back");
    }

    #[test]
    fn a_host_another_helper_holds_is_replaced_only_with_force() {
        let p = Path::new("/home/u/.docker/config.json");
        let err = plan(p, Some(EXISTING), &hosts(&["gcr.io"]), false, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/home/u/.docker/config.json: gcr.io is routed to docker-credential-gcloud; left unchanged (--force replaces it)"
        );
        let forced = plan(p, Some(EXISTING), &hosts(&["gcr.io"]), false, true).unwrap();
        assert_eq!(forced.notes, ["gcr.io: replaced docker-credential-gcloud (--force)"]);
        // Removing leaves another helper's entry alone.
        let kept = plan(p, Some(EXISTING), &hosts(&["gcr.io"]), true, false).unwrap();
        assert_eq!(
            (kept.text, kept.notes),
            (None, vec!["gcr.io: left to docker-credential-gcloud".to_owned()])
        );
    }

    #[test]
    fn a_missing_or_empty_file_starts_empty_and_malformed_json_is_refused_with_its_place() {
        let p = Path::new("c.json");
        for existing in [None, Some(""), Some("  \n")] {
            let plan = plan(p, existing, &hosts(&["a.example"]), false, false).unwrap();
            assert_eq!(
                plan.text.unwrap(),
                "{\n\t\"credHelpers\": {\n\t\t\"a.example\": \"ecr-credd\"\n\t}\n}\n"
            );
        }
        let err = plan(p, Some("{\n  \"auths\": {,\n}"), &hosts(&["a.example"]), false, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.json: line 2, column 13: not JSON (key must be a string); left unchanged"
        );
        let err = plan(p, Some("[1]"), &hosts(&["a.example"]), false, false).unwrap_err();
        assert_eq!(err.to_string(), "c.json: the file is not a JSON object; left unchanged");
        let err = plan(p, Some("{\"credHelpers\": []}"), &hosts(&["a.example"]), false, false).unwrap_err();
        assert_eq!(err.to_string(), "c.json: credHelpers is not an object; left unchanged");
    }
}
