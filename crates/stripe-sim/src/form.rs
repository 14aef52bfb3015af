//! Stripe's form encoding (`a[b][0][c]=v`) parsed into a JSON tree, so the
//! handlers can read nested parameters the way serde_qs writes them.

use serde_json::{Map, Value};

/// Parses `application/x-www-form-urlencoded` (or a query string) into nested
/// objects; numeric and empty (`[]`) segments become array positions.
pub(crate) fn parse(input: &str) -> Value {
    let mut root = Value::Object(Map::new());
    for pair in input.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k);
        let value = decode(v);
        let mut segments = Vec::new();
        let (head, mut rest) = match key.find('[') {
            Some(i) => (&key[..i], &key[i..]),
            None => (key.as_str(), ""),
        };
        segments.push(head.to_owned());
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            segments.push(stripped[..end].to_owned());
            rest = &stripped[end + 1..];
        }
        insert(&mut root, &segments, value);
    }
    normalize(root)
}

fn insert(node: &mut Value, segments: &[String], value: String) {
    let Value::Object(map) = node else { return };
    let (first, rest) = segments.split_first().expect("at least one segment");
    // `[]` appends: give it the next free index so order is kept.
    let key = if first.is_empty() {
        map.len().to_string()
    } else {
        first.clone()
    };
    if rest.is_empty() {
        map.insert(key, Value::String(value));
    } else {
        let child = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        insert(child, rest, value);
    }
}

/// Objects whose keys are all indexes become arrays, in index order.
fn normalize(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let all_indexes = !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok());
            if all_indexes {
                let mut items: Vec<(usize, Value)> = map
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap_or(0), normalize(v)))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(map.into_iter().map(|(k, v)| (k, normalize(v))).collect())
            }
        }
        other => other,
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Read access to a parsed form.
pub(crate) struct Form(pub Value);

impl Form {
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut node = &self.0;
        for seg in path.split('.') {
            node = match node {
                Value::Object(m) => m.get(seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    pub fn str(&self, path: &str) -> Option<String> {
        self.get(path).and_then(|v| v.as_str()).map(str::to_owned)
    }

    pub fn bool(&self, path: &str) -> Option<bool> {
        self.str(path).map(|s| s == "true")
    }

    pub fn int(&self, path: &str) -> Option<i64> {
        self.str(path).and_then(|s| s.parse().ok())
    }

    /// A string list sent as `k[0]=a&k[1]=b`, `k[]=a` or a single `k=a`.
    pub fn list(&self, path: &str) -> Vec<String> {
        match self.get(path) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    /// `metadata[k]=v` pairs; `None` when the parameter was not sent, and an
    /// empty string value unsets a key as in Stripe.
    pub fn metadata(&self, path: &str) -> Option<Map<String, Value>> {
        match self.get(path)? {
            Value::Object(m) => Some(m.clone()),
            Value::String(s) if s.is_empty() => Some(Map::new()),
            _ => None,
        }
    }
}
