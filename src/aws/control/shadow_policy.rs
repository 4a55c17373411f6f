//! The least-privilege policy esp-aws creates for a thing, and a conservative check of
//! whether a set of AWS IoT policies allows a thing's shadow actions.
//!
//! The check answers "allowed" only when it can prove it: an `Allow` statement whose
//! `Action` and `Resource` patterns match (with `*`/`?` wildcards and the
//! `${iot:Connection.Thing.ThingName}` / `${iot:ClientId}` variables filled in for a thing
//! that connects with its own name), and no `Deny` that might match. Statements with a
//! `Condition`, `NotAction` or `NotResource` never prove an allow and always count as a
//! possible deny. The simulator's full evaluator (`sim::endpoint` policy grammar) is the
//! exact one; this one may say "not proven" where AWS would allow, never the opposite.
//!
//! Spec: AWS IoT developer guide, "AWS IoT Core policies" (policy elements, actions,
//! resources, policy variables); IAM policy grammar for wildcards.

use serde_json::Value;

/// The shadow actions the REST shadow client needs, in the order status reports them.
pub const SHADOW_ACTIONS: [&str; 3] = [
    "iot:GetThingShadow",
    "iot:UpdateThingShadow",
    "iot:DeleteThingShadow",
];

/// The default policy's name for a thing.
pub fn default_policy_name(thing: &str) -> String {
    format!("esp-aws-{thing}")
}

/// The least-privilege policy document for `thing`: its own shadows (classic and named)
/// over REST, MQTT connect with client ID = thing name, publish/receive on its shadow
/// topics and subscribe on its shadow topic filters. Nothing else.
pub fn default_policy(region: &str, account: &str, thing: &str) -> String {
    let arn = |kind: &str, rest: &str| format!("arn:aws:iot:{region}:{account}:{kind}/{rest}");
    let doc = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": SHADOW_ACTIONS,
                "Resource": [arn("thing", thing), arn("thing", &format!("{thing}/*"))]
            },
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": arn("client", thing)
            },
            {
                "Effect": "Allow",
                "Action": ["iot:Publish", "iot:Receive"],
                "Resource": arn("topic", &format!("$aws/things/{thing}/shadow/*"))
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": arn("topicfilter", &format!("$aws/things/{thing}/shadow/*"))
            }
        ]
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The verdict for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An Allow matches and no Deny can.
    Allowed,
    /// A Deny (possibly) matches.
    Denied,
    /// No Allow was proven.
    NotAllowed,
}

/// Whether the policy documents allow `action` on `resource` for a thing connecting with
/// client ID `thing`.
pub fn evaluate(documents: &[&str], action: &str, resource: &str, thing: &str) -> Verdict {
    let mut allowed = false;
    for doc in documents {
        let Ok(value) = serde_json::from_str::<Value>(doc) else {
            continue;
        };
        let statements = match value.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(v @ Value::Object(_)) => vec![v.clone()],
            _ => continue,
        };
        for st in statements {
            let effect = st.get("Effect").and_then(Value::as_str).unwrap_or("");
            let uncertain = st.get("Condition").is_some()
                || st.get("NotAction").is_some()
                || st.get("NotResource").is_some();
            let matches = !uncertain
                && any(st.get("Action"), |p| wildcard(p, action, true))
                && any(st.get("Resource"), |p| {
                    wildcard(&substitute(p, thing), resource, false)
                });
            match effect {
                "Deny" => {
                    let maybe = if uncertain {
                        // A conditional or negated deny may apply: count it unless it
                        // plainly names other actions only.
                        st.get("Action")
                            .is_none_or(|_| any(st.get("Action"), |p| wildcard(p, action, true)))
                    } else {
                        matches
                    };
                    if maybe {
                        return Verdict::Denied;
                    }
                }
                "Allow" if matches => allowed = true,
                _ => {}
            }
        }
    }
    if allowed {
        Verdict::Allowed
    } else {
        Verdict::NotAllowed
    }
}

fn any(v: Option<&Value>, f: impl Fn(&str) -> bool) -> bool {
    match v {
        Some(Value::String(s)) => f(s),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(f),
        _ => false,
    }
}

fn substitute(pattern: &str, thing: &str) -> String {
    pattern
        .replace("${iot:Connection.Thing.ThingName}", thing)
        .replace("${iot:ClientId}", thing)
}

/// IAM wildcard match: `*` any run, `?` one character; actions case-insensitive. A
/// pattern with a policy variable left unfilled matches nothing.
fn wildcard(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    if pattern.contains("${") {
        return false;
    }
    let (p, t): (Vec<char>, Vec<char>) = if case_insensitive {
        (
            pattern.to_ascii_lowercase().chars().collect(),
            text.to_ascii_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    // Iterative matcher with backtracking to the last star: linear in practice.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "eu-west-1";
    const A: &str = "123456789012";

    fn thing_arn(t: &str) -> String {
        format!("arn:aws:iot:{R}:{A}:thing/{t}")
    }

    #[test]
    fn the_default_policy_allows_its_own_shadow_only() {
        let doc = default_policy(R, A, "lnu_002");
        for action in SHADOW_ACTIONS {
            assert_eq!(
                evaluate(&[&doc], action, &thing_arn("lnu_002"), "lnu_002"),
                Verdict::Allowed
            );
            assert_eq!(
                evaluate(&[&doc], action, &thing_arn("lnu_003"), "lnu_002"),
                Verdict::NotAllowed
            );
        }
        assert!(!doc.contains("\"iot:*\"") && !doc.contains("\"*\""));
    }

    #[test]
    fn wildcards_variables_denies_and_conditions() {
        let all = r#"{"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}"#;
        let var = r#"{"Statement":[{"Effect":"Allow","Action":["iot:GetThingShadow"],
            "Resource":"arn:aws:iot:*:*:thing/${iot:Connection.Thing.ThingName}"}]}"#;
        let deny = r#"{"Statement":[{"Effect":"Deny","Action":"iot:Update*","Resource":"*"}]}"#;
        let cond = r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*",
            "Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}}]}"#;
        let t = thing_arn("a");
        assert_eq!(
            evaluate(&[all], "iot:UpdateThingShadow", &t, "a"),
            Verdict::Allowed
        );
        assert_eq!(
            evaluate(&[var], "iot:GetThingShadow", &t, "a"),
            Verdict::Allowed
        );
        assert_eq!(
            evaluate(&[var], "iot:GetThingShadow", &t, "b"),
            Verdict::NotAllowed
        );
        assert_eq!(
            evaluate(&[all, deny], "iot:UpdateThingShadow", &t, "a"),
            Verdict::Denied
        );
        assert_eq!(
            evaluate(&[all, deny], "iot:GetThingShadow", &t, "a"),
            Verdict::Allowed
        );
        assert_eq!(
            evaluate(&[cond], "iot:GetThingShadow", &t, "a"),
            Verdict::NotAllowed
        );
        assert_eq!(
            evaluate(&["not json"], "iot:GetThingShadow", &t, "a"),
            Verdict::NotAllowed
        );
        assert!(wildcard("a*b?c", "axxbyc", false) && !wildcard("a*b?c", "axxbc", false));
    }
}
