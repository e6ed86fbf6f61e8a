//! Typed parameter forms: a kind's JSON Schema ([`iterjob::Job::params_schema`])
//! read into fields, the submitted fields checked one by one and assembled into
//! the parameters' JSON.
//!
//! The schema only shapes the form. What reaches the store is still checked by
//! deserializing into the kind's `Params` ([`iterjob::Registry::new_job`]); when
//! that refuses a field the form could not check (a pattern, a custom
//! `Deserialize`), its message is shown next to that field too ([`field_of`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The prefix of a typed field's name in the submitted form, so that a property
/// called `kind` or `queue` cannot collide with the form's own fields.
pub(crate) const FIELD_PREFIX: &str = "p.";

/// The name of the one field when the parameters are a single value (`u32`, …),
/// not an object.
const SCALAR: &str = "value";

/// What a field takes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Input {
    /// Free text.
    Text,
    /// A whole number, within the schema's bounds.
    Integer { min: Option<f64>, max: Option<f64> },
    /// Any number, within the schema's bounds.
    Number { min: Option<f64>, max: Option<f64> },
    /// A checkbox.
    Bool,
    /// One of these values (an enum), each with its label.
    Choice(Vec<(Value, String)>),
    /// A nested value (object, list, map), typed as JSON.
    Json,
}

/// One field of the form.
#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// The property's name (`value` when the parameters are one scalar).
    pub(crate) name: String,
    /// The schema's `title`, else the name.
    pub(crate) label: String,
    /// The schema's `description` (the field's doc comment).
    pub(crate) help: Option<String>,
    pub(crate) input: Input,
    /// Listed in the schema's `required`: an empty field is refused.
    pub(crate) required: bool,
    /// Takes `null`: an empty field means none.
    pub(crate) nullable: bool,
    /// The schema's `default`, prefilled.
    pub(crate) default: Option<Value>,
}

impl Field {
    /// The form control's name.
    pub(crate) fn form_name(&self) -> String {
        format!("{FIELD_PREFIX}{}", self.name)
    }

    /// The text a control shows for `value` (a default, or a value submitted).
    pub(crate) fn text_of(&self, value: &Value) -> String {
        match (&self.input, value) {
            (_, Value::Null) => String::new(),
            (Input::Text, Value::String(s)) => s.clone(),
            (Input::Choice(_), v) => v.to_string(),
            (Input::Json, v) => serde_json::to_string_pretty(v).unwrap_or_default(),
            (_, Value::String(s)) => s.clone(),
            (_, v) => v.to_string(),
        }
    }
}

/// The fields of a kind's form, or why it gets only the JSON box.
#[derive(Clone, Debug)]
pub(crate) struct TypedForm {
    pub(crate) fields: Vec<Field>,
    /// The parameters are one value, not an object: the field is the whole.
    pub(crate) scalar: bool,
}

/// Reads `schema` into a form. `None` when it describes nothing a form can hold
/// field by field (a list at the top, a map without named properties): the page
/// then offers the JSON box alone.
pub(crate) fn typed_form(schema: &Value) -> Option<TypedForm> {
    let root = resolve(schema, schema);
    if let Some(properties) = root.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = root
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut fields: Vec<Field> = properties
            .iter()
            .map(|(name, property)| {
                field(schema, name, property, required.contains(&name.as_str()))
            })
            .collect();
        // what must be filled first; otherwise by name (a schema's properties
        // come sorted unless serde_json keeps their order)
        fields.sort_by_key(|f| !f.required);
        return Some(TypedForm {
            fields,
            scalar: false,
        });
    }
    let single = field(schema, SCALAR, root, true);
    match single.input {
        Input::Json => None,
        _ => Some(TypedForm {
            fields: vec![single],
            scalar: true,
        }),
    }
}

