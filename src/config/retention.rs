//! `storage.maintenance.retention`: which tags (and old revisions) garbage collection may remove.
//! Typed and checked here (patterns compiled, numbers and durations checked, unknown keys refused,
//! each error naming its key); applied by `lifecycle::retention`.
//!
//! Environment forms, as `proxy.upstreams` and `notifications.endpoints` take them:
//! `REGISTRY_STORAGE_MAINTENANCE_RETENTION_POLICIES_<i>_<FIELD>` sets a field of policy `i` (counting
//! from 0; on a file's list it overrides that policy's field, the next free index adds one; without
//! a file list the indexes must count from 0 without gaps), `<FIELD>` being the key lowercased
//! (`REPOSITORIES`, `KEEPTAGS`, `KEEPTAGREVISIONS`, `KEEPYOUNGERTHAN`, `MOSTRECENTLYPUSHEDCOUNT`,
//! `DELETEUNTAGGED`); the pattern lists take a comma-separated string. The whole list may also be
//! given as YAML or JSON in `REGISTRY_STORAGE_MAINTENANCE_RETENTION_POLICIES` (the way to write a
//! pattern holding a comma). Bad values name the key and the variable.

use std::time::Duration;

use serde::Deserialize;

use super::{flex, key_err, ConfigError};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    #[serde(deserialize_with = "policy_list")]
    pub policies: Vec<RetentionPolicyConfig>,
}

/// `policies`: a list; from the environment also a YAML/JSON string holding the list, or the
/// indexed form `POLICIES_<i>_<FIELD>` on a file without policies (a mapping of indexes). A visitor
/// rather than a detour through a `Value`, so an element's bad field keeps its path
/// (`policies[0].keepyoungerthan` from the file, `policies.0.keepyoungerthan` from the environment).
fn policy_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<RetentionPolicyConfig>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<RetentionPolicyConfig>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of retention policies")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(p) = seq.next_element()? {
                out.push(p);
            }
            Ok(out)
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            let mut v: serde_yaml::Value = serde_yaml::from_str(s).map_err(E::custom)?;
            super::env::lowercase_keys(&mut v);
            match v {
                serde_yaml::Value::Sequence(_) | serde_yaml::Value::Null => {
                    policy_list(v).map_err(E::custom)
                }
                _ => Err(E::custom("expected a list of retention policies")),
            }
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            use serde::de::Error as _;
            let mut out: Vec<(usize, RetentionPolicyConfig)> = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                let i = k
                    .parse::<usize>()
                    .map_err(|_| A::Error::custom("expected a list of retention policies"))?;
                out.push((i, map.next_value()?));
            }
            out.sort_by_key(|(i, _)| *i);
            if out.iter().enumerate().any(|(n, (i, _))| n != *i) {
                return Err(A::Error::custom(
                    "the indexes of REGISTRY_STORAGE_MAINTENANCE_RETENTION_POLICIES_<i>_* must count from 0 without gaps",
                ));
            }
            Ok(out.into_iter().map(|(_, p)| p).collect())
        }
    }
    d.deserialize_any(V)
}

/// One policy (keys are case-insensitive: `keepTags` = `keeptags`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionPolicyConfig {
    /// Globs over repository names (`*` within a path segment, `**` across, `?` one character).
    #[serde(deserialize_with = "super::ops::string_list")]
    pub repositories: Vec<String>,
    /// `keepTags`: tags kept by name: globs, or regular expressions written `regex:<re>`
    /// (matched against the whole tag).
    #[serde(deserialize_with = "super::ops::string_list")]
    pub keeptags: Vec<String>,
    /// `keepTagRevisions`: per kept tag, this many earlier digests (from the tag index) are kept.
    #[serde(deserialize_with = "flex::i64")]
    pub keeptagrevisions: i64,
    /// `keepYoungerThan`: tags pushed (moved) more recently than this are kept. `0`: no such rule.
    #[serde(deserialize_with = "flex::duration")]
    pub keepyoungerthan: Duration,
    /// `mostRecentlyPushedCount`: the N most recently pushed tags are kept. `0`: no such rule.
    #[serde(deserialize_with = "flex::i64")]
    pub mostrecentlypushedcount: i64,
    /// `deleteUntagged`: manifests of these repositories that no tag reaches (and no kept
    /// revision names) are deleted, as with `gc --delete-untagged`.
    #[serde(deserialize_with = "flex::bool")]
    pub deleteuntagged: bool,
}

