//! How the commands print session events for people.

use conclave::SessionEvent;

/// One line describing `e` (a fixed-width verb, then the details).
pub fn describe(e: &SessionEvent) -> String {
    match e {
        SessionEvent::Membership {
            members,
            joined,
            left,
            cause,
            ..
        } => {
            let change = if !left.is_empty() && !joined.is_empty() {
                format!("+{} -{}", joined.join(","), left.join(","))
            } else if !left.is_empty() {
                format!("-{}", left.join(","))
            } else {
                format!("+{}", joined.join(","))
            };
            format!("view     [{}] {cause} {change}", members.join(" "))
        }
        SessionEvent::KeyEstablished(k) => format!(
            "key      epoch {} fp {} {} + {} on {} in {:.1} ms",
            k.epoch,
            k.fingerprint,
            k.key_agreement,
            k.cipher,
            k.dh_group,
            k.took.as_secs_f64() * 1e3
        ),
        SessionEvent::Message {
            sender,
            epoch,
            data,
            ..
        } => format!(
            "receives {:?} from {sender} (epoch {})",
            String::from_utf8_lossy(data),
            epoch.map(|e| e.to_string()).unwrap_or_else(|| "-".into())
        ),
        SessionEvent::SecurityError { sender, error, .. } => format!(
            "SECURITY {} {}{}",
            error.code,
            error.message,
            sender
                .as_ref()
                .map(|s| format!(" (from {s})"))
                .unwrap_or_default()
        ),
        SessionEvent::CommandFailed { command, message } => {
            format!("FAILED   {command}: {message}")
        }
        SessionEvent::Excluded {
            member,
            reason,
            detail,
            ..
        } => format!("EXCLUDED {member} ({}): {detail}", reason.name()),
        SessionEvent::Undelivered { sends, reason, .. } => {
            format!("UNSENT   {} message(s): {reason}", sends.len())
        }
        SessionEvent::Left { cause, .. } => format!("left     ({cause})"),
        SessionEvent::Refused { reason, .. } => format!("REFUSED  {reason}"),
        SessionEvent::PolicyReloaded { changed } => {
            format!("policy   reloaded; changes {changed:?}")
        }
        SessionEvent::PolicyAdopted {
            admin,
            version,
            changed,
            ..
        } => format!(
            "policy   version {version} from {admin} adopted{}",
            if *changed {
                "; switching modules"
            } else {
                " (no change of modules)"
            }
        ),
        SessionEvent::Status(st) => match &st.secure {
            Some(sec) => format!(
                "status   {} on [{}]: {} + {} on {} ({}), epoch {}, key {} ago, keyed [{}], policy v{}",
                st.group,
                st.members.join(" "),
                sec.key_agreement,
                sec.cipher,
                sec.dh_group,
                if sec.cipher_provider.is_empty() || sec.cipher_provider == sec.provider {
                    sec.provider.clone()
                } else {
                    format!("{}, cipher on {}", sec.provider, sec.cipher_provider)
                },
                sec.epoch.map_or("-".into(), |e| e.to_string()),
                sec.since_key_ms
                    .map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1e3)),
                sec.keyed.join(" "),
                sec.policy_version
            ),
            None => format!("status   {} on [{}]: plain", st.group, st.members.join(" ")),
        },
        SessionEvent::PolicyRefused { admin, refusal, .. } => {
            format!("POLICY   refused (from {admin}): {refusal}")
        }
    }
}
