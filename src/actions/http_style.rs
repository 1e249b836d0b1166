//! Swimlane's HTTP-style grouping of inputs, accepted beside ours.
//!
//! Swimlane's own Graph connector ("Microsoft Graph API Users and Presence",
//! <https://docs.swimlane.com/connectors/microsoft-graph-api-users-and-presence>)
//! takes each action's inputs grouped the way the HTTP request carries them:
//! `path_parameters` (the user `id`), `parameters` (OData query options under
//! their own names, `$select`, `$filter`, ...), `headers` and `json_body` (the
//! PATCH body); the grouping itself is the one Swimlane's connector runner
//! documents (<https://pypi.org/project/connector_def_runner/>, "Inputs"). The
//! exact option names of Swimlane's Graph actions are not published; the
//! grouped types here use Graph's own query option names, which is our guess.
//!
//! Design: an action with such a shape names it in [`super::Action::HTTP_STYLE`];
//! its input schema becomes `oneOf` [ours, the grouped one], and
//! [`super::ActionEntry::check_inputs`] normalises a grouped object to our
//! typed input before anything runs. An object holding any group key is taken
//! as grouped, so a mix of both shapes (`id` beside `path_parameters`) is
//! refused at the stray key; errors in the normalised input are pointed back at
//! the grouped key they came from.

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Detail, Error, Result};
use crate::schema;

/// The top-level keys of Swimlane's grouping.
pub const GROUP_KEYS: [&str; 4] = ["path_parameters", "parameters", "headers", "json_body"];

/// A grouped input type: its schema (from its Rust type) and how it becomes ours.
pub trait Grouped: DeserializeOwned + JsonSchema {
    /// Where each of our input fields sits in the grouped shape: `("/id",
    /// "/path_parameters/id")`. Pointers under a field follow it.
    const PLACES: &'static [(&'static str, &'static str)];
    /// Our input object for the same request.
    fn into_plain(self) -> Value;
}

/// An action's grouped shape, types erased (as [`super::ActionEntry`] holds it).
#[derive(Clone, Copy)]
pub struct HttpStyle {
    schema: fn() -> Value,
    normalise: fn(Value) -> Result<Value>,
    places: &'static [(&'static str, &'static str)],
}

impl HttpStyle {
    pub const fn of<G: Grouped>() -> Self {
        HttpStyle {
            schema: schema::of::<G>,
            normalise: normalise::<G>,
            places: G::PLACES,
        }
    }

    /// The grouped shape's JSON Schema.
    pub fn schema(&self) -> Value {
        (self.schema)()
    }

    /// Whether `inputs` is in the grouped shape (holds any group key).
    pub fn applies(inputs: &Value) -> bool {
        inputs
            .as_object()
            .is_some_and(|m| GROUP_KEYS.iter().any(|k| m.contains_key(*k)))
    }

    /// Check grouped `inputs` against the grouped schema and turn them into ours;
    /// `check_plain` then checks ours, its pointers placed back in the grouped shape.
    /// Pointers are relative to the inputs.
    pub fn normalise(
        &self,
        inputs: &Value,
        check_plain: impl FnOnce(&Value) -> Result<()>,
    ) -> Result<Value> {
        schema::validate(&self.schema(), inputs)?;
        let plain = (self.normalise)(inputs.clone())?;
        check_plain(&plain).map_err(|e| self.place(e))?;
        Ok(plain)
    }

    /// Point an error about our input at the grouped key it came from.
    fn place(&self, error: Error) -> Error {
        let details: Vec<Detail> = error
            .details
            .into_iter()
            .map(|d| Detail::new(place(self.places, &d.path), d.message))
            .collect();
        Error::invalid_details(details)
    }
}

fn normalise<G: Grouped>(inputs: Value) -> Result<Value> {
    let grouped: G = serde_json::from_value(inputs).map_err(|e| schema::deserialize_error(&e))?;
    Ok(grouped.into_plain())
}

/// `path` (a pointer into our input) as a pointer into the grouped shape.
fn place(places: &[(&str, &str)], path: &str) -> String {
    for (ours, theirs) in places {
        if let Some(rest) = path.strip_prefix(ours)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{theirs}{rest}");
        }
    }
    path.to_string()
}

/// The combined input schema: `oneOf` [ours, grouped], with both schemas'
/// definitions lifted to the top so their `#/$defs/...` references still resolve.
pub fn one_of(plain: Value, grouped: Value) -> Value {
    let mut defs = serde_json::Map::new();
    let mut strip = |mut s: Value| {
        if let Value::Object(m) = &mut s {
            m.remove("$schema");
            if let Some(Value::Object(d)) = m.remove("$defs") {
                defs.extend(d);
            }
        }
        s
    };
    let (plain, grouped) = (strip(plain), strip(grouped));
    let mut out = serde_json::Map::new();
    out.insert("$schema".into(), schema::DRAFT.into());
    out.insert("oneOf".into(), Value::Array(vec![plain, grouped]));
    if !defs.is_empty() {
        out.insert("$defs".into(), Value::Object(defs));
    }
    Value::Object(out)
}

/// `path_parameters` of the user actions: the user in the URL `/users/{id}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPath {
    /// The user's object id (GUID) or user principal name.
    #[schemars(length(min = 1, max = 1024))]
    pub id: String,
}

/// OData `$select` as Swimlane passes it: Graph's comma-separated text, or a list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SelectList {
    /// `displayName,jobTitle`, as in the URL.
    Text(#[schemars(length(max = 20000))] String),
    List(#[schemars(length(max = 100))] Vec<String>),
}

impl SelectList {
    /// The names, trimmed, empty ones dropped.
    pub fn names(self) -> Vec<String> {
        match self {
            SelectList::Text(s) => s
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
            SelectList::List(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_are_placed_in_the_grouped_shape() {
        let places = &[
            ("/id", "/path_parameters/id"),
            ("/select", "/parameters/$select"),
        ];
        assert_eq!(place(places, "/id"), "/path_parameters/id");
        assert_eq!(place(places, "/select/2"), "/parameters/$select/2");
        assert_eq!(place(places, "/identity"), "/identity");
        assert_eq!(place(places, ""), "");
    }

    #[test]
    fn select_text_splits_on_commas() {
        let s = SelectList::Text(" displayName, ,jobTitle".into());
        assert_eq!(s.names(), ["displayName", "jobTitle"]);
    }
}
