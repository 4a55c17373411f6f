//! AWS IoT Core policies: the JSON policy grammar, its validation with AWS's
//! `MalformedPolicyException` sentence, and evaluation of a request (action + resource ARN)
//! against the policies attached to a principal. Shared by the simulated account (which
//! enforces policies at its data endpoint and validates `CreatePolicy`) and by the host client
//! (which tells the user whether a certificate's policies allow the shadow actions).
//!
//! Spec (AWS documentation):
//! - grammar and wildcards (`*` any run of characters, `?` one character; `+` and `#` are
//!   literal): <https://docs.aws.amazon.com/iot/latest/developerguide/iot-policy-variables.html>
//! - resources per action, e.g. `iot:UpdateThingShadow` on `arn:aws:iot:REGION:ACCOUNT:thing/THING`
//!   and `.../thing/THING/SHADOW` for a named shadow:
//!   <https://docs.aws.amazon.com/iot/latest/developerguide/iot-action-resources.html>
//! - `${iot:Connection.Thing.ThingName}` is available only over MQTT / MQTT over WebSocket (so
//!   not to a REST shadow request); `${iot:ClientId}` is the MQTT client ID:
//!   <https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html>
//! - evaluation: an explicit Deny wins over any Allow; without a matching Allow the request is
//!   implicitly denied (`ExplicitDeny` / `ImplicitDeny` in
//!   <https://docs.aws.amazon.com/iot/latest/apireference/API_Denied.html>)
//! - `CreatePolicy`: the document is limited to 2048 characters excluding whitespace, and a
//!   bad one is a `MalformedPolicyException`:
//!   <https://docs.aws.amazon.com/iot/latest/apireference/API_CreatePolicy.html>. AWS's message
//!   begins "Policy document is Malformed" (as the CLI, console and CloudFormation print it).
//!
//! Policy variables are substituted only in `Resource`/`NotResource` and only with
//! `"Version": "2012-10-17"`, as IAM does; a variable the request does not supply makes that
//! resource entry match nothing. `Condition` blocks are accepted but not evaluated: a statement
//! with a condition never matches (an Allow under a condition grants nothing here; a
//! conditional Deny is not applied), and [`Statement::has_condition`] lets a caller say so.

use serde_json::{Map, Value};

/// The largest document AWS IoT accepts, counted without whitespace.
pub const MAX_DOCUMENT_CHARS: usize = 2048;
/// The policy language version that enables policy variables.
pub const VERSION_2012: &str = "2012-10-17";
/// The older version, in which `${...}` is literal text.
pub const VERSION_2008: &str = "2008-10-17";

/// A policy document AWS would refuse, with the reason. Displays as AWS's sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Policy document is Malformed: {reason}")]
pub struct MalformedPolicy {
    /// What is wrong, in one clause.
    pub reason: String,
}

fn malformed(reason: impl Into<String>) -> MalformedPolicy {
    MalformedPolicy {
        reason: reason.into(),
    }
}

/// What a statement does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grants the action.
    Allow,
    /// Refuses the action, whatever else allows it.
    Deny,
}

/// One piece of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `*`: any run of characters, possibly empty.
    Any,
    /// `?`: exactly one character.
    One,
    /// `${name}`: replaced from the request context.
    Var(String),
}

/// An action or resource pattern, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    tokens: Vec<Token>,
}

impl Pattern {
    fn compile(text: &str, variables: bool) -> Pattern {
        let mut tokens = Vec::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if variables && rest.starts_with("${") {
                if let Some(end) = rest.find('}') {
                    let name = &rest[2..end];
                    // `${*}`, `${?}` and `${$}` stand for the literal characters.
                    match name {
                        "*" => tokens.push(Token::Char('*')),
                        "?" => tokens.push(Token::Char('?')),
                        "$" => tokens.push(Token::Char('$')),
                        _ => tokens.push(Token::Var(name.to_string())),
                    }
                    rest = &rest[end + 1..];
                    continue;
                }
            }
            tokens.push(match c {
                '*' => Token::Any,
                '?' => Token::One,
                c => Token::Char(c),
            });
            rest = &rest[c.len_utf8()..];
        }
        Pattern {
            text: text.to_string(),
            tokens,
        }
    }

    /// The tokens with variables replaced; `None` when a variable is not available.
    fn resolve(&self, ctx: &Context<'_>) -> Option<Vec<Token>> {
        let mut out = Vec::with_capacity(self.tokens.len());
        for t in &self.tokens {
            match t {
                Token::Var(name) => out.extend(ctx.variable(name)?.chars().map(Token::Char)),
                t => out.push(t.clone()),
            }
        }
        Some(out)
    }

    fn matches(&self, subject: &str, ctx: &Context<'_>, fold_case: bool) -> bool {
        match self.resolve(ctx) {
            Some(tokens) => wildcard_match(&tokens, subject, fold_case),
            None => false,
        }
    }
}

