//! A plan's declared effects as the host reads them: what each may do, the least
//! risk it carries, and whether it covers a capability call in `execute`.
//!
//! A plugin describes its own plan, so the host does not take its word for risk or
//! reversibility: each declared effect sets a floor (a DELETE is at least medium and
//! never reversible, a command at least medium), an unknown effect fails the plan,
//! and an effect is matched against calls with the same URL rules as grants.

use super::grants::Need;
use super::http_policy::UrlPattern;
use super::tcp_policy::AddrPattern;
use vigil_core::action::{ActionPlan, Risk};

/// One declared effect, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// `http:<METHOD> <url pattern>`
    Http { method: String, url: UrlPattern },
    /// `process:<program>`
    Process { program: String },
    /// `kv:write`
    KvWrite,
    /// `tcp:<host>:<port>`
    Tcp { addr: AddrPattern },
}

impl Effect {
    pub(crate) fn parse(text: &str) -> Result<Effect, String> {
        if let Some(rest) = text.strip_prefix("http:") {
            let (method, url) = rest
                .split_once(' ')
                .ok_or_else(|| format!("effect {text:?}: expected `http:<METHOD> <url>`"))?;
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(format!("effect {text:?}: bad HTTP method {method:?}"));
            }
            let url = UrlPattern::parse(url.trim()).map_err(|e| format!("effect {text:?}: {e}"))?;
            return Ok(Effect::Http {
                method: method.to_ascii_uppercase(),
                url,
            });
        }
        if let Some(program) = text.strip_prefix("process:") {
            let program = program.trim();
            if program.is_empty() || program.contains(|c: char| c.is_whitespace() || c.is_control())
            {
                return Err(format!("effect {text:?}: expected `process:<program>`"));
            }
            return Ok(Effect::Process {
                program: program.to_string(),
            });
        }
        if text == "kv:write" {
            return Ok(Effect::KvWrite);
        }
        if let Some(addr) = text.strip_prefix("tcp:") {
            let addr = AddrPattern::parse(addr).map_err(|e| format!("effect {text:?}: {e}"))?;
            return Ok(Effect::Tcp { addr });
        }
        Err(format!(
            "unknown effect {text:?}: a plugin may declare `http:<METHOD> <url>`, `process:<program>`, `kv:write` or `tcp:<host>:<port>`"
        ))
    }

    /// The least risk this effect carries, and whether it can be undone at all.
    fn floor(&self) -> (Risk, bool) {
        match self {
            Effect::Http { method, .. } => match method.as_str() {
                "GET" | "HEAD" | "OPTIONS" => (Risk::None, true),
                "POST" | "PUT" | "PATCH" => (Risk::Low, true),
                "DELETE" => (Risk::Medium, false),
                _ => (Risk::Medium, true),
            },
            Effect::Process { .. } => (Risk::Medium, true),
            Effect::KvWrite => (Risk::Low, true),
            // The host cannot tell a read from a write on a raw connection: as a POST.
            Effect::Tcp { .. } => (Risk::Low, true),
        }
    }

    /// Whether this declared effect allows the capability call `need`.
    fn covers(&self, need: &Need<'_>) -> bool {
        match (self, need) {
            (Effect::Http { method, url }, Need::Http { method: m, url: u }) => {
                method.eq_ignore_ascii_case(m) && url.matches(u)
            }
            (Effect::Process { program }, Need::Process { program: p, .. }) => program == p,
            (Effect::KvWrite, Need::KvWrite) => true,
            (Effect::Tcp { addr }, Need::Tcp { addr: a }) => addr.matches(a),
            _ => false,
        }
    }
}

/// Checks a plugin's plan: every effect must parse, and each planned step's risk
/// and reversibility are raised to what its effects can do.
pub(crate) fn vet_plan(mut plan: ActionPlan) -> Result<ActionPlan, String> {
    for step in &mut plan.steps {
        for text in &step.effects {
            let (risk, reversible) = Effect::parse(text)?.floor();
            step.risk = step.risk.max(risk);
            step.reversible &= reversible;
        }
    }
    Ok(plan)
}

