//! Who may call the API: principals, each with a name, a role and a token of its own.
//!
//! Tokens are kept only as SHA-256 digests and every digest is compared on each
//! request, in constant time, so neither memory nor timing gives a token away.
//! What each role may do is [`Need`]: one table, [`need`], maps every route to it,
//! and a route it does not name needs `admin` (closed by default).

use axum::http::Method;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use vigil_bundle::model::{ApiDoc, Role};

/// The caller of a request, as the handlers see it (a request extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: Arc<str>,
    pub role: Role,
}

impl Caller {
    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        format!("user:{}", self.name)
    }
}

/// What a request asks to do, from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Read anything.
    Read,
    /// Deliver alerts and events.
    Deliver,
    /// Act on incidents, silences, executions and automation.
    Operate,
    /// Change what runs: promote, models, reload.
    Administer,
}

impl Need {
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Read => "read",
            Need::Deliver => "deliver alerts",
            Need::Operate => "operate",
            Need::Administer => "administer",
        }
    }
}

/// Whether `role` may do what `need` asks.
pub fn allows(role: Role, need: Need) -> bool {
    match role {
        Role::Admin => true,
        Role::Operator => need <= Need::Operate,
        Role::Viewer => need == Need::Read,
        Role::Sender => need == Need::Deliver,
    }
}

/// The least role each route needs. Reads need `viewer`, deliveries `sender`; a
/// change needs `operator` unless it changes what runs (`admin`). A route missing
/// here needs `admin`, so a new route is closed until it is placed.
pub fn need(method: &Method, path: &str) -> Need {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = method == Method::GET || method == Method::HEAD;
    // A console form posted to `/console/<x>` does what `/api/v1/<x>` does.
    if let (false, ["console", rest @ ..]) = (read, segments.as_slice()) {
        return need(method, &format!("/api/v1/{}", rest.join("/")));
    }
    match (read, segments.as_slice()) {
        (true, _) => Need::Read,
        (false, ["api", "v1", "alerts" | "events"]) => Need::Deliver,
        (false, ["api", "v1", "runbooks", _, "promote"])
        | (false, ["api", "v1", "models", ..])
        | (false, ["api", "v1", "reload" | "evaluate"]) => Need::Administer,
        (false, ["api", "v1", "incidents", _, "acknowledge" | "resolve"])
        | (false, ["api", "v1", "silences", ..])
        | (
            false,
            [
                "api",
                "v1",
                "executions",
                _,
                "approve" | "reject" | "resume" | "cancel",
            ],
        )
        | (false, ["api", "v1", "pause" | "resume" | "trigger"])
        | (false, ["api", "v1", "runbooks", _, "run"]) => Need::Operate,
        _ => Need::Administer,
    }
}

/// One principal as the server keeps it.
#[derive(Clone)]
struct Entry {
    caller: Caller,
    digest: [u8; 32],
    expires_ms: Option<i64>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("caller", &self.caller)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// Every principal the server accepts.
#[derive(Clone, Debug, Default)]
pub struct Principals {
    entries: Vec<Entry>,
}

/// Why a principal could not be set up: names the `vigil.yaml` entry and the fix.
#[derive(Debug, thiserror::Error)]
#[error("vigil.yaml {place}: {message}")]
pub struct PrincipalError {
    place: String,
    message: String,
}

fn bad(place: impl Into<String>, message: impl Into<String>) -> PrincipalError {
    PrincipalError {
        place: place.into(),
        message: message.into(),
    }
}

/// A principal's token must be at least this long: guessing must not be practical.
const MIN_TOKEN_LEN: usize = 16;

/// Why a presented token was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No token matches.
    Unknown,
    /// The token belongs to `name`, whose token expired at `at_ms`.
    Expired { name: Arc<str>, at_ms: i64 },
}