/// Glob matching with `*` and `?`, backtracking only to the last `*` seen: at most
/// (pattern length × subject length) steps and no recursion, so a hostile pattern cannot
/// blow the stack or take exponential time.
fn wildcard_match(tokens: &[Token], subject: &str, fold_case: bool) -> bool {
    let s: Vec<char> = subject.chars().collect();
    let eq = |a: char, b: char| {
        if fold_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut t, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match tokens.get(t) {
            Some(Token::Char(c)) if eq(*c, s[i]) => {
                t += 1;
                i += 1;
            }
            Some(Token::One) => {
                t += 1;
                i += 1;
            }
            Some(Token::Any) => {
                star = Some((t, i));
                t += 1;
            }
            _ => match star {
                Some((st, si)) => {
                    t = st + 1;
                    i = si + 1;
                    star = Some((st, si + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t.min(tokens.len())..]
        .iter()
        .all(|tok| *tok == Token::Any)
}

/// What the request supplies for policy variables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context<'a> {
    /// `${iot:ClientId}`: the MQTT client ID (none for a REST request).
    pub client_id: Option<&'a str>,
    /// `${iot:Connection.Thing.ThingName}`: the thing attached to the certificate (AWS
    /// supplies it over MQTT only).
    pub thing_name: Option<&'a str>,
}

impl Context<'_> {
    fn variable(&self, name: &str) -> Option<&str> {
        match name {
            "iot:ClientId" => self.client_id,
            "iot:Connection.Thing.ThingName" => self.thing_name,
            _ => None,
        }
    }
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    effect: Effect,
    /// `Action` (true) or `NotAction` (false).
    action_positive: bool,
    actions: Vec<Pattern>,
    /// `Resource` (true) or `NotResource` (false).
    resource_positive: bool,
    resources: Vec<Pattern>,
    has_condition: bool,
}

impl Statement {
    /// Allow or Deny.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The action patterns as written.
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().map(|p| p.text.as_str())
    }

    /// Whether this statement applies to `action` on `resource`.
    pub fn applies(&self, action: &str, resource: &str, ctx: &Context<'_>) -> bool {
        !self.has_condition && self.applies_unconditionally(action, resource, ctx)
    }

    /// Whether this statement would apply to `action` on `resource` if its `Condition`
    /// (if any) held.
    fn applies_unconditionally(&self, action: &str, resource: &str, ctx: &Context<'_>) -> bool {
        // Action names are case-insensitive in AWS policies; ARNs are not.
        let action_hit = self
            .actions
            .iter()
            .any(|p| p.matches(action, &Context::default(), true));
        let resource_hit = self
            .resources
            .iter()
            .any(|p| p.matches(resource, ctx, false));
        action_hit == self.action_positive && resource_hit == self.resource_positive
    }
}

/// A parsed, valid policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    version: String,
    statements: Vec<Statement>,
}

/// The outcome of evaluating a request against a set of policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows it and none denies it.
    Allowed,
    /// A Deny statement matches (whatever else allows it).
    ExplicitDeny,
    /// No statement allows it.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request may go ahead.
    pub fn is_allowed(self) -> bool {
        self == Decision::Allowed
    }
}