/// Follows a local `$ref` (`#/$defs/X`, `#/definitions/X`) to its definition.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let mut current = schema;
    // a chain of references, bounded (a cycle is not followed forever)
    for _ in 0..8 {
        let Some(reference) = current.get("$ref").and_then(Value::as_str) else {
            return current;
        };
        let target = reference
            .strip_prefix("#/$defs/")
            .map(|name| root.get("$defs").and_then(|d| d.get(name)))
            .or_else(|| {
                reference
                    .strip_prefix("#/definitions/")
                    .map(|name| root.get("definitions").and_then(|d| d.get(name)))
            })
            .flatten();
        match target {
            Some(next) => current = next,
            None => return current,
        }
    }
    current
}

fn text(schema: &Value, key: &str) -> Option<String> {
    schema
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn field(root: &Value, name: &str, property: &Value, required: bool) -> Field {
    // what is said beside a reference (its doc comment) wins over the definition's
    let label = text(property, "title");
    let help = text(property, "description");
    let default = property.get("default").cloned();
    let resolved = resolve(root, property);
    let (shape, nullable) = strip_null(root, resolved);
    Field {
        name: name.to_string(),
        label: label.unwrap_or_else(|| name.to_string()),
        help: help.or_else(|| text(shape, "description")),
        input: input_of(root, shape),
        required,
        nullable,
        default: default.or_else(|| shape.get("default").cloned()),
    }
}

/// The schema without its `null` alternative (`type: ["integer", "null"]`,
/// `anyOf: [X, {type: null}]`), and whether there was one.
fn strip_null<'a>(root: &'a Value, schema: &'a Value) -> (&'a Value, bool) {
    if let Some(types) = schema.get("type").and_then(Value::as_array) {
        let nullable = types.iter().any(|t| t == "null");
        return (schema, nullable);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alternatives) = schema.get(key).and_then(Value::as_array) {
            let rest: Vec<&Value> = alternatives
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if rest.len() == 1 && alternatives.len() == 2 {
                return (resolve(root, rest[0]), true);
            }
        }
    }
    (schema, false)
}

/// The type named by `type` (a string, or a list with `null` in it).
fn type_name(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(types) => {
            let named: Vec<&str> = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            (named.len() == 1).then(|| named[0])
        }
        _ => None,
    }
}

fn input_of(root: &Value, schema: &Value) -> Input {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Input::Choice(
            values
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| (v.clone(), label_of(v)))
                .collect(),
        );
    }
    // an enum whose variants carry doc comments: one `const` per alternative
    for key in ["oneOf", "anyOf"] {
        if let Some(alternatives) = schema.get(key).and_then(Value::as_array) {
            let mut choices = Vec::new();
            for alternative in alternatives {
                let alternative = resolve(root, alternative);
                // a documented variant is a `const`; undocumented ones are grouped
                // into one `enum`
                let values: Vec<Value> = match (alternative.get("const"), alternative.get("enum")) {
                    (Some(value), _) => vec![value.clone()],
                    (None, Some(Value::Array(values))) => values.clone(),
                    _ => return Input::Json,
                };
                let description = text(alternative, "description");
                for value in values.into_iter().filter(|v| !v.is_null()) {
                    let label = match &description {
                        Some(d) => format!("{} — {d}", label_of(&value)),
                        None => label_of(&value),
                    };
                    choices.push((value, label));
                }
            }
            return Input::Choice(choices);
        }
    }
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    match type_name(schema) {
        Some("string") => Input::Text,
        Some("integer") => Input::Integer {
            min: bound("minimum"),
            max: bound("maximum"),
        },
        Some("number") => Input::Number {
            min: bound("minimum"),
            max: bound("maximum"),
        },
        Some("boolean") => Input::Bool,
        _ => Input::Json,
    }
}