impl Principals {
    /// Shared tokens, each an `admin` named `shared`: tests, benches and the
    /// single-operator setup of `api.token_env` / `VIGIL_TOKEN`.
    pub fn shared<I, S>(tokens: I) -> Principals
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut p = Principals::default();
        for t in tokens {
            p.push("shared", Role::Admin, t.as_ref(), None);
        }
        p
    }

    /// Adds a principal; its token is kept only as a digest.
    pub fn push(&mut self, name: &str, role: Role, token: &str, expires_ms: Option<i64>) {
        self.entries.push(Entry {
            caller: Caller {
                name: Arc::from(name),
                role,
            },
            digest: digest(token),
            expires_ms,
        });
    }

    /// The principals of `api.principals`, plus the shared tokens of `api.token_env`
    /// and `api.token_file`, plus `VIGIL_TOKEN` when nothing else is configured.
    /// `env` reads an environment variable; `config_dir` anchors relative files.
    pub fn from_config(
        doc: &ApiDoc,
        config_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Principals, PrincipalError> {
        let mut out = Principals::default();
        let mut names = HashSet::new();
        for (i, p) in doc.principals.iter().enumerate() {
            let place = format!("api.principals[{i}]");
            if !valid_name(&p.name) {
                return Err(bad(
                    format!("{place}.name"),
                    format!(
                        "`{}` is not a usable name; use letters, digits and `.-_@` (it appears in the audit log as `user:<name>`)",
                        vigil_core::text::visible(&p.name)
                    ),
                ));
            }
            if !names.insert(p.name.clone()) {
                return Err(bad(
                    format!("{place}.name"),
                    format!(
                        "`{}` is declared twice; give each principal its own name",
                        p.name
                    ),
                ));
            }
            let place = format!("{place} ({})", p.name);
            let token = match (&p.token_env, &p.token_file) {
                (Some(var), None) => env(var).ok_or_else(|| {
                    bad(&place, format!("the environment variable `{var}` named by token_env is not set; export it with the principal's token"))
                })?,
                (None, Some(file)) => {
                    let path = config_dir.join(file);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        bad(&place, format!("reading token_file {}: {e}", path.display()))
                    })?;
                    text.lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(String::from)
                        .ok_or_else(|| bad(&place, format!("token_file {} holds no token", path.display())))?
                }
                (Some(_), Some(_)) => {
                    return Err(bad(&place, "give either token_env or token_file, not both"));
                }
                (None, None) => {
                    return Err(bad(
                        &place,
                        "no token: add `token_env: VARIABLE` or `token_file: path` (tokens are never written in vigil.yaml)",
                    ));
                }
            };
            let token = token.trim();
            if token.len() < MIN_TOKEN_LEN || !well_formed(token) {
                return Err(bad(
                    &place,
                    format!(
                        "the token must be at least {MIN_TOKEN_LEN} visible ASCII characters without spaces (e.g. `openssl rand -hex 24`)"
                    ),
                ));
            }
            let expires_ms = p
                .expires
                .as_deref()
                .map(|e| {
                    parse_expiry(e).ok_or_else(|| {
                        bad(
                            format!("{place}.expires"),
                            format!(
                                "`{}` is not a time; write `2027-01-31` or `2027-01-31T12:00:00Z`",
                                vigil_core::text::visible(e)
                            ),
                        )
                    })
                })
                .transpose()?;
            if out.entries.iter().any(|e| e.digest == digest(token)) {
                return Err(bad(
                    &place,
                    "this token is also another principal's; each needs its own, or the audit log cannot tell them apart",
                ));
            }
            out.push(&p.name, p.role, token, expires_ms);
        }
        let mut shared = Vec::new();
        if let Some(var) = &doc.token_env
            && let Some(v) = env(var)
        {
            shared.extend(split_tokens(&v));
        }
        if let Some(f) = &doc.token_file {
            let path = config_dir.join(f);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| bad("api.token_file", format!("reading {}: {e}", path.display())))?;
            shared.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|t| !t.is_empty() && !t.starts_with('#'))
                    .map(String::from),
            );
        }
        if out.entries.is_empty()
            && shared.is_empty()
            && doc.token_env.is_none()
            && doc.token_file.is_none()
            && let Some(v) = env("VIGIL_TOKEN")
        {
            shared.extend(split_tokens(&v));
        }
        for t in shared {
            out.push("shared", Role::Admin, &t, None);
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the token of the principal at `index` expires, if it does.
    pub fn expires_ms(&self, index: usize) -> Option<i64> {
        self.entries.get(index).and_then(|e| e.expires_ms)
    }

    /// The caller at `index` (from [`Principals::authenticate`]).
    pub fn caller(&self, index: usize) -> Option<&Caller> {
        self.entries.get(index).map(|e| &e.caller)
    }

    /// The index of the principal whose token this is. Every digest is compared, so
    /// the time taken does not tell which one matched, or how nearly.
    pub fn authenticate(&self, token: &str, now_ms: i64) -> Result<usize, Refused> {
        let presented = digest(token);
        let found = self
            .entries
            .iter()
            .enumerate()
            .fold(None, |found, (i, e)| {
                if same(&e.digest, &presented) {
                    Some(i)
                } else {
                    found
                }
            })
            .ok_or(Refused::Unknown)?;
        let e = &self.entries[found];
        match e.expires_ms {
            Some(at_ms) if now_ms >= at_ms => Err(Refused::Expired {
                name: e.caller.name.clone(),
                at_ms,
            }),
            _ => Ok(found),
        }
    }
}

