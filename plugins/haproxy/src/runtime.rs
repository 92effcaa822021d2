//! HAProxy's runtime API as text: the commands this plugin sends and strict readers
//! of the answers (`show servers state`, `show stat`, the empty answer of a `set`).
//!
//! A reader refuses what it does not recognise instead of guessing: an answer that is
//! not the table it asked for, a row whose field count differs from its header, a
//! value that is not a number where the format has one.

use std::collections::BTreeMap;
use vigil_plugin_sdk::json;
use vigil_plugin_sdk::serde_json::Value;

/// A backend or server name as HAProxy allows it in its configuration: letters,
/// digits, `_ . : -`. Nothing else reaches the socket: a `;` would start a second
/// command, a newline a second request.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("`{what}` must be 1 to 128 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(format!(
            "`{what}` {name:?}: {c:?} is not allowed (HAProxy names are letters, digits, `_`, `.`, `:` and `-`)"
        ));
    }
    Ok(())
}

/// `srv_op_state`: what health checks (or their absence) say.
pub fn op_state(code: i64) -> &'static str {
    match code {
        0 => "stopped",
        1 => "starting",
        2 => "running",
        3 => "stopping",
        _ => "unknown",
    }
}

/// `srv_admin_state` flags (HAProxy's `enum srv_admin`).
const FMAINT: i64 = 0x01;
const IMAINT: i64 = 0x02;
const CMAINT: i64 = 0x04;
const FDRAIN: i64 = 0x08;
const IDRAIN: i64 = 0x10;
const RMAINT: i64 = 0x20;

/// What the operator set: `maint` (any maintenance flag), `drain`, or `ready`.
pub fn admin_state(flags: i64) -> &'static str {
    if flags & (FMAINT | IMAINT | CMAINT | RMAINT) != 0 {
        "maint"
    } else if flags & (FDRAIN | IDRAIN) != 0 {
        "drain"
    } else {
        "ready"
    }
}

/// Why a server stays in maintenance whatever `set server … state ready` says.
pub fn sticky_maint(flags: i64) -> Option<&'static str> {
    if flags & CMAINT != 0 {
        Some("it is `disabled` in HAProxy's configuration")
    } else if flags & IMAINT != 0 {
        Some("it tracks a server in maintenance")
    } else if flags & RMAINT != 0 {
        Some("its address does not resolve")
    } else {
        None
    }
}

/// A header line `# a b c` (or `# a,b,c,`) into field names.
fn header(line: &str, sep: char) -> Option<Vec<String>> {
    let rest = line.strip_prefix("# ")?;
    Some(
        // `show stat` ends every line with one `,`; the fields before it may be empty.
        rest.strip_suffix(sep)
            .unwrap_or(rest)
            .split(sep)
            .map(|f| f.trim().to_string())
            .collect(),
    )
}

fn field<'a>(row: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    row.get(name).map_or("", String::as_str)
}

fn int(row: &BTreeMap<String, String>, name: &str) -> Result<i64, String> {
    let v = field(row, name);
    v.parse()
        .map_err(|_| format!("field {name} is {v:?}, not a number"))
}

/// `show servers state <backend>`: version `1`, a header, one row per server.
pub fn parse_servers_state(text: &str) -> Result<Vec<BTreeMap<String, String>>, String> {
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some("1") => {}
        Some(first) => {
            return Err(format!(
                "expected the state format version `1`, found {:?}",
                clip(first)
            ));
        }
        None => return Err("the answer is empty".into()),
    }
    let names = lines
        .next()
        .and_then(|l| header(l, ' '))
        .filter(|h| h.first().is_some_and(|f| f == "be_id"))
        .ok_or("no `# be_id …` header")?;
    let mut rows = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let values: Vec<&str> = line.split(' ').collect();
        if values.len() != names.len() {
            return Err(format!(
                "a row has {} fields where the header names {}: {:?}",
                values.len(),
                names.len(),
                clip(line)
            ));
        }
        rows.push(
            names
                .iter()
                .cloned()
                .zip(values.into_iter().map(str::to_string))
                .collect(),
        );
    }
    Ok(rows)
}

/// `show stat <backend> 4 -1`: CSV under a `# pxname,svname,…` header.
pub fn parse_stat(text: &str) -> Result<Vec<BTreeMap<String, String>>, String> {
    let mut lines = text.lines();
    let names = lines
        .next()
        .and_then(|l| header(l, ','))
        .filter(|h| h.first().is_some_and(|f| f == "pxname"))
        .ok_or("no `# pxname,svname,…` header")?;
    let mut rows = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let values: Vec<&str> = line.strip_suffix(',').unwrap_or(line).split(',').collect();
        if values.len() != names.len() {
            return Err(format!(
                "a row has {} fields where the header names {}: {:?}",
                values.len(),
                names.len(),
                clip(line)
            ));
        }
        rows.push(
            names
                .iter()
                .cloned()
                .zip(values.into_iter().map(str::to_string))
                .collect(),
        );
    }
    Ok(rows)
}