fn label_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The parameters the submitted fields make, or each bad field's message by
/// field name.
pub(crate) fn assemble(
    form: &TypedForm,
    submitted: &BTreeMap<String, String>,
    skip: Option<&str>,
) -> Result<Value, BTreeMap<String, String>> {
    let mut object = Map::new();
    let mut errors = BTreeMap::new();
    for field in form.fields.iter().filter(|f| Some(f.name.as_str()) != skip) {
        let raw = submitted.get(&field.name).map(String::as_str);
        match value_of(field, raw) {
            Ok(Some(value)) => {
                object.insert(field.name.clone(), value);
            }
            Ok(None) => {}
            Err(message) => {
                errors.insert(field.name.clone(), message);
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if form.scalar {
        return Ok(object.remove(SCALAR).unwrap_or(Value::Null));
    }
    Ok(Value::Object(object))
}

/// One field's value: `None` to leave it out (the type's default applies).
fn value_of(field: &Field, raw: Option<&str>) -> Result<Option<Value>, String> {
    if field.input == Input::Bool && !field.nullable {
        // an unticked checkbox is not sent at all
        return Ok(Some(Value::Bool(raw.is_some_and(|r| r != "false"))));
    }
    let raw = raw.unwrap_or("");
    let blank = raw.trim().is_empty();
    if blank {
        return if !field.required {
            Ok(None)
        } else if field.nullable {
            Ok(Some(Value::Null))
        } else if field.input == Input::Text {
            // a required text may be empty
            Ok(Some(Value::String(raw.to_string())))
        } else {
            Err("required: enter a value".to_string())
        };
    }
    match &field.input {
        Input::Text => Ok(Some(Value::String(raw.to_string()))),
        Input::Bool => match raw.trim() {
            "true" | "on" => Ok(Some(Value::Bool(true))),
            "false" => Ok(Some(Value::Bool(false))),
            other => Err(format!("`{other}` is neither true nor false")),
        },
        Input::Integer { min, max } => {
            let text = raw.trim();
            let number: serde_json::Number = match text.parse::<i64>() {
                Ok(n) => n.into(),
                Err(_) => match text.parse::<u64>() {
                    Ok(n) => n.into(),
                    Err(_) => return Err(format!("`{text}` is not a whole number")),
                },
            };
            check_bounds(number.as_f64().unwrap_or(f64::NAN), *min, *max)?;
            Ok(Some(Value::Number(number)))
        }
        Input::Number { min, max } => {
            let text = raw.trim();
            let number: f64 = text
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| format!("`{text}` is not a number"))?;
            check_bounds(number, *min, *max)?;
            serde_json::Number::from_f64(number)
                .map(|n| Some(Value::Number(n)))
                .ok_or_else(|| format!("`{text}` is not a number"))
        }
        Input::Choice(choices) => {
            let chosen: Value =
                serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
            if choices.iter().any(|(v, _)| *v == chosen) {
                Ok(Some(chosen))
            } else {
                let allowed: Vec<String> = choices.iter().map(|(_, l)| l.clone()).collect();
                Err(format!(
                    "`{}` is not one of the choices ({})",
                    label_of(&chosen),
                    allowed.join(", ")
                ))
            }
        }
        Input::Json => serde_json::from_str(raw)
            .map(Some)
            .map_err(|e| format!("not valid JSON: {e}")),
    }
}

fn check_bounds(n: f64, min: Option<f64>, max: Option<f64>) -> Result<(), String> {
    if let Some(min) = min.filter(|m| n < *m) {
        return Err(format!("must be at least {min}"));
    }
    if let Some(max) = max.filter(|m| n > *m) {
        return Err(format!("must be at most {max}"));
    }
    Ok(())
}

/// The top-level field a parameters error names (`field `batch`: invalid
/// type …`, as [`iterjob::Registry::new_job`] words it), if the form has it.
pub(crate) fn field_of<'f>(form: &'f TypedForm, message: &str) -> Option<&'f str> {
    if form.scalar {
        return form.fields.first().map(|f| f.name.as_str());
    }
    let rest = message.split_once("field `")?.1;
    let path = rest.split_once('`')?.0;
    let top = path
        .split(['.', '['])
        .next()
        .unwrap_or(path)
        .trim_matches('"');
    form.fields
        .iter()
        .find(|f| f.name == top)
        .map(|f| f.name.as_str())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What schemars 1 derives for a struct with a doc-commented enum, an
    /// `Option`, a default and a nested list.
    fn schema() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Params",
            "type": "object",
            "properties": {
                "up_to": {"description": "Count to this.", "type": "integer", "format": "int64"},
                "batch": {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 4294967295u64, "default": 100},
                "dry_run": {"type": "boolean", "default": false},
                "note": {"type": ["string", "null"]},
                "mode": {"$ref": "#/$defs/Mode", "description": "How fast."},
                "level": {"anyOf": [{"$ref": "#/$defs/Level"}, {"type": "null"}]},
                "ids": {"type": "array", "items": {"type": "integer"}}
            },
            "required": ["up_to", "mode"],
            "$defs": {
                "Mode": {"oneOf": [
                    {"type": "string", "const": "fast", "description": "No sleep."},
                    {"type": "string", "const": "slow"}
                ]},
                "Level": {"type": "string", "enum": ["low", "high"]}
            }
        })
    }

    fn submit(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_derived_schema_becomes_typed_fields() {
        let form = typed_form(&schema()).expect("a form");
        let by_name = |n: &str| form.fields.iter().find(|f| f.name == n).unwrap();
        assert_eq!(by_name("up_to").help.as_deref(), Some("Count to this."));
        assert!(by_name("up_to").required);
        assert_eq!(by_name("batch").default, Some(json!(100)));
        assert!(matches!(
            by_name("batch").input,
            Input::Integer { min: Some(m), .. } if m == 0.0
        ));
        assert_eq!(by_name("dry_run").input, Input::Bool);
        assert!(by_name("note").nullable);
        assert_eq!(by_name("note").input, Input::Text);
        assert_eq!(
            by_name("mode").input,
            Input::Choice(vec![
                (json!("fast"), "fast — No sleep.".into()),
                (json!("slow"), "slow".into())
            ])
        );
        assert_eq!(by_name("mode").help.as_deref(), Some("How fast."));
        assert!(by_name("level").nullable);
        assert!(matches!(by_name("level").input, Input::Choice(ref c) if c.len() == 2));
        assert_eq!(by_name("ids").input, Input::Json);
    }

    #[test]
    fn fields_assemble_into_parameters_or_name_what_is_wrong() {
        let form = typed_form(&schema()).unwrap();
        let params = assemble(
            &form,
            &submit(&[
                ("up_to", " 40 "),
                ("batch", ""),
                ("mode", "\"slow\""),
                ("level", "\"high\""),
                ("ids", "[1, 2]"),
                ("note", ""),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(
            params,
            json!({"up_to": 40, "dry_run": false, "mode": "slow", "level": "high", "ids": [1, 2]})
        );

        let errors = assemble(
            &form,
            &submit(&[
                ("up_to", "forty"),
                ("batch", "-1"),
                ("mode", "\"warp\""),
                ("ids", "[1,"),
            ]),
            None,
        )
        .unwrap_err();
        assert_eq!(errors["up_to"], "`forty` is not a whole number");
        assert_eq!(errors["batch"], "must be at least 0");
        assert!(
            errors["mode"].contains("`warp` is not one of the choices (fast — No sleep., slow)")
        );
        assert!(errors["ids"].starts_with("not valid JSON"));
        let missing = assemble(&form, &submit(&[]), None).unwrap_err();
        assert_eq!(missing["up_to"], "required: enter a value");
        assert!(missing.contains_key("mode"));
        // a field the page sets itself (the CSV upload's path) is left to it
        let skipped = assemble(&form, &submit(&[("mode", "\"fast\"")]), Some("up_to")).unwrap();
        assert_eq!(skipped["mode"], "fast");
    }

    #[test]
    fn a_scalar_is_one_field_and_a_list_gets_the_json_box() {
        let form =
            typed_form(&json!({"type": "integer", "format": "uint32", "minimum": 0})).unwrap();
        assert!(form.scalar);
        assert_eq!(
            assemble(&form, &submit(&[("value", "7")]), None).unwrap(),
            json!(7)
        );
        assert!(typed_form(&json!({"type": "array", "items": {"type": "integer"}})).is_none());
        // a reference at the top is followed
        let referenced = json!({"$ref": "#/$defs/P", "$defs": {"P": {"type": "object", "properties": {"a": {"type": "string"}}}}});
        assert_eq!(typed_form(&referenced).unwrap().fields[0].name, "a");
        // a cycle of references ends
        let cycle = json!({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}});
        assert!(typed_form(&cycle).is_none());
    }

    #[test]
    fn a_deserializer_error_is_put_next_to_its_field() {
        let form = typed_form(&schema()).unwrap();
        let message = "parameters for job kind `k` are invalid: field `ids[1]`: invalid type";
        assert_eq!(field_of(&form, message), Some("ids"));
        assert_eq!(field_of(&form, "field `nope`: x"), None);
        assert_eq!(field_of(&form, "missing field"), None);
    }
}

#[cfg(test)]
mod derived {
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;

    /// How fast.
    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        /// No sleep.
        Fast,
        Slow,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "snake_case")]
    enum Level {
        Low,
        High,
    }

    fn default_batch() -> u32 {
        100
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Params {
        /// Count to this.
        up_to: i64,
        #[serde(default = "default_batch")]
        batch: u32,
        #[serde(default)]
        dry_run: bool,
        note: Option<String>,
        mode: Mode,
        level: Option<Level>,
        #[serde(default)]
        ids: Vec<i64>,
        ratio: Option<f64>,
    }

    #[test]
    fn what_schemars_derives_is_read_into_fields() {
        let schema = schemars::schema_for!(Params).to_value();
        let form = typed_form(&schema).expect("a form");
        let by_name = |n: &str| {
            form.fields
                .iter()
                .find(|f| f.name == n)
                .unwrap_or_else(|| panic!("field {n} in {schema:#}"))
        };
        assert!(by_name("up_to").required, "{schema:#}");
        assert_eq!(by_name("up_to").help.as_deref(), Some("Count to this."));
        assert!(matches!(by_name("up_to").input, Input::Integer { .. }));
        assert_eq!(by_name("batch").default, Some(json!(100)));
        assert!(!by_name("batch").required);
        assert!(matches!(
            by_name("batch").input,
            Input::Integer { min: Some(m), .. } if m == 0.0
        ));
        assert_eq!(by_name("dry_run").input, Input::Bool);
        assert!(by_name("note").nullable && !by_name("note").required);
        assert_eq!(by_name("note").input, Input::Text);
        let Input::Choice(modes) = &by_name("mode").input else {
            panic!("mode is a choice: {schema:#}")
        };
        let fast = modes.iter().find(|(v, _)| *v == json!("fast"));
        assert!(
            fast.is_some_and(|(_, label)| label.contains("No sleep.")),
            "{modes:?}"
        );
        assert!(modes.iter().any(|(v, _)| *v == json!("slow")), "{modes:?}");
        assert!(by_name("mode").required);
        assert!(by_name("level").nullable, "{schema:#}");
        assert!(matches!(&by_name("level").input, Input::Choice(c) if c.len() == 2));
        assert_eq!(by_name("ids").input, Input::Json);
        assert!(matches!(by_name("ratio").input, Input::Number { .. }));

        let params = assemble(
            &form,
            &[
                ("up_to", "5"),
                ("mode", "\"slow\""),
                ("level", ""),
                ("ratio", "0.5"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            None,
        )
        .unwrap();
        let decoded: Params = serde_json::from_value(params).unwrap();
        assert_eq!((decoded.up_to, decoded.batch), (5, 100));
        assert!(matches!(decoded.mode, Mode::Slow));
        assert!(decoded.level.is_none());
        assert_eq!(decoded.ratio, Some(0.5));
    }
}
