//! `${VAR}` in a handler's `initialization`: resolved from the environment of the worker the
//! step is handed to, when it is handed out.
//!
//! Why then, and not when the template is registered: the template (and every copy of it the
//! database keeps, the DLQ's snapshots included) stores the reference, never the secret; each
//! worker takes it from its own environment, so a key can be rotated by restarting the workers,
//! and the process that registers templates (a deploy job, the CLI) needs no secrets at all.
//! The resolved value exists only in the step event handed to the handler.

use serde_json::Value;

/// `initialization` with every `${VAR}` / `${VAR:-default}` in its strings replaced from
/// `lookup`. A variable that is unset (or empty) and has no default is an error naming the
/// field, e.g. `initialization.api.key: environment variable SHOP_KEY is not set …`.
pub fn resolve(initialization: &Value, lookup: &impl Fn(&str) -> Option<String>) -> Result<Value, String> {
    if !mentions_a_variable(initialization) {
        return Ok(initialization.clone());
    }
    resolve_at(initialization, "initialization", lookup)
}

/// [`resolve`] from this process's environment.
pub fn resolve_from_env(initialization: &Value) -> Result<Value, String> {
    resolve(initialization, &|name: &str| std::env::var(name).ok())
}

fn mentions_a_variable(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("${"),
        Value::Array(items) => items.iter().any(mentions_a_variable),
        Value::Object(map) => map.values().any(mentions_a_variable),
        _ => false,
    }
}

fn resolve_at(v: &Value, path: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.contains("${") => {
            Value::String(crate::config::expand(s, lookup).map_err(|e| format!("{path}: {e}"))?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| resolve_at(item, &format!("{path}[{i}]"), lookup))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, item)| Ok((k.clone(), resolve_at(item, &format!("{path}.{k}"), lookup)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SHOP_KEY" => Some("sk_live_123".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_and_defaults_are_resolved_anywhere_in_the_config() {
        let config = json!({
            "api_key": "${SHOP_KEY}",
            "url": "https://${HOST:-shop.example}/v1",
            "headers": [{"auth": "Bearer ${SHOP_KEY}"}],
            "retries": 3,
            "empty": "${EMPTY:-fallback}",
        });
        assert_eq!(
            resolve(&config, &env).expect("resolves"),
            json!({
                "api_key": "sk_live_123",
                "url": "https://shop.example/v1",
                "headers": [{"auth": "Bearer sk_live_123"}],
                "retries": 3,
                "empty": "fallback",
            })
        );
    }

    #[test]
    fn a_missing_variable_names_its_field_and_the_variable() {
        let err = resolve(&json!({"api": {"key": "${MISSING_KEY}"}}), &env).expect_err("missing");
        assert!(
            err.starts_with("initialization.api.key: environment variable MISSING_KEY is not set"),
            "{err}"
        );
        let err = resolve(&json!({"list": ["a", "${ALSO_MISSING"]}), &env).expect_err("unclosed");
        assert!(
            err.starts_with("initialization.list[1]: '${' without a closing '}'"),
            "{err}"
        );
    }

    #[test]
    fn a_config_without_variables_is_returned_as_it_is() {
        let config = json!({"a": "$HOME is not a reference", "b": [1, 2]});
        assert_eq!(resolve(&config, &env).expect("unchanged"), config);
    }
}