impl PolicyDocument {
    /// Parses and validates a policy document as `CreatePolicy` would.
    pub fn parse(text: &str) -> Result<PolicyDocument, MalformedPolicy> {
        let size = text.chars().filter(|c| !c.is_whitespace()).count();
        if size > MAX_DOCUMENT_CHARS {
            return Err(malformed(format!(
                "the document is {size} characters long without whitespace; at most {MAX_DOCUMENT_CHARS} are allowed"
            )));
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| malformed(format!("the document is not valid JSON ({e})")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| malformed("the document must be a JSON object"))?;
        for key in obj.keys() {
            if !matches!(key.as_str(), "Version" | "Statement" | "Id") {
                return Err(malformed(format!("unknown policy element '{key}'")));
            }
        }
        let version = match obj.get("Version") {
            None => VERSION_2008.to_string(),
            Some(Value::String(v)) if v == VERSION_2012 || v == VERSION_2008 => v.clone(),
            Some(v) => {
                return Err(malformed(format!(
                    "Version must be \"{VERSION_2012}\" or \"{VERSION_2008}\", not {v}"
                )))
            }
        };
        if let Some(id) = obj.get("Id") {
            if !id.is_string() {
                return Err(malformed("Id must be a string"));
            }
        }
        let variables = version == VERSION_2012;
        let statements = match obj.get("Statement") {
            None => return Err(malformed("the policy has no Statement")),
            Some(Value::Object(s)) => vec![parse_statement(s, variables)?],
            Some(Value::Array(list)) if !list.is_empty() => list
                .iter()
                .map(|s| match s {
                    Value::Object(s) => parse_statement(s, variables),
                    _ => Err(malformed("each Statement must be a JSON object")),
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Array(_)) => return Err(malformed("Statement is empty")),
            Some(_) => {
                return Err(malformed(
                    "Statement must be an object or a list of objects",
                ))
            }
        };
        Ok(PolicyDocument {
            version,
            statements,
        })
    }

    /// The policy language version (`2012-10-17` or `2008-10-17`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The statements, in document order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// This document's verdict alone: `Some(Deny)` if a Deny statement applies, else
    /// `Some(Allow)` if an Allow statement applies, else `None`.
    pub fn verdict(&self, action: &str, resource: &str, ctx: &Context<'_>) -> Option<Effect> {
        let mut allow = false;
        for s in &self.statements {
            if s.applies(action, resource, ctx) {
                match s.effect {
                    Effect::Deny => return Some(Effect::Deny),
                    Effect::Allow => allow = true,
                }
            }
        }
        allow.then_some(Effect::Allow)
    }
}

/// Evaluates `action` on `resource` against every policy attached to the principal:
/// explicit Deny wins, then Allow, else the default deny.
pub fn evaluate<'a>(
    policies: impl IntoIterator<Item = &'a PolicyDocument>,
    action: &str,
    resource: &str,
    ctx: &Context<'_>,
) -> Decision {
    let mut allowed = false;
    for p in policies {
        match p.verdict(action, resource, ctx) {
            Some(Effect::Deny) => return Decision::ExplicitDeny,
            Some(Effect::Allow) => allowed = true,
            None => {}
        }
    }
    if allowed {
        Decision::Allowed
    } else {
        Decision::ImplicitDeny
    }
}

/// Evaluates like [`evaluate`], for a verdict given ahead of the request (the host's
/// `aws status`) rather than at the endpoint: since conditions are not evaluated here, a
/// statement with a `Condition` never proves an allow (as in [`evaluate`]), and a Deny under
/// a `Condition` that would otherwise apply counts as an explicit deny, because it may refuse
/// the request. `Allowed` is therefore only said when AWS would allow.
pub fn evaluate_proven<'a>(
    policies: impl IntoIterator<Item = &'a PolicyDocument>,
    action: &str,
    resource: &str,
    ctx: &Context<'_>,
) -> Decision {
    let policies: Vec<&PolicyDocument> = policies.into_iter().collect();
    let conditional_deny = policies.iter().flat_map(|p| p.statements()).any(|s| {
        s.effect == Effect::Deny
            && s.has_condition
            && s.applies_unconditionally(action, resource, ctx)
    });
    if conditional_deny {
        return Decision::ExplicitDeny;
    }
    evaluate(policies, action, resource, ctx)
}

/// The REST shadow actions the host's shadow client uses, in the order `aws status`
/// reports them.
pub const SHADOW_ACTIONS: [&str; 3] = [
    "iot:GetThingShadow",
    "iot:UpdateThingShadow",
    "iot:DeleteThingShadow",
];

