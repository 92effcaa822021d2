//! A minimal XML-RPC codec: the calls this plugin makes, and a strict reader of the
//! answers, bounded in size, nesting and element count.
//!
//! The reader accepts the subset `supervisord` (Python's `xmlrpc`) writes: an optional
//! `<?xml …?>` declaration, elements, text, the five named entities and character
//! references. Anything else — a DOCTYPE (and with it every entity-expansion trick),
//! comments, processing instructions, CDATA, attributes it does not need, unknown
//! entities, unbalanced tags, text after the document — is refused with a reason, so
//! garbage never passes for an answer.

use std::fmt;
use vigil_plugin_sdk::serde_json::{Map, Number, Value};

/// Bounds on what the reader accepts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes of the whole answer.
    pub max_bytes: usize,
    /// Elements inside one another.
    pub max_depth: usize,
    /// Elements in all.
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1 << 20,
            max_depth: 32,
            max_elements: 200_000,
        }
    }
}

/// One parameter of a call.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Str(String),
    Int(i32),
    Bool(bool),
}

/// Escapes text for an XML element. Control characters XML 1.0 cannot carry are
/// refused by the caller (`check_name`), never sent.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// The body of `methodName(params…)`.
pub fn encode_call(method: &str, params: &[Param]) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n<methodCall><methodName>");
    out.push_str(&escape(method));
    out.push_str("</methodName><params>");
    for p in params {
        out.push_str("<param><value>");
        match p {
            Param::Str(s) => {
                out.push_str("<string>");
                out.push_str(&escape(s));
                out.push_str("</string>");
            }
            Param::Int(i) => out.push_str(&format!("<int>{i}</int>")),
            Param::Bool(b) => out.push_str(&format!("<boolean>{}</boolean>", u8::from(*b))),
        }
        out.push_str("</value></param>");
    }
    out.push_str("</params></methodCall>\n");
    out
}

/// A fault the server answered with.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub code: i64,
    pub message: String,
}

impl Fault {
    /// Supervisor's name for the code (`supervisor/xmlrpc.py`'s `Faults`).
    pub fn name(&self) -> &'static str {
        match self.code {
            1 => "UNKNOWN_METHOD",
            2 => "INCORRECT_PARAMETERS",
            3 => "BAD_ARGUMENTS",
            4 => "SIGNATURE_UNSUPPORTED",
            6 => "SHUTDOWN_STATE",
            10 => "BAD_NAME",
            11 => "BAD_SIGNAL",
            20 => "NO_FILE",
            21 => "NOT_EXECUTABLE",
            30 => "FAILED",
            40 => "ABNORMAL_TERMINATION",
            50 => "SPAWN_ERROR",
            60 => "ALREADY_STARTED",
            70 => "NOT_RUNNING",
            80 => "SUCCESS",
            90 => "ALREADY_ADDED",
            91 => "STILL_RUNNING",
            92 => "CANT_REREAD",
            _ => "UNKNOWN_FAULT",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // supervisord's messages start with the fault's name (`BAD_NAME: web9`).
        if self.message.starts_with(self.name()) {
            write!(f, "{} (fault {})", self.message, self.code)
        } else {
            write!(f, "{} (fault {}): {}", self.name(), self.code, self.message)
        }
    }
}

/// Why an answer was not read.
#[derive(Clone, Debug, PartialEq)]
pub enum DecodeError {
    /// Larger than `max_bytes`.
    TooLarge { bytes: usize, max: usize },
    /// Deeper than `max_depth`, or more than `max_elements`.
    TooComplex(String),
    /// Not XML-RPC (or not the subset this reader takes).
    Malformed(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge { bytes, max } => write!(
                f,
                "the answer is {bytes} bytes, more than the {max} this plugin reads (max_response_kib)"
            ),
            DecodeError::TooComplex(why) => write!(f, "the answer is too complex: {why}"),
            DecodeError::Malformed(why) => write!(f, "the answer is not XML-RPC: {why}"),
        }
    }
}

fn bad<T>(why: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::Malformed(why.into()))
}

#[derive(Debug, PartialEq)]
enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, PartialEq)]
struct Element {
    name: String,
    children: Vec<Node>,
}

impl Element {
    /// Child elements, with whitespace-only text between them ignored; other text is
    /// an error (XML-RPC's containers hold elements only).
    fn elements(&self) -> Result<Vec<&Element>, DecodeError> {
        let mut out = Vec::new();
        for c in &self.children {
            match c {
                Node::Element(e) => out.push(e),
                Node::Text(t) if t.trim().is_empty() => {}
                Node::Text(t) => {
                    return bad(format!(
                        "unexpected text {:?} in <{}>",
                        clip(t, 40),
                        self.name
                    ));
                }
            }
        }
        Ok(out)
    }

