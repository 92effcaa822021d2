//! Silences: the list, the form with its preview, expiring.

use super::*;

fn matcher_text(m: &vigil_bundle::model::Matcher) -> String {
    use vigil_bundle::model::MatchOp;
    let op = match m.op {
        MatchOp::Eq => "=",
        MatchOp::Ne => "!=",
        MatchOp::Re => "=~",
        MatchOp::NotRe => "!~",
    };
    format!("{}{op}{}", m.label, m.value)
}

pub(in crate::api::console) async fn silences(
    State(api): State<Arc<Api>>,
    Extension(s): Extension<Session>,
) -> Response {
    silences_page(&api, &s, None).await
}

/// The silences, the form to add one, and (after "Preview") which alerts the silence
/// in the form would mute.
pub(in crate::api::console) async fn silences_page(
    api: &Api,
    s: &Session,
    preview: Option<(&Form, Result<Silence, String>)>,
) -> Response {
    let now = vigil_core::now_ms();
    let svc = api.svc();
    let mut list = svc.silences();
    list.sort_unstable_by_key(|x| std::cmp::Reverse((x.created_ms, x.id.clone())));
    let may = can(s, "/console/silences");
    let mut b = String::from("<h1>Silences</h1>");
    if may {
        let (m, d, c) = preview
            .as_ref()
            .map(|(f, _)| (f.text("matchers"), f.text("duration"), f.text("comment")))
            .unwrap_or_else(|| (String::new(), "2h".into(), String::new()));
        let _ = write!(
            b,
            "<form class=\"panel\" id=\"add-silence\" method=\"post\" action=\"/console/silences\">{}\
             <label for=\"matchers\">Matchers, one per line: <code>label=value</code>, <code>label!=value</code>, <code>label=~regex</code>, <code>label!~regex</code></label>\
             <textarea id=\"matchers\" name=\"matchers\" rows=\"3\" required placeholder=\"service=db&#10;alertname=~Disk.*\">{}</textarea>\
             <label for=\"duration\">Duration</label><input id=\"duration\" name=\"duration\" value=\"{}\" required placeholder=\"2h\">\
             <label for=\"comment\">Comment</label><input id=\"comment\" name=\"comment\" value=\"{}\" placeholder=\"why\">\
             <p><button class=\"primary\" type=\"submit\">Add silence</button> <button type=\"submit\" formaction=\"/console/silences/preview\">Preview</button></p></form>",
            csrf(s),
            esc(&m),
            esc(&d),
            esc(&c)
        );
    }
    if let Some((_, parsed)) = &preview {
        match parsed {
            Err(e) => {
                let _ = write!(
                    b,
                    "<div class=\"panel error\" role=\"alert\" id=\"preview\"><p>{}</p></div>",
                    esc(e)
                );
            }
            Ok(sil) => {
                let hit: Vec<_> = svc
                    .alerts(usize::MAX)
                    .into_iter()
                    .filter(|a| sil.matches(&a.labels))
                    .collect();
                let _ = write!(
                    b,
                    "<div class=\"panel notice\" id=\"preview\"><p>This silence would mute {} alert(s) now.</p><ul>",
                    hit.len()
                );
                for a in hit.iter().take(50) {
                    let labels: Vec<String> =
                        a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let _ = write!(b, "<li><code>{}</code></li>", esc(&labels.join(", ")));
                }
                b.push_str("</ul></div>");
            }
        }
    }
    if list.is_empty() {
        b.push_str("<p class=\"dim\">No silences.</p>");
    } else {
        b.push_str("<div class=\"scroll\"><table id=\"silences\"><thead><tr><th>Matchers</th><th>State</th><th>Until</th><th>By</th><th>Comment</th><th><span class=\"skip\">Actions</span></th></tr></thead><tbody>");
        let may_expire = can(s, "/console/silences/x/expire");
        for sil in &list {
            let state = sil.state(now);
            let ms: Vec<String> = sil.matchers.iter().map(matcher_text).collect();
            let _ = write!(
                b,
                "<tr data-silence=\"{}\"><td><code>{}</code></td><td>{}</td><td class=\"small\">{}</td><td>{}</td><td>{}</td><td>",
                esc(&sil.id),
                esc(&ms.join(", ")),
                status_badge(state),
                esc(&time(sil.ends_at_ms)),
                esc(&sil.created_by),
                esc(&sil.comment)
            );
            if may_expire && state != "expired" {
                b.push_str(&button(
                    s,
                    &format!("/console/silences/{}/expire", seg(&sil.id)),
                    "Expire",
                    "",
                ));
            }
            b.push_str("</td></tr>");
        }
        b.push_str("</tbody></table></div>");
    }
    html("Silences", Nav::Silences, s, "", &b)
}
