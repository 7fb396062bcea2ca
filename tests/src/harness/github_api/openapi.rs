//! GitHub's published REST description (`@octokit/openapi`'s `api.github.com.json`, installed
//! by `make deps`), loaded once per test process, and the checks of requests and responses
//! against it.
//!
//! The description is OpenAPI 3.0.3: schemas use `nullable`, not 3.1 type arrays. Each schema
//! an operation uses is turned into a JSON Schema 2020-12 document for the `jsonschema` crate:
//! `$ref`s to `#/components/schemas/X` become `#/$defs/X` (the referenced components are copied
//! in, transitively), `nullable: true` adds `null` to `type` and `enum`, and an object schema
//! that lists `properties` without saying `additionalProperties` is closed. That last rule is
//! stricter than GitHub, which ignores unknown fields: an unknown field is almost always a typo
//! (`enviroment` would silently deploy to `production`), and a stand-in response must not invent
//! fields the description does not have. No schema these operations use nests objects under
//! `allOf`, where closing each branch would be wrong.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use jsonschema::Validator;
use serde_json::{Map, Value, json};

/// The description, from the repository's `node_modules`.
pub fn description_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../node_modules/@octokit/openapi/generated/api.github.com.json")
}

/// The loaded description and the validators compiled from it so far.
pub struct Description {
    doc: Value,
    /// How long reading and parsing the file took.
    pub load_time: Duration,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

/// One operation of the description, matched against a request path.
pub struct Operation<'d> {
    /// `operationId`, e.g. `repos/create-deployment`.
    pub id: &'d str,
    /// GitHub's documentation page for it (the `documentation_url` of its errors).
    pub docs: &'d str,
    /// Path parameters by name, as they appeared in the path.
    pub path_params: HashMap<&'d str, String>,
    spec: &'d Value,
    key: String,
}

/// The description, loaded on first use (panics naming `make deps` when it is missing).
pub fn description() -> &'static Description {
    static DESCRIPTION: OnceLock<Description> = OnceLock::new();
    DESCRIPTION.get_or_init(|| {
        let path = description_path();
        let start = Instant::now();
        let text = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("read {} ({e}); run `make deps`", path.display()));
        let doc = serde_json::from_slice(&text).expect("the GitHub description is JSON");
        Description {
            doc,
            load_time: start.elapsed(),
            validators: Mutex::default(),
        }
    })
}

impl Description {
    /// `info.version`: the `@octokit/openapi` release the file came from.
    pub fn version(&self) -> &str {
        self.doc["info"]["version"].as_str().unwrap_or_default()
    }

