//! `REGISTRY_<PATH>` overrides: `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/x` sets
//! `storage.filesystem.rootdirectory`. Keys are lowercase with no `_` (distribution's rule), so `_`
//! always separates levels.

use serde_yaml::{Mapping, Value};

use super::{Config, ConfigError};

/// One override taken from the environment.
#[derive(Debug, Clone)]
pub struct EnvOverride {
    pub var: String,
    pub path: Vec<String>,
    pub value: String,
}

/// Storage driver names that `REGISTRY_STORAGE=<name>` may select.
const DRIVERS: &[&str] = &[
    "filesystem",
    "emptydir",
    "pvc",
    "inmemory",
    "s3",
    "gcs",
    "azure",
];

impl EnvOverride {
    /// The `REGISTRY_*` variables of `env`, in a stable order (parents before children).
    pub fn collect(env: &[(String, String)]) -> Vec<EnvOverride> {
        let mut out: Vec<EnvOverride> = env
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("REGISTRY_")?;
                let path: Vec<String> = rest.split('_').map(str::to_ascii_lowercase).collect();
                if path.iter().any(String::is_empty) {
                    return None;
                }
                Some(EnvOverride {
                    var: k.clone(),
                    path,
                    value: v.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.path.len().cmp(&b.path.len()).then(a.var.cmp(&b.var)));
        out
    }

    fn dotted(&self) -> String {
        self.path.join(".")
    }
}

/// Folds every mapping key to lowercase, recursively.
pub fn lowercase_keys(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            let old = std::mem::take(m);
            for (k, mut val) in old {
                lowercase_keys(&mut val);
                let k = match k {
                    Value::String(s) => Value::String(s.to_ascii_lowercase()),
                    other => other,
                };
                m.insert(k, val);
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(lowercase_keys),
        Value::Tagged(t) => lowercase_keys(&mut t.value),
        _ => {}
    }
}

fn set_path(root: &mut Value, o: &EnvOverride) {
    if o.path == ["storage"] && DRIVERS.contains(&o.value.to_ascii_lowercase().as_str()) {
        // REGISTRY_STORAGE=<driver> picks the driver, dropping the file's choice.
        let storage = ensure_map(root)
            .entry(Value::String("storage".into()))
            .or_insert(Value::Null);
        let m = ensure_map(storage);
        for d in DRIVERS {
            m.remove(*d);
        }
        m.insert(
            Value::String(o.value.to_ascii_lowercase()),
            Value::Mapping(Mapping::new()),
        );
        return;
    }
    let mut cur = root;
    for (i, key) in o.path.iter().enumerate() {
        // `LIST_<i>_FIELD`: element i of a list the file has (the next index appends one).
        let index = key
            .parse::<usize>()
            .ok()
            .filter(|idx| matches!(&*cur, Value::Sequence(s) if *idx <= s.len()));
        if let Some(idx) = index {
            if let Value::Sequence(seq) = cur {
                if idx == seq.len() {
                    seq.push(Value::Null);
                }
                if i + 1 == o.path.len() {
                    seq[idx] = Value::String(o.value.clone());
                    return;
                }
                cur = &mut seq[idx];
                continue;
            }
            return;
        }
        let m = ensure_map(cur);
        let k = Value::String(key.clone());
        if i + 1 == o.path.len() {
            m.insert(k, Value::String(o.value.clone()));
            return;
        }
        cur = m.entry(k).or_insert(Value::Null);
    }
}

fn ensure_map(v: &mut Value) -> &mut Mapping {
    // Not `is_mapping()`: that looks through a tag (`!t {}`), which the match below does not
    // (a panic the config fuzz target found). A tagged mapping keeps its keys, untagged.
    if !matches!(v, Value::Mapping(_)) {
        let mut inner = std::mem::take(v);
        while let Value::Tagged(t) = inner {
            inner = t.value;
        }
        *v = match inner {
            m @ Value::Mapping(_) => m,
            _ => Value::Mapping(Mapping::new()),
        };
    }
    match v {
        Value::Mapping(m) => m,
        _ => unreachable!("just made a mapping"),
    }
}

/// A deserializer path in the overrides' spelling: `a.b[0].c` is `a.b.0.c`.
fn dotted_key(path: &str) -> String {
    path.replace('[', ".").replace(']', "")
}

fn unknown_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Deserializes `value` with the overrides applied. Overrides naming unknown keys are dropped with a
/// warning; every other error names its key.
pub fn deserialize_with_overrides(
    value: Value,
    mut overrides: Vec<EnvOverride>,
) -> Result<(Config, Vec<String>), ConfigError> {
    let mut warnings = Vec::new();
    loop {
        let mut v = value.clone();
        for o in &overrides {
            set_path(&mut v, o);
        }
        let err = match serde_path_to_error::deserialize::<_, Config>(v) {
            Ok(c) => return Ok((c, warnings)),
            Err(e) => e,
        };
        let path = err.path().to_string();
        let msg = err.inner().to_string();
        let key = match unknown_field(&msg) {
            Some(field) if path == "." || path.is_empty() => field.to_owned(),
            Some(field) => {
                // serde_path_to_error reports the unknown key itself as the last segment.
                if path.ends_with(field) {
                    path.clone()
                } else {
                    format!("{path}.{field}")
                }
            }
            None => path.clone(),
        };
        let dotted = dotted_key(&key);
        if unknown_field(&msg).is_some() {
            let prefix = format!("{dotted}.");
            let (dropped, kept): (Vec<_>, Vec<_>) = overrides
                .into_iter()
                .partition(|o| o.dotted() == dotted || o.dotted().starts_with(&prefix));
            overrides = kept;
            if !dropped.is_empty() {
                for o in dropped {
                    warnings.push(format!(
                        "ignoring environment variable {}: no config key {}",
                        o.var,
                        o.dotted()
                    ));
                }
                continue;
            }
        }
        let from_env = overrides
            .iter()
            .find(|o| o.dotted() == dotted)
            .map(|o| format!(" (from {})", o.var))
            .unwrap_or_default();
        return Err(ConfigError::Key {
            key,
            message: format!("{msg}{from_env}"),
        });
    }
}
