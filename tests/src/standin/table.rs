//! `meta.k8s.io/v1 Table` output for `kubectl get`, with the simple JSONPath forms CRD
//! printer columns use: `.a.b`, `.a[0].b`, `.a[?(@.type=="X")].b`.

use serde_json::{Value, json};

use super::registry::{PrinterColumn, ResourceType};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
    Filter(String, String),
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let s = path.trim().trim_start_matches('{').trim_end_matches('}');
    let s = s.strip_prefix('$').unwrap_or(s);
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
                i = j;
            }
            '[' => {
                let mut j = i + 1;
                let mut depth = 1;
                while j < chars.len() && depth > 0 {
                    match chars[j] {
                        '[' => depth += 1,
                        ']' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                let inner: String = chars[i + 1..j.saturating_sub(1)].iter().collect();
                let inner = inner.trim();
                if let Some(f) = inner.strip_prefix("?(").and_then(|r| r.strip_suffix(')')) {
                    let (lhs, rhs) = f.split_once("==")?;
                    let field = lhs.trim().strip_prefix("@.")?.to_string();
                    let value = rhs.trim().trim_matches('"').trim_matches('\'').to_string();
                    steps.push(Step::Filter(field, value));
                } else if let Ok(n) = inner.parse::<usize>() {
                    steps.push(Step::Index(n));
                } else {
                    let key = inner.trim_matches('\'').trim_matches('"').to_string();
                    steps.push(Step::Field(key));
                }
                i = j;
            }
            _ => return None,
        }
    }
    Some(steps)
}

/// Evaluate a simple JSONPath; None when a step finds nothing.
pub fn eval(obj: &Value, path: &str) -> Option<Value> {
    let mut cur = obj.clone();
    for step in parse(path)? {
        cur = match step {
            Step::Field(f) => cur.get(&f)?.clone(),
            Step::Index(n) => cur.get(n)?.clone(),
            Step::Filter(field, want) => cur
                .as_array()?
                .iter()
                .find(|item| {
                    let mut v = Some(*item);
                    for seg in field.split('.') {
                        v = v.and_then(|x| x.get(seg));
                    }
                    match v {
                        Some(Value::String(s)) => *s == want,
                        Some(other) => {
                            serde_json::from_str::<Value>(&want).is_ok_and(|w| w == *other)
                        }
                        None => false,
                    }
                })?
                .clone(),
        };
    }
    Some(cur)
}

/// A duration as kubectl shows ages: `45s`, `3m12s`, `5h3m`, `2d4h`, `400d`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 600 {
        format!("{}m{}s", s / 60, s % 60)
    } else if s < 3 * 3600 {
        format!("{}m", s / 60)
    } else if s < 8 * 3600 {
        let m = (s / 60) % 60;
        if m == 0 {
            format!("{}h", s / 3600)
        } else {
            format!("{}h{m}m", s / 3600)
        }
    } else if s < 48 * 3600 {
        format!("{}h", s / 3600)
    } else if s < 8 * 86400 {
        let h = (s / 3600) % 24;
        if h == 0 {
            format!("{}d", s / 86400)
        } else {
            format!("{}d{h}h", s / 86400)
        }
    } else {
        format!("{}d", s / 86400)
    }
}

fn age(ts: Option<&Value>) -> Value {
    let Some(t) = ts.and_then(Value::as_str) else {
        return json!("<unknown>");
    };
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(then) => json!(human_duration(
            (chrono::Utc::now() - then.with_timezone(&chrono::Utc)).num_seconds()
        )),
        Err(_) => json!("<invalid>"),
    }
}

fn columns(rt: &ResourceType) -> Vec<PrinterColumn> {
    let name = PrinterColumn {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        json_path: ".metadata.name".into(),
        description: "Name must be unique within a namespace.".into(),
        priority: 0,
    };
    let age = PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        json_path: ".metadata.creationTimestamp".into(),
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
        priority: 0,
    };
    if rt.printer_columns.is_empty() {
        vec![name, age]
    } else {
        let mut cols = vec![name];
        cols.extend(rt.printer_columns.iter().cloned());
        cols
    }
}

fn cell(col: &PrinterColumn, obj: &Value) -> Value {
    let v = eval(obj, &col.json_path);
    if col.type_ == "date" {
        return match v {
            Some(ts) => age(Some(&ts)),
            None => Value::Null,
        };
    }
    match v {
        None => Value::Null,
        Some(Value::String(s)) => json!(s),
        Some(Value::Number(n)) => Value::Number(n),
        Some(Value::Bool(b)) => json!(b),
        Some(Value::Null) => Value::Null,
        Some(other) => json!(other.to_string()),
    }
}

/// `includeObject` of a table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object in rows.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The full object.
    Object,
}

/// A Table of objects.
pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    resource_version: &str,
    include: IncludeObject,
) -> Value {
    let cols = columns(rt);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": if c.type_ == "date" { "string" } else { c.type_.as_str() },
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| cell(c, o)).collect();
            let mut row = json!({"cells": cells});
            let object = match include {
                IncludeObject::None => None,
                IncludeObject::Metadata => Some(json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
                })),
                IncludeObject::Object => Some(o.clone()),
            };
            if let (Some(obj), Some(m)) = (object, row.as_object_mut()) {
                m.insert("object".into(), obj);
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_forms() {
        let o = json!({
            "spec": {"repo": "r", "items": [{"b": 1}, {"b": 2}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "TemplateValid", "status": "True"}]}
        });
        assert_eq!(eval(&o, ".spec.repo"), Some(json!("r")));
        assert_eq!(eval(&o, ".spec.items[1].b"), Some(json!(2)));
        assert_eq!(
            eval(
                &o,
                ".status.conditions[?(@.type==\"TemplateValid\")].status"
            ),
            Some(json!("True"))
        );
        assert_eq!(eval(&o, "{.spec.repo}"), Some(json!("r")));
        assert_eq!(eval(&o, ".status.missing"), None);
        assert_eq!(
            eval(&o, ".status.conditions[?(@.type==\"Nope\")].status"),
            None
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(130), "2m10s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(3 * 86400), "3d");
    }

    #[test]
    fn default_columns_are_name_and_age() {
        let r = crate::standin::registry::Registry::with_builtins();
        let rt = r.lookup("", "v1", "configmaps").expect("kind").clone();
        let o = json!({"metadata": {"name": "c", "creationTimestamp": "2020-01-01T00:00:00Z"}});
        let t = table(&rt, &[o], "5", IncludeObject::Metadata);
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["columnDefinitions"][1]["name"], "Age");
        assert_eq!(t["rows"][0]["cells"][0], "c");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