    fn text(&self) -> Result<String, DecodeError> {
        let mut out = String::new();
        for c in &self.children {
            match c {
                Node::Text(t) => out.push_str(t),
                Node::Element(e) => {
                    return bad(format!(
                        "<{}> inside <{}>, which holds text",
                        e.name, self.name
                    ));
                }
            }
        }
        Ok(out)
    }

    fn only(&self, name: &str) -> Result<&Element, DecodeError> {
        match self.elements()?.as_slice() {
            [one] if one.name == name => Ok(one),
            _ => bad(format!("<{}> must hold exactly one <{name}>", self.name)),
        }
    }
}

fn clip(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    limits: Limits,
    elements: usize,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.i..]
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.i += r.len() - r.trim_start_matches([' ', '\t', '\r', '\n']).len();
    }

    fn name(&mut self) -> Result<String, DecodeError> {
        let r = self.rest();
        let n = r.find(|c: char| !is_name_char(c)).unwrap_or(r.len());
        if n == 0 || n > 64 {
            return bad(format!("bad element name at byte {}", self.i));
        }
        self.i += n;
        Ok(r[..n].to_string())
    }

    /// `<?xml version="1.0" …?>`, only at the start.
    fn declaration(&mut self) -> Result<(), DecodeError> {
        self.skip_ws();
        if let Some(r) = self.rest().strip_prefix("<?xml") {
            let end = r
                .find("?>")
                .filter(|&e| e < 200)
                .ok_or_else(|| DecodeError::Malformed("unterminated XML declaration".into()))?;
            if !r.starts_with([' ', '\t', '\r', '\n']) {
                return bad("bad XML declaration");
            }
            self.i += 5 + end + 2;
        }
        self.skip_ws();
        Ok(())
    }

    fn element(&mut self, depth: usize) -> Result<Element, DecodeError> {
        if depth > self.limits.max_depth {
            return Err(DecodeError::TooComplex(format!(
                "elements nested deeper than {}",
                self.limits.max_depth
            )));
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(DecodeError::TooComplex(format!(
                "more than {} elements",
                self.limits.max_elements
            )));
        }
        let r = self.rest();
        if r.starts_with("<!") || r.starts_with("<?") {
            return bad(format!(
                "{:?} at byte {}: DOCTYPEs, comments, CDATA and processing instructions are not read",
                clip(r, 12),
                self.i
            ));
        }
        if !r.starts_with('<') {
            return bad(format!(
                "expected an element at byte {}, found {:?}",
                self.i,
                clip(r, 20)
            ));
        }
        self.i += 1;
        let name = self.name()?;
        // Attributes: XML-RPC has none; a server that sends some is not one we know.
        self.skip_ws();
        let mut el = Element {
            name,
            children: Vec::new(),
        };
        if self.rest().starts_with("/>") {
            self.i += 2;
            return Ok(el);
        }
        if !self.rest().starts_with('>') {
            return bad(format!(
                "attributes or junk in <{}> at byte {}",
                el.name, self.i
            ));
        }
        self.i += 1;
        loop {
            let r = self.rest();
            if r.is_empty() {
                return bad(format!("<{}> is never closed", el.name));
            }
            if r.starts_with("</") {
                self.i += 2;
                let name = self.name()?;
                self.skip_ws();
                if !self.rest().starts_with('>') {
                    return bad(format!("bad closing tag </{name}"));
                }
                self.i += 1;
                if name != el.name {
                    return bad(format!("<{}> closed by </{name}>", el.name));
                }
                return Ok(el);
            }
            if r.starts_with('<') {
                let child = self.element(depth + 1)?;
                el.children.push(Node::Element(child));
            } else {
                let n = r.find('<').unwrap_or(r.len());
                let text = unescape(&r[..n]).map_err(DecodeError::Malformed)?;
                self.i += n;
                el.children.push(Node::Text(text));
            }
        }
    }
}

/// Text with `&lt; &gt; &amp; &quot; &apos;` and `&#…;` references resolved.
fn unescape(raw: &str) -> Result<String, String> {
    if !raw.contains('&') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let end = tail
            .find(';')
            .filter(|&e| e <= 10)
            .ok_or_else(|| format!("an unterminated entity near {:?}", clip(&rest[at..], 12)))?;
        let name = &tail[..end];
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x").or(name.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{name};"))?
            }
        };
        out.push(c);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_document(body: &[u8], limits: Limits) -> Result<Element, DecodeError> {
    if body.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge {
            bytes: body.len(),
            max: limits.max_bytes,
        });
    }
    let s = std::str::from_utf8(body).or_else(|e| bad(format!("not UTF-8 ({e})")))?;
    let mut p = Parser {
        s,
        i: 0,
        limits,
        elements: 0,
    };
    p.declaration()?;
    let root = p.element(0)?;
    p.skip_ws();
    if !p.rest().is_empty() {
        return bad(format!("text after the document: {:?}", clip(p.rest(), 20)));
    }
    Ok(root)
}