/// A repository or tag pattern, compiled.
#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl Pattern {
    /// `regex:<re>` (anchored at both ends), else a glob.
    pub fn parse(p: &str) -> Result<Pattern, String> {
        let re = match p.strip_prefix("regex:") {
            Some(re) => format!("^(?:{re})$"),
            None => glob_regex(p),
        };
        regex::Regex::new(&re)
            .map(Pattern)
            .map_err(|e| format!("{p:?}: {e}"))
    }

    pub fn matches(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

fn glob_regex(g: &str) -> String {
    let mut out = String::from("^");
    let mut chars = g.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    out
}

/// A policy, checked and compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    pub repositories: Vec<Pattern>,
    pub keep_tags: Vec<Pattern>,
    pub keep_tag_revisions: usize,
    pub keep_younger_than: Option<Duration>,
    pub most_recently_pushed: usize,
    pub delete_untagged: bool,
}

impl Policy {
    /// Whether the policy says which tags to keep (without any tag rule it deletes no tag).
    pub fn has_tag_rules(&self) -> bool {
        !self.keep_tags.is_empty()
            || self.keep_younger_than.is_some()
            || self.most_recently_pushed > 0
    }
}

impl RetentionConfig {
    /// The policies compiled, or an error naming the key.
    pub fn compile(&self) -> Result<Vec<Policy>, ConfigError> {
        let base = "storage.maintenance.retention.policies";
        let mut out = Vec::new();
        for (i, p) in self.policies.iter().enumerate() {
            let key = |k: &str| format!("{base}[{i}].{k}");
            if p.repositories.is_empty() {
                return Err(key_err(
                    &key("repositories"),
                    "a policy needs at least one repository pattern",
                ));
            }
            let pats = |k: &str, v: &[String]| -> Result<Vec<Pattern>, ConfigError> {
                v.iter()
                    .enumerate()
                    .map(|(j, s)| {
                        Pattern::parse(s).map_err(|e| key_err(&format!("{}[{j}]", key(k)), e))
                    })
                    .collect()
            };
            let count = |k: &str, n: i64| -> Result<usize, ConfigError> {
                usize::try_from(n).map_err(|_| key_err(&key(k), "must be 0 or more"))
            };
            out.push(Policy {
                repositories: pats("repositories", &p.repositories)?,
                keep_tags: pats("keepTags", &p.keeptags)?,
                keep_tag_revisions: count("keepTagRevisions", p.keeptagrevisions)?,
                keep_younger_than: (!p.keepyoungerthan.is_zero()).then_some(p.keepyoungerthan),
                most_recently_pushed: count("mostRecentlyPushedCount", p.mostrecentlypushedcount)?,
                delete_untagged: p.deleteuntagged,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn globs_and_regexes() {
        let p = Pattern::parse("team/*").unwrap();
        assert!(p.matches("team/app") && !p.matches("team/a/b") && !p.matches("teamx/app"));
        let p = Pattern::parse("team/**").unwrap();
        assert!(p.matches("team/a/b"));
        let p = Pattern::parse("v1.?").unwrap();
        assert!(p.matches("v1.2") && !p.matches("v1x2") && !p.matches("v1.22"));
        let p = Pattern::parse("regex:v[0-9]+").unwrap();
        assert!(p.matches("v12") && !p.matches("xv12") && !p.matches("v12-rc"));
        assert!(Pattern::parse("regex:(").is_err());
    }
}
