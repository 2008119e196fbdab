//! Message text: Travis's `%{…}` placeholders, its result words ("Fixed",
//! "Still Failing", …) and the default chat template and email.
//!
//! Placeholders (travis-tasks `util/template.rb`): `repository`,
//! `repository_slug`, `repository_name`, `build_number`, `build_id`,
//! `build_url`, `branch`, `commit` (7 characters; Subversion: `r42`),
//! `commit_subject`, `commit_message`, `author`, `pull_request`, `pull_request_number`,
//! `pull_request_url`, `compare_url`, `result`, `duration`, `elapsed_time`,
//! `message`. An unknown name gives the empty string, as on Travis.

use super::BuildFacts;

/// Travis's default IRC template (also kha's XMPP default).
pub const DEFAULT_CHAT: [&str; 3] = [
    "%{repository_slug}#%{build_number} (%{branch} - %{commit} : %{author}): %{message}",
    "Change view : %{compare_url}",
    "Build details : %{build_url}",
];

/// Travis's status word for a build in `state` whose branch's previous
/// finished build was in `previous` (travis-tasks `result_message.rb`).
pub fn status_message(state: &str, previous: Option<&str>) -> &'static str {
    match (state, previous) {
        ("passed", Some("failed")) => "Fixed",
        ("passed", _) => "Passed",
        ("failed", Some("passed")) => "Broken",
        ("failed", Some("failed")) => "Still Failing",
        ("failed", _) => "Failed",
        ("errored", _) => "Errored",
        ("canceled", _) => "Canceled",
        _ => "Pending",
    }
}

/// The sentence for a status word.
pub fn result_text(status: &str) -> &'static str {
    match status {
        "Passed" => "The build passed.",
        "Fixed" => "The build was fixed.",
        "Broken" => "The build was broken.",
        "Still Failing" => "The build is still failing.",
        "Failed" => "The build failed.",
        "Errored" => "The build has errored.",
        "Canceled" => "The build was canceled.",
        _ => "The build is pending.",
    }
}

/// `"<min> min <sec> sec"`, or `?` while unknown.
pub fn duration(secs: Option<u64>) -> String {
    match secs {
        Some(s) => format!("{} min {} sec", s / 60, s % 60),
        None => "?".into(),
    }
}

fn value(name: &str, b: &BuildFacts) -> String {
    let short = kha_core::spec::short_commit(&b.commit, 7);
    let subject = b.message.lines().next().unwrap_or("");
    match name {
        "repository" | "repository_slug" => b.repository_slug.clone(),
        "repository_name" => b
            .repository_slug
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string(),
        "build_number" => b.number.clone(),
        "build_id" => b.id.to_string(),
        "build_url" => b.build_url.clone(),
        "branch" => b.branch.clone(),
        "commit" => short,
        "commit_subject" => subject.to_string(),
        "commit_message" => b.message.clone(),
        "author" => b.author_name.clone(),
        "pull_request" => b.pull_request.is_some().to_string(),
        "pull_request_number" => b.pull_request.map(|n| n.to_string()).unwrap_or_default(),
        "pull_request_url" => b.pull_request_url.clone(),
        "compare_url" => b.compare_url.clone(),
        "result" => b.state.clone(),
        "duration" | "elapsed_time" => duration(b.duration_secs),
        "message" => b.result_text.clone(),
        _ => String::new(),
    }
}

/// `template` with every `%{name}` replaced.
pub fn render(template: &str, b: &BuildFacts) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(at) = rest.find("%{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end) => {
                out.push_str(&value(&after[..end], b));
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Chat lines: the channel's template, or Travis's default.
pub fn chat_lines(template: &[String], b: &BuildFacts) -> Vec<String> {
    if template.is_empty() {
        DEFAULT_CHAT.iter().map(|t| render(t, b)).collect()
    } else {
        template.iter().map(|t| render(t, b)).collect()
    }
}

/// Travis's subject: `Fixed: owner/name#12 (main - 0123abc)`.
pub fn email_subject(b: &BuildFacts) -> String {
    render(
        &format!(
            "{}: %{{repository_slug}}#%{{build_number}} (%{{branch}} - %{{commit}})",
            b.status_message
        ),
        b,
    )
}

/// A plain-text mail: the result, the commit, and each job.
pub fn email_body(b: &BuildFacts) -> String {
    let mut s = render(
        "%{message}\n\n\
         Build:    %{repository_slug}#%{build_number}\n\
         Branch:   %{branch}\n\
         Commit:   %{commit} (%{author})\n\
         Message:  %{commit_subject}\n\
         Duration: %{duration}\n\
         Details:  %{build_url}\n",
        b,
    );
    if !b.error.is_empty() {
        s.push_str(&format!("\n{}\n", b.error));
    }
    if !b.jobs.is_empty() {
        s.push_str("\nJobs:\n");
        for j in &b.jobs {
            let what = if !j.name.is_empty() {
                j.name.clone()
            } else {
                j.matrix
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let allowed = if j.allow_failure {
                " (allowed to fail)"
            } else {
                ""
            };
            s.push_str(&format!("  {} {}{allowed} {what}\n", j.number, j.state));
        }
    }
    s.push_str("\n-- \nkha CI\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> BuildFacts {
        BuildFacts {
            id: 12,
            number: "12".into(),
            repository_slug: "acme/rocket".into(),
            branch: "main".into(),
            commit: "0123456789abcdef".into(),
            message: "Fix the fins\n\nlong story".into(),
            author_name: "Rita".into(),
            state: "passed".into(),
            status_message: "Fixed".into(),
            result_text: "The build was fixed.".into(),
            duration_secs: Some(75),
            build_url: "http://ci/p/rocket/builds/12".into(),
            ..BuildFacts::default()
        }
    }

    #[test]
    fn placeholders() {
        let b = facts();
        assert_eq!(
            chat_lines(&[], &b)[0],
            "acme/rocket#12 (main - 0123456 : Rita): The build was fixed."
        );
        assert_eq!(
            render(
                "%{repository_name} %{result} in %{duration} %{nope}|%{commit_subject}",
                &b
            ),
            "rocket passed in 1 min 15 sec |Fix the fins"
        );
        assert_eq!(render("50%{ open", &b), "50%{ open");
        assert_eq!(email_subject(&b), "Fixed: acme/rocket#12 (main - 0123456)");
        assert!(email_body(&b).contains("Details:  http://ci/p/rocket/builds/12"));
    }

    #[test]
    fn status_words() {
        let table = [
            ("passed", None, "Passed"),
            ("passed", Some("passed"), "Passed"),
            ("passed", Some("failed"), "Fixed"),
            ("passed", Some("canceled"), "Passed"),
            ("failed", Some("passed"), "Broken"),
            ("failed", Some("failed"), "Still Failing"),
            ("failed", None, "Failed"),
            ("errored", Some("passed"), "Errored"),
            ("canceled", None, "Canceled"),
            ("started", None, "Pending"),
        ];
        for (state, prev, want) in table {
            assert_eq!(status_message(state, prev), want, "{state} {prev:?}");
        }
    }
}