/// A policy name made from a thing name between `prefix` and `suffix`. Thing names may hold
/// `:` and use 128 characters, policy names allow neither (`[\w+=,.@-]`, at most 128): `:`
/// becomes `.`, and a name that would be too long uses the first 32 hex digits of the thing
/// name's SHA-256 instead, so each thing still gets its own name.
pub fn policy_name_for(prefix: &str, thing: &str, suffix: &str) -> String {
    let name = format!("{prefix}{}{suffix}", thing.replace(':', "."));
    if name.len() > crate::aws::names::POLICY_NAME_MAX {
        let digest = crate::hex::encode(
            ring::digest::digest(&ring::digest::SHA256, thing.as_bytes()).as_ref(),
        );
        format!("{prefix}{}{suffix}", &digest[..32])
    } else {
        name
    }
}

/// The name of the least-privilege policy the host's `aws create-thing` makes for a thing
/// (`esp-aws-THING`, see [`policy_name_for`]).
pub fn default_policy_name(thing: &str) -> String {
    policy_name_for("esp-aws-", thing, "")
}

/// The resource ARN of a thing's shadow, as the shadow actions are authorised against:
/// `arn:aws:iot:REGION:ACCOUNT:thing/THING` (classic) or `.../thing/THING/SHADOW` (named).
pub fn shadow_arn(region: &str, account: &str, thing: &str, shadow: Option<&str>) -> String {
    match shadow {
        None => format!("arn:aws:iot:{region}:{account}:thing/{thing}"),
        Some(s) => format!("arn:aws:iot:{region}:{account}:thing/{thing}/{s}"),
    }
}

/// The resource ARN of an MQTT topic (`iot:Publish`, `iot:Receive`).
pub fn topic_arn(region: &str, account: &str, topic: &str) -> String {
    format!("arn:aws:iot:{region}:{account}:topic/{topic}")
}

/// The resource ARN of an MQTT topic filter (`iot:Subscribe`).
pub fn topic_filter_arn(region: &str, account: &str, filter: &str) -> String {
    format!("arn:aws:iot:{region}:{account}:topicfilter/{filter}")
}

/// The resource ARN of an MQTT client ID (`iot:Connect`).
pub fn client_arn(region: &str, account: &str, client_id: &str) -> String {
    format!("arn:aws:iot:{region}:{account}:client/{client_id}")
}

/// The least-privilege policy for one thing: its shadows (classic and named) over REST and
/// MQTT, `iot:Connect` with the thing name as client ID, and publish/subscribe/receive on its
/// `$aws/things/THING/shadow/*` topics. Names are written out (not as policy variables) so the
/// same document works for REST requests, where AWS supplies no thing-name variable.
pub fn thing_policy(region: &str, account: &str, thing: &str) -> String {
    let thing_arn = shadow_arn(region, account, thing, None);
    let shadow_topics = topic_arn(region, account, &format!("$aws/things/{thing}/shadow/*"));
    let shadow_filters =
        topic_filter_arn(region, account, &format!("$aws/things/{thing}/shadow/*"));
    let client = client_arn(region, account, thing);
    let doc = serde_json::json!({
        "Version": VERSION_2012,
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "iot:GetThingShadow",
                    "iot:UpdateThingShadow",
                    "iot:DeleteThingShadow",
                    "iot:ListNamedShadowsForThing"
                ],
                "Resource": [thing_arn.clone(), format!("{thing_arn}/*")]
            },
            { "Effect": "Allow", "Action": "iot:Connect", "Resource": client },
            {
                "Effect": "Allow",
                "Action": ["iot:Publish", "iot:Receive"],
                "Resource": shadow_topics
            },
            { "Effect": "Allow", "Action": "iot:Subscribe", "Resource": shadow_filters }
        ]
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn string_list(value: &Value, element: &str) -> Result<Vec<String>, MalformedPolicy> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| malformed(format!("each {element} must be a string")))
            })
            .collect(),
        Value::Array(_) => Err(malformed(format!("{element} is empty"))),
        _ => Err(malformed(format!(
            "{element} must be a string or a list of strings"
        ))),
    }
}

/// Exactly one of two alternative elements (`Action`/`NotAction`).
fn one_of<'a>(
    s: &'a Map<String, Value>,
    yes: &str,
    no: &str,
) -> Result<(bool, &'a Value), MalformedPolicy> {
    match (s.get(yes), s.get(no)) {
        (Some(v), None) => Ok((true, v)),
        (None, Some(v)) => Ok((false, v)),
        (Some(_), Some(_)) => Err(malformed(format!(
            "a statement cannot have both {yes} and {no}"
        ))),
        (None, None) => Err(malformed(format!("a statement needs {yes} or {no}"))),
    }
}

