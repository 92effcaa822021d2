//! The `services:` dependency map with its transitive closure: which services an
//! alert's service depends on, or is depended on by, directly or not.

use super::*;

/// The service dependency map, with its transitive closure.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// service → every service it depends on, directly or not.
    pub(super) deps: HashMap<String, HashSet<String>>,
    /// service → every service that depends on it, directly or not (`deps` reversed),
    /// so that correlation looks up a service's neighbours instead of testing all pairs.
    pub(super) dependents: HashMap<String, HashSet<String>>,
}

impl Topology {
    pub fn new(direct: &BTreeMap<String, Vec<String>>) -> Topology {
        let mut deps = HashMap::new();
        for start in direct.keys() {
            let mut seen = HashSet::new();
            let mut stack: Vec<&String> = direct
                .get(start)
                .map(|d| d.iter().collect())
                .unwrap_or_default();
            while let Some(s) = stack.pop() {
                if s != start
                    && seen.insert(s.clone())
                    && let Some(next) = direct.get(s)
                {
                    stack.extend(next.iter());
                }
            }
            deps.insert(start.clone(), seen);
        }
        let mut dependents: HashMap<String, HashSet<String>> = HashMap::new();
        for (a, ds) in &deps {
            for b in ds {
                dependents.entry(b.clone()).or_default().insert(a.clone());
            }
        }
        Topology { deps, dependents }
    }

    pub(super) fn deps_of(&self, a: &str) -> Option<&HashSet<String>> {
        self.deps.get(a)
    }

    pub(super) fn dependents_of(&self, a: &str) -> Option<&HashSet<String>> {
        self.dependents.get(a)
    }

    /// Every service `related` to `a`: itself, what it depends on, what depends on it.
    pub(super) fn neighbours<'a>(&'a self, a: &'a str) -> impl Iterator<Item = &'a str> {
        std::iter::once(a)
            .chain(self.deps_of(a).into_iter().flatten().map(String::as_str))
            .chain(
                self.dependents_of(a)
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            )
    }

    /// Whether `a` depends on `b`, directly or through others.
    pub fn depends_on(&self, a: &str, b: &str) -> bool {
        self.deps.get(a).is_some_and(|d| d.contains(b))
    }

    pub fn related(&self, a: &str, b: &str) -> bool {
        a == b || self.depends_on(a, b) || self.depends_on(b, a)
    }
}