    /// The operation for `method` (any case) and a request path; a template with more literal
    /// segments wins (`/issues/comments/{comment_id}` over `/issues/{issue_number}/comments`).
    pub fn find(&self, method: &str, path: &str) -> Option<Operation<'_>> {
        let method = method.to_ascii_lowercase();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut best: Option<(usize, &str, &Value, HashMap<&str, String>)> = None;
        for (template, item) in self.doc["paths"].as_object()? {
            let Some(spec) = item.get(&method) else {
                continue;
            };
            let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let (mut literal, mut params) = (0, HashMap::new());
            let matched = parts.iter().zip(&segments).all(|(part, seg)| {
                match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if !seg.is_empty() => params.insert(name, seg.to_string()).is_none(),
                    Some(_) => false,
                    None => {
                        literal += 1;
                        part == seg
                    }
                }
            });
            if matched && best.as_ref().is_none_or(|b| literal > b.0) {
                best = Some((literal, template, spec, params));
            }
        }
        best.map(|(_, template, spec, path_params)| Operation {
            id: spec["operationId"].as_str().unwrap_or_default(),
            docs: spec["externalDocs"]["url"]
                .as_str()
                .unwrap_or("https://docs.github.com/rest"),
            path_params,
            spec,
            key: format!("{method} {template}"),
        })
    }

    /// What is wrong with a request to `op`: path and query parameters (names, required,
    /// types, enums) and the JSON body against `requestBody`. Empty when it is valid.
    pub fn check_request(
        &self,
        op: &Operation<'_>,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let params: Vec<&Value> = op.spec["parameters"]
            .as_array()
            .map(|ps| ps.iter().map(|p| self.resolve(p)).collect())
            .unwrap_or_default();
        for p in &params {
            let (Some(name), Some(place)) = (p["name"].as_str(), p["in"].as_str()) else {
                continue;
            };
            let value = match place {
                "path" => op.path_params.get(name).cloned(),
                "query" => query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone()),
                _ => continue,
            };
            let what = format!("{place} parameter `{name}`");
            match value {
                None if p["required"] == true => problems.push(format!("{what} is required")),
                None => {}
                Some(raw) => {
                    let key = format!("{}#{name}", op.key);
                    let value = coerce(&raw, &p["schema"]);
                    self.validate(&key, &p["schema"], &value, &what, &mut problems);
                }
            }
        }
        for (name, _) in query {
            if !params
                .iter()
                .any(|p| p["in"] == "query" && p["name"] == *name)
            {
                problems.push(format!("unknown query parameter `{name}`"));
            }
        }
        let request_body = op.spec.get("requestBody").map(|b| self.resolve(b));
        match (request_body, body) {
            (None, Some(_)) => problems.push("the operation takes no request body".into()),
            (Some(rb), None) if rb["required"] == true => {
                problems.push("a JSON request body is required".into());
            }
            (Some(rb), Some(body)) => {
                let schema = &rb["content"]["application/json"]["schema"];
                let key = format!("{} request", op.key);
                self.validate(&key, schema, body, "body", &mut problems);
            }
            _ => {}
        }
        problems
    }

    /// What is wrong with a response of `status` and `body` to `op`. A status the operation
    /// does not describe is fine for an error (GitHub answers 401/403/5xx on any route) if the
    /// body is a `basic-error`; for a success it is a problem.
    pub fn check_response(&self, op: &Operation<'_>, status: u16, body: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        let described = op.spec["responses"].get(status.to_string());
        let (key, schema) = match described.map(|r| self.resolve(r)) {
            Some(r) => match r["content"]["application/json"].get("schema") {
                Some(schema) => (format!("{} {status}", op.key), schema),
                None if body.is_null() => return problems,
                None => return vec![format!("a {status} response to {} has no body", op.id)],
            },
            None if status >= 400 => (
                "basic-error".into(),
                &self.doc["components"]["schemas"]["basic-error"],
            ),
            None => return vec![format!("status {status} is not described for {}", op.id)],
        };
        self.validate(&key, schema, body, "response body", &mut problems);
        problems
    }

    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => self.doc.pointer(pointer).unwrap_or(&Value::Null),
            None => v,
        }
    }

    fn validate(&self, key: &str, schema: &Value, v: &Value, what: &str, out: &mut Vec<String>) {
        let cached = self.lock().get(key).cloned();
        let validator = match cached {
            Some(validator) => validator,
            None => match jsonschema::draft202012::new(&self.json_schema(schema)) {
                Ok(validator) => {
                    let validator = Arc::new(validator);
                    self.lock().insert(key.to_string(), validator.clone());
                    validator
                }
                Err(e) => return out.push(format!("{what}: the schema does not compile: {e}")),
            },
        };
        for e in validator.iter_errors(v) {
            out.push(format!("{what} at `{}`: {e}", e.instance_path()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Validator>>> {
        self.validators
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `schema` as a self-contained JSON Schema 2020-12 document (see the module docs).
    fn json_schema(&self, schema: &Value) -> Value {
        let mut refs = Vec::new();
        let root = convert(schema, &mut refs);
        let mut defs = Map::new();
        while let Some(name) = refs.pop() {
            if !defs.contains_key(&name) {
                let component = &self.doc["components"]["schemas"][&name];
                defs.insert(name, convert(component, &mut refs));
            }
        }
        json!({ "$schema": "https://json-schema.org/draft/2020-12/schema",
                "allOf": [root], "$defs": defs })
    }
}

fn convert(schema: &Value, refs: &mut Vec<String>) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        let v = match k.as_str() {
            "$ref" => {
                let r = v.as_str().unwrap_or_default();
                let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
                refs.push(name.to_string());
                json!(format!("#/$defs/{name}"))
            }
            "items" | "additionalProperties" | "not" => convert(v, refs),
            "oneOf" | "anyOf" | "allOf" => {
                let all = v.as_array().map(Vec::as_slice).unwrap_or_default();
                all.iter().map(|s| convert(s, refs)).collect()
            }
            "properties" => {
                let props = v.as_object().into_iter().flatten();
                Value::Object(props.map(|(n, s)| (n.clone(), convert(s, refs))).collect())
            }
            "nullable" | "example" | "examples" | "description" | "discriminator" => continue,
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    if out.contains_key("properties") && !out.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    if map.get("nullable") != Some(&Value::Bool(true)) {
        return Value::Object(out);
    }
    if let Some(Value::Array(values)) = out.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
    match out.get_mut("type") {
        Some(t @ Value::String(_)) => *t = json!([t.take(), "null"]),
        Some(_) => {}
        None => return json!({ "anyOf": [{ "type": "null" }, out] }),
    }
    Value::Object(out)
}

/// A path or query string as the JSON value its schema's `type` asks for; left a string when it
/// does not parse, so the type check reports it.
fn coerce(raw: &str, schema: &Value) -> Value {
    let parsed = match schema["type"].as_str() {
        Some("integer") => raw.parse::<i64>().ok().map(Value::from),
        Some("number") => raw.parse::<f64>().ok().map(Value::from),
        Some("boolean") => raw.parse::<bool>().ok().map(Value::from),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::String(raw.to_string()))
}