/// A `<value>` as JSON: strings, numbers, booleans, arrays, structs (objects), nil.
fn value(v: &Element) -> Result<Value, DecodeError> {
    if v.name != "value" {
        return bad(format!("expected <value>, found <{}>", v.name));
    }
    // Untyped text is a string.
    if v.children.iter().all(|c| matches!(c, Node::Text(_))) {
        return Ok(Value::String(v.text()?));
    }
    let typed = v.elements()?;
    let [t] = typed.as_slice() else {
        return bad("<value> must hold one typed value");
    };
    Ok(match t.name.as_str() {
        "string" | "dateTime.iso8601" | "base64" => Value::String(t.text()?),
        "int" | "i4" | "i8" => {
            let text = t.text()?;
            let n: i64 = text.trim().parse().or_else(|_| {
                bad(format!(
                    "<{}>{}</{}> is not an integer",
                    t.name,
                    clip(&text, 20),
                    t.name
                ))
            })?;
            Value::Number(n.into())
        }
        "boolean" => match t.text()?.trim() {
            "1" => Value::Bool(true),
            "0" => Value::Bool(false),
            other => return bad(format!("<boolean>{}</boolean>", clip(other, 20))),
        },
        "double" => {
            let text = t.text()?;
            let x: f64 = text
                .trim()
                .parse()
                .or_else(|_| bad(format!("<double>{}</double>", clip(&text, 20))))?;
            Number::from_f64(x).map_or(Value::Null, Value::Number)
        }
        "nil" => Value::Null,
        "array" => {
            let data = t.only("data")?;
            Value::Array(
                data.elements()?
                    .into_iter()
                    .map(value)
                    .collect::<Result<_, _>>()?,
            )
        }
        "struct" => {
            let mut m = Map::new();
            for member in t.elements()? {
                if member.name != "member" {
                    return bad(format!("<{}> in a <struct>", member.name));
                }
                let parts = member.elements()?;
                let (Some(name), Some(v), 2) = (
                    parts.iter().find(|e| e.name == "name"),
                    parts.iter().find(|e| e.name == "value"),
                    parts.len(),
                ) else {
                    return bad("a <member> must hold one <name> and one <value>");
                };
                m.insert(name.text()?, value(v)?);
            }
            Value::Object(m)
        }
        other => return bad(format!("unknown value type <{other}>")),
    })
}