fn valid_action(a: &str) -> bool {
    if a == "*" {
        return true;
    }
    let Some((service, name)) = a.split_once(':') else {
        return false;
    };
    !service.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
}

fn parse_statement(s: &Map<String, Value>, variables: bool) -> Result<Statement, MalformedPolicy> {
    for key in s.keys() {
        if !matches!(
            key.as_str(),
            "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource" | "Condition"
        ) {
            return Err(malformed(format!("unknown statement element '{key}'")));
        }
    }
    if let Some(sid) = s.get("Sid") {
        let ok = sid
            .as_str()
            .is_some_and(|v| v.chars().all(|c| c.is_ascii_alphanumeric()));
        if !ok {
            return Err(malformed("Sid must be a string of letters and digits"));
        }
    }
    let effect = match s.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(e) => {
            return Err(malformed(format!(
                "Effect must be \"Allow\" or \"Deny\", not {e}"
            )))
        }
        None => return Err(malformed("a statement has no Effect")),
    };
    let (action_positive, actions) = one_of(s, "Action", "NotAction")?;
    let actions = string_list(actions, "Action")?;
    if let Some(bad) = actions.iter().find(|a| !valid_action(a)) {
        return Err(malformed(format!("invalid action '{bad}'")));
    }
    let (resource_positive, resources) = one_of(s, "Resource", "NotResource")?;
    let resources = string_list(resources, "Resource")?;
    let bad: Vec<&str> = resources
        .iter()
        .filter(|r| *r != "*" && !r.starts_with("arn:"))
        .map(String::as_str)
        .collect();
    if !bad.is_empty() {
        // AWS's own wording for this case.
        return Err(malformed(format!(
            "The following resources are invalid : {}",
            bad.join(", ")
        )));
    }
    let has_condition = match s.get("Condition") {
        None => false,
        Some(Value::Object(_)) => true,
        Some(_) => return Err(malformed("Condition must be a JSON object")),
    };
    Ok(Statement {
        effect,
        action_positive,
        actions: actions.iter().map(|a| Pattern::compile(a, false)).collect(),
        resource_positive,
        resources: resources
            .iter()
            .map(|r| Pattern::compile(r, variables))
            .collect(),
        has_condition,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn policy_names_from_any_thing_name_are_valid_policy_names() {
        assert_eq!(super::default_policy_name("lnu_002"), "esp-aws-lnu_002");
        assert_eq!(super::default_policy_name("a:b"), "esp-aws-a.b");
        let long = "x".repeat(128);
        let name = super::default_policy_name(&long);
        assert_eq!(name.len(), "esp-aws-".len() + 32);
        assert_ne!(name, super::default_policy_name(&"y".repeat(128)));
        assert_eq!(super::policy_name_for("", "a:b", "-policy"), "a.b-policy");
    }

    use super::*;

    const R: &str = "us-east-1";
    const A: &str = "123456789012";

    fn arn(thing: &str) -> String {
        shadow_arn(R, A, thing, None)
    }

    #[test]
    fn wildcards() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("a*c", "abbbc", true),
            ("a*c", "ab", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*b*b*", "abxbz", true),
            ("*b*b*", "abx", false),
            ("thing/lnu_00?", "thing/lnu_001", true),
            ("thing/lnu_00?", "thing/lnu_0010", false),
            ("topic/a/+/#", "topic/a/x/y", false),
            ("topic/a/+/#", "topic/a/+/#", true),
            ("x", "X", false),
        ];
        for (p, s, want) in cases {
            let pat = Pattern::compile(p, true);
            assert_eq!(
                pat.matches(s, &Context::default(), false),
                *want,
                "{p} vs {s}"
            );
        }
    }

    #[test]
    fn a_proven_verdict_counts_a_conditional_deny_and_no_conditional_allow() {
        let parse = |t: &str| PolicyDocument::parse(t).unwrap();
        let all = parse(r#"{"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}"#);
        let cond_allow = parse(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}}}"#,
        );
        let cond_deny = parse(
            r#"{"Statement":{"Effect":"Deny","Action":"iot:Update*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}}"#,
        );
        let ctx = Context::default();
        let t = arn("a");
        assert_eq!(
            evaluate_proven([&cond_allow], "iot:GetThingShadow", &t, &ctx),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate_proven([&all, &cond_deny], "iot:UpdateThingShadow", &t, &ctx),
            Decision::ExplicitDeny
        );
        // The endpoint does not apply the conditional Deny; the ahead-of-time verdict does.
        assert_eq!(
            evaluate([&all, &cond_deny], "iot:UpdateThingShadow", &t, &ctx),
            Decision::Allowed
        );
        assert_eq!(
            evaluate_proven([&all, &cond_deny], "iot:GetThingShadow", &t, &ctx),
            Decision::Allowed
        );
        // The host's default policy is the thing policy: its own shadow only.
        let own = parse(&thing_policy(R, A, "lnu_002"));
        for action in SHADOW_ACTIONS {
            assert!(evaluate_proven([&own], action, &arn("lnu_002"), &ctx).is_allowed());
            assert!(!evaluate_proven([&own], action, &arn("lnu_003"), &ctx).is_allowed());
        }
    }

    #[test]
    fn many_stars_against_a_near_miss_end_without_a_match() {
        let p = Pattern::compile(&"*a".repeat(200), false);
        let s = "a".repeat(2000) + "b";
        assert!(!p.matches(&s, &Context::default(), false));
    }

    fn doc(statements: &str) -> PolicyDocument {
        PolicyDocument::parse(&format!(
            r#"{{"Version":"2012-10-17","Statement":{statements}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn evaluation_table() {
        let own = doc(&format!(
            r#"[{{"Effect":"Allow","Action":"iot:*Shadow","Resource":"{}"}}]"#,
            arn("a")
        ));
        let all = doc(r#"{"Effect":"Allow","Action":"iot:*","Resource":"*"}"#);
        let deny_update = doc(
            r#"{"Effect":"Deny","Action":"iot:UpdateThingShadow","Resource":"arn:aws:iot:*:*:thing/*"}"#,
        );
        let not_action =
            doc(r#"{"Effect":"Allow","NotAction":"iot:DeleteThingShadow","Resource":"*"}"#);
        let not_resource = doc(&format!(
            r#"{{"Effect":"Allow","Action":"iot:GetThingShadow","NotResource":"{}"}}"#,
            arn("a")
        ));
        let conditional = doc(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":["true"]}}}"#,
        );
        let ctx = Context::default();
        let cases: Vec<(&str, Vec<&PolicyDocument>, &str, String, Decision)> = vec![
            (
                "own shadow",
                vec![&own],
                "iot:UpdateThingShadow",
                arn("a"),
                Decision::Allowed,
            ),
            (
                "case-insensitive action",
                vec![&own],
                "IOT:updatethingshadow",
                arn("a"),
                Decision::Allowed,
            ),
            (
                "other thing",
                vec![&own],
                "iot:UpdateThingShadow",
                arn("b"),
                Decision::ImplicitDeny,
            ),
            (
                "named shadow is another resource",
                vec![&own],
                "iot:GetThingShadow",
                shadow_arn(R, A, "a", Some("cfg")),
                Decision::ImplicitDeny,
            ),
            (
                "action not listed",
                vec![&own],
                "iot:Publish",
                arn("a"),
                Decision::ImplicitDeny,
            ),
            (
                "no policy",
                vec![],
                "iot:GetThingShadow",
                arn("a"),
                Decision::ImplicitDeny,
            ),
            (
                "deny wins",
                vec![&all, &deny_update],
                "iot:UpdateThingShadow",
                arn("a"),
                Decision::ExplicitDeny,
            ),
            (
                "deny wins in any order",
                vec![&deny_update, &all],
                "iot:UpdateThingShadow",
                arn("a"),
                Decision::ExplicitDeny,
            ),
            (
                "deny leaves others",
                vec![&all, &deny_update],
                "iot:GetThingShadow",
                arn("a"),
                Decision::Allowed,
            ),
            (
                "NotAction excludes",
                vec![&not_action],
                "iot:DeleteThingShadow",
                arn("a"),
                Decision::ImplicitDeny,
            ),
            (
                "NotAction allows the rest",
                vec![&not_action],
                "iot:GetThingShadow",
                arn("a"),
                Decision::Allowed,
            ),
            (
                "NotResource excludes",
                vec![&not_resource],
                "iot:GetThingShadow",
                arn("a"),
                Decision::ImplicitDeny,
            ),
            (
                "NotResource allows others",
                vec![&not_resource],
                "iot:GetThingShadow",
                arn("b"),
                Decision::Allowed,
            ),
            (
                "condition never matches",
                vec![&conditional],
                "iot:GetThingShadow",
                arn("a"),
                Decision::ImplicitDeny,
            ),
        ];
        for (name, policies, action, resource, want) in cases {
            assert_eq!(evaluate(policies, action, &resource, &ctx), want, "{name}");
        }
    }

    #[test]
    fn policy_variables() {
        let by_thing = doc(
            r#"{"Effect":"Allow","Action":"iot:UpdateThingShadow","Resource":"arn:aws:iot:us-east-1:123456789012:thing/${iot:Connection.Thing.ThingName}"}"#,
        );
        let by_client = doc(
            r#"{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}"}"#,
        );
        let literal_star = doc(
            r#"{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:123456789012:topic/a${*}"}"#,
        );
        let mqtt = Context {
            client_id: Some("a"),
            thing_name: Some("a"),
        };
        let rest = Context::default();
        assert_eq!(
            evaluate([&by_thing], "iot:UpdateThingShadow", &arn("a"), &mqtt),
            Decision::Allowed
        );
        assert_eq!(
            evaluate([&by_thing], "iot:UpdateThingShadow", &arn("b"), &mqtt),
            Decision::ImplicitDeny
        );
        // Over REST, AWS supplies no thing-name variable: the entry matches nothing.
        assert_eq!(
            evaluate([&by_thing], "iot:UpdateThingShadow", &arn("a"), &rest),
            Decision::ImplicitDeny
        );
        assert!(evaluate([&by_client], "iot:Connect", &client_arn(R, A, "a"), &mqtt).is_allowed());
        assert!(!evaluate([&by_client], "iot:Connect", &client_arn(R, A, "b"), &mqtt).is_allowed());
        assert!(evaluate(
            [&literal_star],
            "iot:Publish",
            &topic_arn(R, A, "a*"),
            &rest
        )
        .is_allowed());
        assert!(!evaluate(
            [&literal_star],
            "iot:Publish",
            &topic_arn(R, A, "ab"),
            &rest
        )
        .is_allowed());
        // With the 2008 version, `${...}` is literal text.
        let old = PolicyDocument::parse(
            r#"{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}"}}"#,
        )
        .unwrap();
        assert!(!evaluate([&old], "iot:Connect", &client_arn(R, A, "a"), &mqtt).is_allowed());
        assert!(evaluate(
            [&old],
            "iot:Connect",
            &client_arn(R, A, "${iot:ClientId}"),
            &mqtt
        )
        .is_allowed());
    }

    #[test]
    fn malformed_documents() {
        let big_resource = format!("arn:aws:iot:*:*:topic/{}", "x".repeat(2100));
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "the document is not valid JSON"),
            ("[]".into(), "the document must be a JSON object"),
            (r#"{"Version":"2012-10-17"}"#.into(), "the policy has no Statement"),
            (r#"{"Version":"2012-10-17","Statement":[]}"#.into(), "Statement is empty"),
            (r#"{"Version":"2012-10-17","Statement":"x"}"#.into(), "Statement must be an object or a list of objects"),
            (r#"{"Version":"2012-10-18","Statement":{}}"#.into(), "Version must be"),
            (r#"{"Version":"2012-10-17","Statement":{},"Extra":1}"#.into(), "unknown policy element 'Extra'"),
            (r#"{"Statement":{"Action":"iot:*","Resource":"*"}}"#.into(), "a statement has no Effect"),
            (r#"{"Statement":{"Effect":"allow","Action":"iot:*","Resource":"*"}}"#.into(), "Effect must be \"Allow\" or \"Deny\""),
            (r#"{"Statement":{"Effect":"Allow","Resource":"*"}}"#.into(), "a statement needs Action or NotAction"),
            (r#"{"Statement":{"Effect":"Allow","Action":"iot:*","NotAction":"iot:*","Resource":"*"}}"#.into(), "a statement cannot have both Action and NotAction"),
            (r#"{"Statement":{"Effect":"Allow","Action":[],"Resource":"*"}}"#.into(), "Action is empty"),
            (r#"{"Statement":{"Effect":"Allow","Action":[1],"Resource":"*"}}"#.into(), "each Action must be a string"),
            (r#"{"Statement":{"Effect":"Allow","Action":"iot","Resource":"*"}}"#.into(), "invalid action 'iot'"),
            (r#"{"Statement":{"Effect":"Allow","Action":"iot:*"}}"#.into(), "a statement needs Resource or NotResource"),
            (r#"{"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"\\"}}"#.into(), "The following resources are invalid : \\"),
            (r#"{"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":"x"}}"#.into(), "Condition must be a JSON object"),
            (r#"{"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*","Principal":"*"}}"#.into(), "unknown statement element 'Principal'"),
            (format!(r#"{{"Statement":{{"Effect":"Allow","Action":"iot:*","Resource":"{big_resource}"}}}}"#), "characters long without whitespace; at most 2048"),
        ];
        for (text, want) in cases {
            let e = PolicyDocument::parse(&text).unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.starts_with("Policy document is Malformed: ") && shown.contains(want),
                "{text}: {shown}"
            );
        }
    }

    #[test]
    fn size_counts_no_whitespace() {
        // A document of exactly 2048 non-whitespace characters padded with lots of spaces
        // is accepted; one more character is not.
        let head = r#"{"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"arn:"#;
        let tail = r#""}}"#;
        let fill = MAX_DOCUMENT_CHARS - head.len() - tail.len();
        let exact = format!("{head}{}{tail}", "x".repeat(fill));
        assert_eq!(exact.len(), MAX_DOCUMENT_CHARS);
        let padded = exact.replace(',', " ,\n\t ");
        assert!(PolicyDocument::parse(&padded).is_ok());
        let over = format!("{head}{}{tail}", "x".repeat(fill + 1));
        assert!(PolicyDocument::parse(&over).is_err());
    }

    #[test]
    fn single_statement_and_defaults() {
        let d = PolicyDocument::parse(
            r#"{"Statement":{"Sid":"s1","Effect":"Deny","Action":["iot:Publish","iot:Receive"],"Resource":["*"]}}"#,
        )
        .unwrap();
        assert_eq!(d.version(), VERSION_2008);
        assert_eq!(d.statements().len(), 1);
        assert_eq!(d.statements()[0].effect(), Effect::Deny);
        assert_eq!(
            d.statements()[0].actions().collect::<Vec<_>>(),
            ["iot:Publish", "iot:Receive"]
        );
    }

    #[test]
    fn the_thing_policy_is_least_privilege() {
        let d = PolicyDocument::parse(&thing_policy(R, A, "a")).unwrap();
        let ctx = Context::default();
        for action in [
            "iot:GetThingShadow",
            "iot:UpdateThingShadow",
            "iot:DeleteThingShadow",
        ] {
            assert!(
                evaluate([&d], action, &arn("a"), &ctx).is_allowed(),
                "{action}"
            );
            assert!(
                evaluate([&d], action, &shadow_arn(R, A, "a", Some("cfg")), &ctx).is_allowed(),
                "{action} named"
            );
            assert!(
                !evaluate([&d], action, &arn("b"), &ctx).is_allowed(),
                "{action} b"
            );
            assert!(
                !evaluate([&d], action, &arn("a2"), &ctx).is_allowed(),
                "{action} a2"
            );
        }
        assert!(evaluate([&d], "iot:Connect", &client_arn(R, A, "a"), &ctx).is_allowed());
        assert!(!evaluate([&d], "iot:Connect", &client_arn(R, A, "b"), &ctx).is_allowed());
        let own = topic_arn(R, A, "$aws/things/a/shadow/update");
        let other = topic_arn(R, A, "$aws/things/b/shadow/update");
        assert!(evaluate([&d], "iot:Publish", &own, &ctx).is_allowed());
        assert!(!evaluate([&d], "iot:Publish", &other, &ctx).is_allowed());
        assert!(!evaluate([&d], "iot:Publish", &topic_arn(R, A, "x"), &ctx).is_allowed());
        assert!(evaluate(
            [&d],
            "iot:Subscribe",
            &topic_filter_arn(R, A, "$aws/things/a/shadow/update/delta"),
            &ctx
        )
        .is_allowed());
        assert!(!evaluate([&d], "iot:CreateThing", "*", &ctx).is_allowed());
    }
}