/// One server as the step output shows it: both tables joined on its name.
pub fn server_view(
    state: &BTreeMap<String, String>,
    stat: Option<&BTreeMap<String, String>>,
) -> Result<Value, String> {
    let name = field(state, "srv_name");
    let op = int(state, "srv_op_state")?;
    let admin = int(state, "srv_admin_state")?;
    let stat_field = |k: &str| stat.map(|s| field(s, k).to_string()).unwrap_or_default();
    Ok(json!({
        "name": name,
        "address": format!("{}:{}", field(state, "srv_addr"), field(state, "srv_port")),
        "admin": admin_state(admin),
        "admin_flags": admin,
        "operational": op_state(op),
        // Traffic can reach it: its checks (or their absence) say it runs.
        "health": if op == 2 { "up" } else { "down" },
        "status": stat_field("status"),
        "check_status": stat_field("check_status"),
        "check_code": stat_field("check_code"),
        "weight": int(state, "srv_uweight")?,
        "initial_weight": int(state, "srv_iweight")?,
        "sessions": stat_field("scur").parse::<i64>().unwrap_or(0),
    }))
}

/// The answer to a `set` command is empty; anything else is HAProxy saying no.
pub fn set_answer(text: &str) -> Result<(), String> {
    let t = text.trim();
    if t.is_empty() { Ok(()) } else { Err(clip(t)) }
}

/// At most 300 characters of a text, for messages.
pub fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(300).collect();
    if s.chars().count() > 300 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 app 1 web1 127.0.0.1 2 8 1 1 1 15 3 2 6 0 0 0 - 18081 - 0 0 - - 0\n3 app 2 web2 127.0.0.1 0 5 50 1 10 15 3 2 6 0 0 0 - 18082 - 0 0 - - 0\n\n";
    const STAT: &str = "# pxname,svname,qcur,qmax,scur,status,weight,check_status,check_code,\napp,web1,0,0,3,DRAIN,1,L7OK,200,\napp,web2,0,0,0,MAINT,50,,,\n\n";

    #[test]
    fn reads_both_tables_and_joins_them() {
        let state = parse_servers_state(STATE).expect("state");
        let stat = parse_stat(STAT).expect("stat");
        assert_eq!(state.len(), 2);
        let web1 =
            server_view(&state[0], stat.iter().find(|r| r["svname"] == "web1")).expect("view");
        assert_eq!(
            web1,
            json!({
                "name": "web1", "address": "127.0.0.1:18081", "admin": "drain", "admin_flags": 8,
                "operational": "running", "health": "up", "status": "DRAIN", "check_status": "L7OK",
                "check_code": "200", "weight": 1, "initial_weight": 1, "sessions": 3,
            })
        );
        let web2 = server_view(&state[1], None).expect("view");
        assert_eq!(web2["admin"], "maint");
        assert_eq!(web2["health"], "down");
        assert_eq!(
            sticky_maint(5),
            Some("it is `disabled` in HAProxy's configuration")
        );
        assert_eq!(sticky_maint(1), None);
    }

    #[test]
    fn garbage_is_not_a_table() {
        for bad in [
            "",
            "Can't find backend.\n\n",
            "Unknown command, but maybe one of the following ones is a better match:\n",
            "1\nno header\n",
            "1\n# be_id a b\n1 2\n",
            "\u{0}\u{1}\u{ff}",
        ] {
            assert!(parse_servers_state(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "garbage", "# pxname,svname,status,\napp,web1\n"] {
            assert!(parse_stat(bad).is_err(), "{bad:?}");
        }
        let state =
            parse_servers_state("1\n# be_id srv_name srv_op_state srv_admin_state\n3 web1 x 0\n")
                .expect("rows");
        assert!(
            server_view(&state[0], None)
                .expect_err("not a number")
                .contains("srv_op_state")
        );
    }

    #[test]
    fn names_cannot_smuggle_commands() {
        assert!(check_name("server", "web-1.a:b_c").is_ok());
        for bad in [
            "",
            "web1;shutdown sessions server app/web2",
            "a b",
            "a\nb",
            "a/b",
            "a\u{0}",
        ] {
            assert!(check_name("server", bad).is_err(), "{bad:?}");
        }
        assert!(set_answer("\n").is_ok());
        assert_eq!(
            set_answer("No such server.\n\n").expect_err("refused"),
            "No such server."
        );
    }
}