/// Whether the effects a plan declared allow `need` in `execute`. Reads (kv, secrets)
/// need no declaration; an effect that does not parse allows nothing.
pub(crate) fn declared(effects: &[String], need: &Need<'_>) -> bool {
    matches!(need, Need::KvRead | Need::Secret(_))
        || effects
            .iter()
            .filter_map(|e| Effect::parse(e).ok())
            .any(|e| e.covers(need))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_policy::CheckedUrl;
    use vigil_core::action::PlannedEffect;

    fn plan(risk: Risk, reversible: bool, effects: &[&str]) -> ActionPlan {
        ActionPlan {
            summary: "s".into(),
            steps: vec![PlannedEffect {
                target: "t".into(),
                risk,
                reversible,
                effects: effects.iter().map(|e| e.to_string()).collect(),
            }],
            preview: None,
        }
    }

    #[test]
    fn the_host_sets_a_floor_under_risk_and_reversibility() {
        let p = vet_plan(plan(Risk::None, true, &["http:DELETE http://h/x"])).expect("ok");
        assert_eq!(p.steps[0].risk, Risk::Medium);
        assert!(!p.steps[0].reversible);
        let p = vet_plan(plan(Risk::None, true, &["http:post http://h/x"])).expect("ok");
        assert_eq!(p.steps[0].risk, Risk::Low);
        assert!(p.steps[0].reversible);
        let p = vet_plan(plan(Risk::None, true, &["tcp:127.0.0.1:9999"])).expect("ok");
        assert_eq!(p.steps[0].risk, Risk::Low);
        assert!(p.steps[0].reversible);
        let p = vet_plan(plan(Risk::None, true, &["process:rm"])).expect("ok");
        assert_eq!(p.steps[0].risk, Risk::Medium);
        // A plugin may say more risk than the floor, never less.
        let p = vet_plan(plan(Risk::High, false, &["kv:write"])).expect("ok");
        assert_eq!(p.steps[0].risk, Risk::High);
        assert!(!p.steps[0].reversible);
    }

    #[test]
    fn unknown_or_malformed_effects_fail_the_plan() {
        for bad in [
            "file:write /etc/passwd",
            "http:POST",
            "http: http://h/",
            "http:PO ST http://h/",
            "http:POST ftp://h/",
            "process:",
            "process:rm -rf",
            "process:rm\u{1b}[2J",
            "kv:delete",
            "tcp:127.0.0.1",
            "tcp:tcp://127.0.0.1:9",
            "tcp:127.0.0.1:9/x",
            "tcp: 127.0.0.1:9",
            "",
        ] {
            let e = vet_plan(plan(Risk::Low, true, &[bad])).expect_err(bad);
            assert!(e.contains("effect"), "{bad}: {e}");
        }
    }

    #[test]
    fn declared_effects_match_like_grants() {
        let url = CheckedUrl::parse("http://h/api/../admin").expect("url");
        let need = Need::Http {
            method: "POST",
            url: &url,
        };
        assert!(!declared(&["http:POST http://h/api/*".into()], &need));
        assert!(declared(&["http:POST http://h/admin".into()], &need));
        assert!(!declared(&["http:GET http://h/admin".into()], &need));
        let args = vec!["-rf".to_string()];
        let rm = Need::Process {
            program: "rm",
            args: &args,
        };
        assert!(declared(&["process:rm".into()], &rm));
        assert!(!declared(&["process:rmdir".into()], &rm));
        let addr = crate::tcp_policy::CheckedAddr::parse("2130706433:9999").expect("addr");
        let tcp = Need::Tcp { addr: &addr };
        assert!(declared(&["tcp:127.0.0.1:9999".into()], &tcp));
        assert!(declared(&["tcp:127.0.0.1:*".into()], &tcp));
        assert!(!declared(&["tcp:127.0.0.1:9998".into()], &tcp));
        assert!(!declared(
            &["http:POST http://127.0.0.1:9999/".into()],
            &tcp
        ));
        assert!(declared(&[], &Need::KvRead));
        assert!(!declared(&[], &Need::KvWrite));
    }
}