/// Reads a `methodResponse`: the value, or the fault.
pub fn decode_response(body: &[u8], limits: Limits) -> Result<Result<Value, Fault>, DecodeError> {
    let root = parse_document(body, limits)?;
    if root.name != "methodResponse" {
        return bad(format!("the root is <{}>, not <methodResponse>", root.name));
    }
    let inner = root.elements()?;
    let [one] = inner.as_slice() else {
        return bad("<methodResponse> must hold <params> or <fault>");
    };
    match one.name.as_str() {
        "params" => {
            let param = one.only("param")?;
            Ok(Ok(value(param.only("value")?)?))
        }
        "fault" => {
            let v = value(one.only("value")?)?;
            let code = v.get("faultCode").and_then(Value::as_i64);
            let message = v.get("faultString").and_then(Value::as_str);
            match (code, message) {
                (Some(code), Some(message)) => Ok(Err(Fault {
                    code,
                    message: message.to_string(),
                })),
                _ => bad("a <fault> without faultCode and faultString"),
            }
        }
        other => bad(format!("<{other}> in <methodResponse>")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_plugin_sdk::json;

    fn ok(body: &str) -> Value {
        decode_response(body.as_bytes(), Limits::default())
            .expect("decodes")
            .expect("no fault")
    }

    fn err(body: &str) -> DecodeError {
        decode_response(body.as_bytes(), Limits::default()).expect_err(body)
    }

    #[test]
    fn calls_are_escaped() {
        let body = encode_call(
            "supervisor.startProcess",
            &[
                Param::Str("a<b>&c".into()),
                Param::Bool(true),
                Param::Int(-5),
            ],
        );
        assert_eq!(
            body,
            "<?xml version=\"1.0\"?>\n<methodCall><methodName>supervisor.startProcess</methodName><params>\
<param><value><string>a&lt;b&gt;&amp;c</string></value></param>\
<param><value><boolean>1</boolean></value></param>\
<param><value><int>-5</int></value></param></params></methodCall>\n"
        );
    }

    #[test]
    fn reads_what_supervisord_writes() {
        let body = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n\
<value><struct>\n<member>\n<name>name</name>\n<value><string>web1</string></value>\n</member>\n\
<member>\n<name>pid</name>\n<value><int>8939</int></value>\n</member>\n\
<member>\n<name>description</name>\n<value><string>pid 1, uptime 0:00:05 &amp; &lt;ok&gt; &#233;&#x41;</string></value>\n</member>\n\
<member>\n<name>empty</name>\n<value><string></string></value>\n</member>\n\
<member>\n<name>bare</name>\n<value>text</value>\n</member>\n\
<member>\n<name>flag</name>\n<value><boolean>0</boolean></value>\n</member>\n\
<member>\n<name>nil</name>\n<value><nil/></value>\n</member>\n\
<member>\n<name>x</name>\n<value><double>1.5</double></value>\n</member>\n\
</struct></value>\n</data></array></value>\n</param>\n</params>\n</methodResponse>\n";
        assert_eq!(
            ok(body),
            json!([{ "name": "web1", "pid": 8939, "description": "pid 1, uptime 0:00:05 & <ok> éA",
                     "empty": "", "bare": "text", "flag": false, "nil": null, "x": 1.5 }])
        );
        assert_eq!(
            ok(
                "<methodResponse><params><param><value><array><data>\n</data></array></value></param></params></methodResponse>"
            ),
            json!([])
        );
    }

    #[test]
    fn faults_carry_code_and_name() {
        let body = "<?xml version='1.0'?><methodResponse><fault><value><struct>\
<member><name>faultCode</name><value><int>10</int></value></member>\
<member><name>faultString</name><value><string>BAD_NAME: web9</string></value></member>\
</struct></value></fault></methodResponse>";
        let f = decode_response(body.as_bytes(), Limits::default())
            .expect("decodes")
            .expect_err("a fault");
        assert_eq!(f.code, 10);
        assert_eq!(f.name(), "BAD_NAME");
        assert_eq!(f.to_string(), "BAD_NAME: web9 (fault 10)");
        let f = Fault {
            code: 50,
            message: "spawn failed".into(),
        };
        assert_eq!(f.to_string(), "SPAWN_ERROR (fault 50): spawn failed");
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for (body, why) in [
            ("", "expected an element"),
            ("HTTP/1.1 200 OK", "expected an element"),
            ("<html><body>Error 500</body></html>", "<methodResponse>"),
            ("<methodResponse>", "never closed"),
            ("<methodResponse></fault>", "closed by"),
            (
                "<methodResponse><params></params></methodResponse>",
                "exactly one <param>",
            ),
            (
                "<methodResponse><params><param><value><int>x</int></value></param></params></methodResponse>",
                "not an integer",
            ),
            (
                "<methodResponse><params><param><value><blob/></value></param></params></methodResponse>",
                "unknown value type",
            ),
            (
                "<methodResponse><params><param><value>&bomb;</value></param></params></methodResponse>",
                "unknown entity",
            ),
            (
                "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><methodResponse/>",
                "DOCTYPE",
            ),
            ("<methodResponse><!-- hi --></methodResponse>", "comments"),
            ("<methodResponse a=\"1\"></methodResponse>", "attributes"),
            ("<methodResponse/><extra/>", "text after the document"),
            (
                "<methodResponse><fault><value><string>x</string></value></fault></methodResponse>",
                "faultCode",
            ),
            ("\u{0}\u{1}\u{2}", "expected an element"),
        ] {
            let e = err(body).to_string();
            assert!(e.contains(why), "{body:?}: {e}");
        }
        let e = decode_response(&[0xff, 0xfe, b'<'], Limits::default()).expect_err("bytes");
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    #[test]
    fn size_depth_and_count_are_bounded() {
        let small = Limits {
            max_bytes: 100,
            ..Limits::default()
        };
        let big = format!("<methodResponse>{}</methodResponse>", " ".repeat(200));
        assert_eq!(
            decode_response(big.as_bytes(), small).expect_err("too large"),
            DecodeError::TooLarge {
                bytes: big.len(),
                max: 100
            }
        );
        // 10 000 nested arrays: refused at the depth limit, without recursing that deep.
        let deep = format!(
            "<methodResponse><params><param><value>{}{}</value></param></params></methodResponse>",
            "<array><data><value>".repeat(10_000),
            "</value></data></array>".repeat(10_000)
        );
        let e = err(&deep).to_string();
        assert!(e.contains("nested deeper than 32"), "{e}");
        let wide = format!(
            "<methodResponse><params><param><value><array><data>{}</data></array></value></param></params></methodResponse>",
            "<value><int>1</int></value>".repeat(150_000)
        );
        let limits = Limits {
            max_bytes: 8 << 20,
            ..Limits::default()
        };
        let e = decode_response(wide.as_bytes(), limits).expect_err("too many");
        assert!(e.to_string().contains("more than 200000 elements"), "{e}");
    }
}