fn split_tokens(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time comparison of two digests.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}

/// A token as it may appear in a header: visible ASCII, no spaces.
pub fn well_formed(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

fn parse_expiry(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vigil_bundle::model::PrincipalDoc;

    fn doc(principals: Vec<PrincipalDoc>) -> ApiDoc {
        ApiDoc {
            principals,
            ..Default::default()
        }
    }

    fn principal(name: &str, role: Role, var: &str) -> PrincipalDoc {
        PrincipalDoc {
            name: name.into(),
            role,
            token_env: Some(var.into()),
            token_file: None,
            expires: None,
        }
    }

    fn env(var: &str) -> Option<String> {
        match var {
            "ALICE" => Some("alice-token-0123456789".into()),
            "BOB" => Some("bob-token-0123456789ab".into()),
            "SHORT" => Some("short".into()),
            "VIGIL_TOKEN" => Some("legacy-a, legacy-b".into()),
            _ => None,
        }
    }

    #[test]
    fn each_role_does_what_it_says_and_no_more() {
        let table = [
            (Role::Viewer, [true, false, false, false]),
            (Role::Sender, [false, true, false, false]),
            (Role::Operator, [true, true, true, false]),
            (Role::Admin, [true, true, true, true]),
        ];
        for (role, expect) in table {
            for (need, ok) in [Need::Read, Need::Deliver, Need::Operate, Need::Administer]
                .into_iter()
                .zip(expect)
            {
                assert_eq!(allows(role, need), ok, "{role:?} {need:?}");
            }
        }
    }

    #[test]
    fn routes_need_what_they_change() {
        let post = Method::POST;
        let cases = [
            (Method::GET, "/api/v1/executions", Need::Read),
            (Method::GET, "/metrics", Need::Read),
            (post.clone(), "/api/v1/alerts", Need::Deliver),
            (post.clone(), "/api/v1/events", Need::Deliver),
            (post.clone(), "/api/v1/executions/e1/approve", Need::Operate),
            (post.clone(), "/api/v1/pause", Need::Operate),
            (Method::DELETE, "/api/v1/silences/s1", Need::Operate),
            (post.clone(), "/api/v1/runbooks/x/run", Need::Operate),
            (post.clone(), "/api/v1/runbooks/x/promote", Need::Administer),
            (post.clone(), "/api/v1/models/m/promote", Need::Administer),
            (post.clone(), "/api/v1/reload", Need::Administer),
            // Unknown or oddly shaped routes are closed by default.
            (post.clone(), "/api/v1/something-new", Need::Administer),
            (
                post.clone(),
                "/api/v1/executions/e1/approve/extra",
                Need::Administer,
            ),
            (Method::PUT, "/api/v1/alerts", Need::Deliver),
            // Console forms need what the API route of the same name needs.
            (Method::GET, "/console/incidents", Need::Read),
            (post.clone(), "/console/pause", Need::Operate),
            (
                post.clone(),
                "/console/executions/e1/approve",
                Need::Operate,
            ),
            (post.clone(), "/console/silences/s1/expire", Need::Operate),
            (post.clone(), "/console/something-new", Need::Administer),
        ];
        for (m, p, n) in cases {
            assert_eq!(need(&m, p), n, "{m} {p}");
        }
    }

    #[test]
    fn tokens_resolve_to_their_principal_and_expire() {
        let mut d = doc(vec![
            principal("alice", Role::Operator, "ALICE"),
            principal("bob", Role::Viewer, "BOB"),
        ]);
        d.principals[1].expires = Some("2027-01-31".into());
        let p = Principals::from_config(&d, Path::new("."), &env).unwrap();
        assert_eq!(p.len(), 2, "VIGIL_TOKEN is not added beside principals");
        let i = p.authenticate("alice-token-0123456789", 0).unwrap();
        assert_eq!(&*p.caller(i).unwrap().name, "alice");
        let jan31 = parse_expiry("2027-01-31").unwrap();
        assert!(p.authenticate("bob-token-0123456789ab", jan31 - 1).is_ok());
        assert_eq!(
            p.authenticate("bob-token-0123456789ab", jan31),
            Err(Refused::Expired {
                name: "bob".into(),
                at_ms: jan31
            })
        );
        assert_eq!(
            p.authenticate("alice-token-012345678", 0),
            Err(Refused::Unknown)
        );
        assert_eq!(p.authenticate("", 0), Err(Refused::Unknown));
    }

    #[test]
    fn the_shared_token_is_an_admin_only_when_nothing_else_is_configured() {
        let p = Principals::from_config(&doc(Vec::new()), Path::new("."), &env).unwrap();
        assert_eq!(p.len(), 2);
        let i = p.authenticate("legacy-b", 0).unwrap();
        assert_eq!(p.caller(i).unwrap().role, Role::Admin);
    }

    #[test]
    fn bad_principals_are_refused_with_where_and_how() {
        let cases: Vec<(Vec<PrincipalDoc>, &str)> = vec![
            (
                vec![principal("al ice", Role::Admin, "ALICE")],
                "api.principals[0].name",
            ),
            (
                vec![
                    principal("alice", Role::Admin, "ALICE"),
                    principal("alice", Role::Viewer, "BOB"),
                ],
                "declared twice",
            ),
            (
                vec![
                    principal("alice", Role::Admin, "ALICE"),
                    principal("carol", Role::Viewer, "ALICE"),
                ],
                "also another principal's",
            ),
            (vec![principal("alice", Role::Admin, "UNSET")], "`UNSET`"),
            (
                vec![principal("alice", Role::Admin, "SHORT")],
                "at least 16",
            ),
            (
                vec![PrincipalDoc {
                    token_env: None,
                    ..principal("alice", Role::Admin, "ALICE")
                }],
                "never written in vigil.yaml",
            ),
            (
                vec![PrincipalDoc {
                    expires: Some("next tuesday".into()),
                    ..principal("alice", Role::Admin, "ALICE")
                }],
                "expires",
            ),
        ];
        for (principals, says) in cases {
            let e = Principals::from_config(&doc(principals), Path::new("."), &env)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{e} should say {says}");
            assert!(e.starts_with("vigil.yaml api."), "{e}");
        }
    }
}
