//! Standalone role bindings (`auth.bindings`) for the `htpasswd` and `token` modes.
//!
//! A binding grants a role to users, groups and optionally everyone (`anonymous: true`) on
//! namespaces matching glob patterns (`*` any run of characters, `?` one character). The namespace of
//! a repository is its first path component (`team-a` of `team-a/app/web`). Roles:
//! `registry-viewer` = pull; `registry-editor` = pull, push; `registry-admin` = pull, push, delete
//! and the whole catalog. Pure and synchronous: evaluation never fails.

use crate::config::auth::BindingConfig;

use super::{Action, Subject};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "registry-viewer" => Some(Role::Viewer),
            "registry-editor" => Some(Role::Editor),
            "registry-admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn grants(self, a: Action) -> bool {
        match self {
            Role::Viewer => a == Action::Pull,
            Role::Editor => matches!(a, Action::Pull | Action::Push),
            Role::Admin => true,
        }
    }
}

#[derive(Debug, Clone)]
struct Binding {
    role: Role,
    namespaces: Vec<String>,
    users: Vec<String>,
    groups: Vec<String>,
    anonymous: bool,
}

impl Binding {
    fn applies_to(&self, who: &Subject) -> bool {
        if self.anonymous {
            return true;
        }
        match &who.name {
            None => false,
            Some(n) => {
                self.users.iter().any(|u| u == n)
                    || who.groups.iter().any(|g| self.groups.contains(g))
            }
        }
    }

    fn covers(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|p| glob(p, namespace))
    }
}

/// The configured bindings.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    list: Vec<Binding>,
}

impl Bindings {
    /// Builds from config (roles were validated with the config; unknown ones are skipped).
    pub fn new(config: &[BindingConfig]) -> Bindings {
        Bindings {
            list: config
                .iter()
                .filter_map(|b| {
                    Some(Binding {
                        role: Role::parse(&b.role)?,
                        namespaces: b.namespaces.clone(),
                        users: b.users.clone(),
                        groups: b.groups.clone(),
                        anonymous: b.anonymous,
                    })
                })
                .collect(),
        }
    }

    /// Whether `who` may do `action` on repository `name`.
    pub fn allows(&self, who: &Subject, name: &str, action: Action) -> bool {
        let ns = namespace_of(name);
        self.list
            .iter()
            .any(|b| b.role.grants(action) && b.applies_to(who) && b.covers(ns))
    }

    /// Whether a binding gives `who` `action` on every namespace (`*`).
    pub fn allows_everywhere(&self, who: &Subject, action: Action) -> bool {
        self.list.iter().any(|b| {
            b.role.grants(action) && b.applies_to(who) && b.namespaces.iter().any(|p| p == "*")
        })
    }

    /// Whether `who` sees the whole catalog (`registry-admin` on `*`).
    pub fn sees_all(&self, who: &Subject) -> bool {
        self.list.iter().any(|b| {
            b.role == Role::Admin && b.applies_to(who) && b.namespaces.iter().any(|p| p == "*")
        })
    }
}

/// The namespace of a repository name: its first component.
pub fn namespace_of(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// Glob match with `*` (any run, possibly empty) and `?` (one character).
pub fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(role: &str, ns: &[&str], users: &[&str], groups: &[&str], anon: bool) -> BindingConfig {
        BindingConfig {
            role: role.into(),
            namespaces: ns.iter().map(|s| s.to_string()).collect(),
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            anonymous: anon,
        }
    }

    fn user(n: &str, groups: &[&str]) -> Subject {
        Subject {
            name: Some(n.into()),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("team-*", "team-a"));
        assert!(!glob("team-*", "team"));
        assert!(glob("t?am", "team"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn roles_users_groups_anonymous() {
        let bs = Bindings::new(&[
            b("registry-editor", &["team-*"], &["alice"], &[], false),
            b("registry-viewer", &["team-a"], &[], &["auditors"], false),
            b("registry-viewer", &["public"], &[], &[], true),
            b("registry-admin", &["*"], &["root"], &[], false),
        ]);
        let alice = user("alice", &[]);
        let carol = user("carol", &["auditors"]);
        let anon = Subject::anonymous();
        assert!(bs.allows(&alice, "team-a/app", Action::Push));
        assert!(bs.allows(&alice, "team-b/x/y", Action::Pull));
        assert!(!bs.allows(&alice, "team-a/app", Action::Delete));
        assert!(!bs.allows(&alice, "other/app", Action::Pull));
        assert!(bs.allows(&carol, "team-a/app", Action::Pull));
        assert!(!bs.allows(&carol, "team-a/app", Action::Push));
        assert!(!bs.allows(&carol, "team-b/app", Action::Pull));
        assert!(bs.allows(&anon, "public/app", Action::Pull));
        assert!(bs.allows(&alice, "public/app", Action::Pull));
        assert!(!bs.allows(&anon, "public/app", Action::Push));
        assert!(!bs.allows(&anon, "team-a/app", Action::Pull));
        assert!(bs.allows(&user("root", &[]), "x/y", Action::Delete));
        assert!(bs.sees_all(&user("root", &[])));
        assert!(!bs.sees_all(&alice));
    }
}
