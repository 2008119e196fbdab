//! End to end: the web UI in a real headless chromium, against a real
//! control node with real builders (the host executor: these tests are
//! about what a person sees, not how a job is isolated) building real git
//! repositories. Every assertion is on what the page shows or holds.
//!
//! Without chromium-driver these tests are reported as ignored (see
//! `tests/build.rs`), never passed.
#![allow(clippy::unwrap_used)]

use kha_tests::*;
use serde_json::{json, Value};
use std::time::Duration;

const LOAD: Duration = Duration::from_secs(30);
const BUILD: Duration = Duration::from_secs(90);

/// A repository whose `.travis.yml` runs `sh ci.sh`, with `ci` as that
/// script: the job's log is `$ sh ci.sh\n` followed by what it prints.
fn script_repo(ci: &str) -> Repo {
    let r = Repo::temp();
    r.commit(
        &[
            (".travis.yml", "language: shell\nscript: sh ci.sh\n"),
            ("ci.sh", ci),
        ],
        "first",
    );
    r
}

/// A control node with project `demo` on `repo` and one host builder.
fn cluster(repo: &Repo) -> Cluster {
    Fixture::new()
        .project("demo", &repo.url())
        .host_builder("a", 2)
        .start()
}

fn first_job(c: &Cluster, build: u64) -> u64 {
    c.build(build)["jobs"][0]["id"].as_u64().unwrap()
}

fn wait_job_state(c: &Cluster, build: u64, state: &str) {
    wait_for(&format!("build {build}'s job to be {state}"), BUILD, || {
        (c.build(build)["jobs"][0]["state"] == state).then_some(())
    });
}

/// Waits until the log viewer has rendered what it fetched.
fn wait_log_ready(b: &Browser) {
    b.wait_js(
        "the log viewer to be ready",
        Duration::from_secs(60),
        "return !!(window.khaLog && window.khaLog.ready)",
    );
}

/// Every byte the page's log viewer received.
fn page_log_bytes(b: &Browser) -> Vec<u8> {
    let v = b.js("return Array.from(window.khaLog.bytes());", vec![]);
    v.as_array()
        .expect("khaLog.bytes() as an array")
        .iter()
        .map(|x| x.as_u64().expect("a byte") as u8)
        .collect()
}

/// The text of every log line in the DOM that a user can see (rendered,
/// not inside a collapsed fold), in order.
fn visible_lines(b: &Browser) -> Vec<String> {
    let v = b.js(
        "return [...document.querySelectorAll('#log .line')]
            .filter(l => l.getClientRects().length > 0)
            .map(l => { const t = l.querySelector('.txt'); return (t || l).textContent; });",
        vec![],
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Every line the log viewer rendered (`khaLog.text(1…lines())`), whether
/// or not it is in the DOM right now.
fn viewer_lines(b: &Browser) -> Vec<String> {
    let v = b.js(
        "const n = window.khaLog.lines(), out = [];
         for (let i = 1; i <= n; i++) out.push(window.khaLog.text(i));
         return out;",
        vec![],
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The page says what happened without a reload: set a marker a reload
/// would wipe.
fn mark_page(b: &Browser) {
    b.js("window.__kept = 1;", vec![]);
}

fn assert_not_reloaded(b: &Browser) {
    assert_eq!(
        b.js("return window.__kept === 1;", vec![]),
        json!(true),
        "{} was reloaded (or navigated away) instead of updated in place",
        b.current_url()
    );
}

/// No payload ran: the marker it would set is not there, and nothing in
/// the page carries an event-handler attribute or a script that is not
/// kha's own.
fn assert_not_pwned(b: &Browser) {
    let v = b.js(
        "return {
            pwned: typeof window.__pwned,
            handlers: [...document.querySelectorAll('*')]
                .filter(e => [...e.attributes].some(a => /^on/i.test(a.name)))
                .map(e => e.outerHTML.slice(0, 200)),
            scripts: [...document.scripts]
                .filter(s => !s.src || !new URL(s.src).pathname.startsWith('/assets/'))
                .map(s => s.outerHTML.slice(0, 200)),
        };",
        vec![],
    );
    assert_eq!(
        v["pwned"],
        "undefined",
        "a payload ran on {}",
        b.current_url()
    );
    assert_eq!(
        v["handlers"],
        json!([]),
        "event handlers in {}",
        b.current_url()
    );
    assert_eq!(
        v["scripts"],
        json!([]),
        "foreign scripts in {}",
        b.current_url()
    );
}

/// The harness itself: chromium started by chromedriver reads a real
/// control node's page, runs script in it, takes a screenshot and
/// emulates a dark colour scheme.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn the_browser_reads_a_real_control_node() {
    let c = Fixture::new().start();
    let b = Browser::start();
    b.goto(&format!("{}/healthz", c.http_url()));
    assert_eq!(b.text("body").trim(), "ok");
    assert_eq!(b.js("return 6 * 7;", vec![]), json!(42));
    let shot = b.path().join("healthz.png");
    b.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert_eq!(
        b.js(
            "return matchMedia('(prefers-color-scheme: dark)').matches",
            vec![]
        ),
        json!(false)
    );
    b.cdp(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    assert_eq!(
        b.js(
            "return matchMedia('(prefers-color-scheme: dark)').matches",
            vec![]
        ),
        json!(true)
    );
    drop(b);
    let dark = Browser::start_with(BrowserOpts {
        dark: true,
        ..Default::default()
    });
    dark.goto(&format!("{}/healthz", c.http_url()));
    assert_eq!(
        dark.js(
            "return matchMedia('(prefers-color-scheme: dark)').matches",
            vec![]
        ),
        json!(true)
    );
}

/// A running job's page shows lines as they are printed and its state
/// flips to passed without a reload; the build and project pages open at
/// the same time follow along, and a new build appears on the project page.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn a_running_job_is_shown_live_on_its_job_build_and_project_pages() {
    const TICKS: u32 = 80;
    let repo = script_repo(&format!(
        "sleep 1\nfor i in $(seq 1 {TICKS}); do echo \"tick $i\"; sleep 0.25; done\n"
    ));
    let c = cluster(&repo);
    let id = c.trigger("demo", None);
    let job = first_job(&c, id);
    wait_job_state(&c, id, "running");
    let base = c.http_url();

    let b = Browser::start();
    b.goto(&format!("{base}/jobs/{job}"));
    wait_log_ready(&b);
    mark_page(&b);
    let job_tab = b.tab();

    // Lines appear while the job still runs.
    let tick = |b: &Browser| -> Option<u32> {
        visible_lines(b)
            .iter()
            .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
            .max()
    };
    let first = b.wait_js(
        "a tick while the job runs",
        LOAD,
        "const t = [...document.querySelectorAll('#log .line')].map(l => l.textContent)
            .filter(t => /tick \\d+/.test(t));
         const s = document.querySelector('#job').dataset.state;
         return t.length > 0 && s === 'running' ? t.length : null;",
    );
    let seen = tick(&b).unwrap();
    assert!(
        seen < TICKS,
        "tick {seen} of {TICKS} seen first ({first} lines): the page should show the log while it grows"
    );
    b.wait_js(
        "more ticks",
        LOAD,
        &format!(
            "return [...document.querySelectorAll('#log .line')]
                .some(l => /tick (\\d+)/.test(l.textContent) && +RegExp.$1 > {seen});"
        ),
    );

    // The build and project pages, opened while the job runs.
    b.new_tab();
    b.goto(&format!("{base}/builds/{id}"));
    b.wait_css("#build", LOAD);
    assert_ne!(
        b.attr("#build", "data-state").as_deref(),
        Some("passed"),
        "the build page must open before the build ends"
    );
    mark_page(&b);
    let build_tab = b.tab();
    b.new_tab();
    b.goto(&format!("{base}/projects/demo"));
    b.wait_css(&format!("#history tr[data-build=\"{id}\"]"), LOAD);
    mark_page(&b);
    let project_tab = b.tab();

    b.switch_to(&job_tab);
    // …and the state flips by itself.
    b.wait_js(
        "the job page to say passed",
        BUILD,
        "return document.querySelector('#job').dataset.state === 'passed'",
    );
    assert!(
        b.text("#job").to_lowercase().contains("passed"),
        "{}",
        b.text("#job")
    );
    assert_not_reloaded(&b);
    let want: Vec<String> = (1..=TICKS).map(|i| format!("tick {i}")).collect();
    let lines: Vec<String> = viewer_lines(&b)
        .into_iter()
        .filter(|l| l.starts_with("tick "))
        .collect();
    assert_eq!(lines, want, "every tick once, in order");
    assert_eq!(page_log_bytes(&b), c.log(job));

    // The build page followed.
    b.switch_to(&build_tab);
    b.wait_js(
        "the build page to say passed",
        LOAD,
        "return document.querySelector('#build').dataset.state === 'passed'",
    );
    let row = format!("#jobs tr[data-job=\"{job}\"] .state");
    b.wait_js(
        "the job's row to say passed",
        LOAD,
        &format!(
            "const e = document.querySelector({}); return e && /passed/i.test(e.innerText);",
            json!(row)
        ),
    );
    assert_not_reloaded(&b);

    // The project page followed, and shows a new build when one starts.
    b.switch_to(&project_tab);
    let state = format!("#history tr[data-build=\"{id}\"] .state");
    b.wait_js(
        "the project page's history to say passed",
        LOAD,
        &format!(
            "const e = document.querySelector({}); return e && /passed/i.test(e.innerText);",
            json!(state)
        ),
    );
    let second = c.trigger("demo", None);
    b.wait_css(&format!("#history tr[data-build=\"{second}\"]"), LOAD);
    assert_not_reloaded(&b);
}

/// The log stream is cut mid-job by restarting the control node: the page
/// resumes by itself, and what it holds is the stored log byte for byte.
/// The job prints ten lines and then waits for a file the test creates
/// once the page shows them, so the job is still running then however
/// long the browser takes to start; the other seventy lines are printed
/// while the control node is down and restarting.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn a_job_page_resumes_after_the_control_node_restarts() {
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("go");
    let line = "printf 'line %d é \\033[32mgreen\\033[0m\\n' $i";
    let repo = script_repo(&format!(
        "for i in $(seq 1 10); do {line}; done\n\
         n=0; while [ ! -e '{gate}' ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done\n\
         for i in $(seq 11 80); do {line}; sleep 0.05; done\n",
        gate = gate.display()
    ));
    let mut c = cluster(&repo);
    let id = c.trigger("demo", None);
    let job = first_job(&c, id);
    wait_job_state(&c, id, "running");
    let b = Browser::start();
    b.goto(&format!("{}/jobs/{job}", c.http_url()));
    wait_log_ready(&b);
    mark_page(&b);
    b.wait_js(
        "line 10",
        LOAD,
        "return [...document.querySelectorAll('#log .line')].some(l => /line 10 /.test(l.textContent))",
    );
    assert_eq!(b.attr("#job", "data-state").as_deref(), Some("running"));

    std::fs::write(&gate, b"").unwrap();
    c.control.as_mut().unwrap().kill9();
    c.start_control();

    b.wait_js(
        "the job page to say passed after the restart",
        BUILD,
        "return document.querySelector('#job').dataset.state === 'passed'",
    );
    assert_not_reloaded(&b);
    let stored = c.log(job);
    let served = http_get(&c.http_url(), &format!("/jobs/{job}/log.txt"));
    assert_eq!(served.status, 200);
    assert_eq!(served.body, stored, "log.txt is the stored log");
    // Bytes can still be on their way after the state flipped.
    b.wait_js(
        "the page to hold the whole log",
        LOAD,
        &format!("return window.khaLog.bytes().length >= {}", stored.len()),
    );
    let got = page_log_bytes(&b);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&stored),
        "no gap, no repeat"
    );
    assert_eq!(got, stored);
    let lines: Vec<String> = viewer_lines(&b)
        .into_iter()
        .filter(|l| l.starts_with("line "))
        .collect();
    let want: Vec<String> = (1..=80).map(|i| format!("line {i} é green")).collect();
    assert_eq!(lines, want, "each line once, colours as styles not text");
}

/// Travis folds collapse and expand (click and keyboard), colours are
/// styles, a `\r` progress line shows its last state, markers are hidden.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn folds_collapse_and_expand_and_the_log_looks_as_in_a_terminal() {
    let repo = script_repo(concat!(
        "echo travis_fold:start:deps\n",
        "echo installing deps\n",
        "echo deps installed\n",
        "echo travis_fold:end:deps\n",
        "printf '\\033[31mred text\\033[0m plain\\n'\n",
        "printf 'progress 10%%\\rprogress 100%%\\n'\n",
        "echo the end\n",
    ));
    let c = cluster(&repo);
    let id = c.trigger("demo", None);
    let job = first_job(&c, id);
    assert_eq!(c.wait_build(id, BUILD)["state"], "passed");
    let b = Browser::start();
    b.goto(&format!("{}/jobs/{job}", c.http_url()));
    wait_log_ready(&b);

    let fold = ".fold[data-fold=\"deps\"]";
    b.wait_css(fold, LOAD);
    assert_eq!(b.attr(fold, "aria-expanded").as_deref(), Some("false"));
    let shown = |b: &Browser| visible_lines(b).iter().any(|l| l == "installing deps");
    assert!(
        !shown(&b),
        "a finished fold is collapsed: {:?}",
        visible_lines(&b)
    );
    assert!(
        !visible_lines(&b).iter().any(|l| l.contains("travis_fold")),
        "fold markers are not shown as text: {:?}",
        visible_lines(&b)
    );
    b.click(fold);
    b.wait_js(
        "the fold to open",
        LOAD,
        &format!(
            "return document.querySelector({}).getAttribute('aria-expanded') === 'true'",
            json!(fold)
        ),
    );
    assert!(
        shown(&b),
        "an open fold shows its lines: {:?}",
        visible_lines(&b)
    );
    b.click(fold);
    b.wait_js(
        "the fold to close",
        LOAD,
        &format!(
            "return document.querySelector({}).getAttribute('aria-expanded') === 'false'",
            json!(fold)
        ),
    );
    assert!(!shown(&b));
    // The keyboard does what a click does.
    b.send_keys(fold, "\u{E007}");
    b.wait_js(
        "Enter to open the fold",
        LOAD,
        &format!(
            "return document.querySelector({}).getAttribute('aria-expanded') === 'true'",
            json!(fold)
        ),
    );
    assert!(shown(&b));

    let lines = visible_lines(&b);
    assert!(lines.iter().any(|l| l == "red text plain"), "{lines:?}");
    let red = b.js(
        "const s = [...document.querySelectorAll('#log .line .txt span')]
            .find(s => s.textContent === 'red text');
         if (!s) return null;
         return { cls: s.className, color: getComputedStyle(s).color,
                  plain: getComputedStyle(s.closest('.txt')).color };",
        vec![],
    );
    assert!(
        red["cls"].as_str().unwrap_or_default().contains("fg-1"),
        "red is class fg-1: {red}"
    );
    assert_ne!(red["color"], red["plain"], "red text looks red: {red}");
    assert!(
        lines.iter().any(|l| l == "progress 100%"),
        "a \\r progress line shows its last state: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("progress 10%")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "the end"), "{lines:?}");
}

/// `#L300` scrolls to line 300 and highlights it; `#L310-L315` a range;
/// clicking a line number makes it the permalink.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn a_permalink_scrolls_to_and_highlights_its_lines() {
    let repo = script_repo("seq 1 500 | sed 's/^/row /'\n");
    let c = cluster(&repo);
    let id = c.trigger("demo", None);
    let job = first_job(&c, id);
    assert_eq!(c.wait_build(id, BUILD)["state"], "passed");
    let b = Browser::start();
    let url = format!("{}/jobs/{job}", c.http_url());
    let in_view = |n: usize| {
        format!(
            "const e = document.getElementById('L{n}');
             if (!e) return false;
             const r = e.getBoundingClientRect();
             return r.bottom > 0 && r.top < innerHeight && e.classList.contains('highlight');"
        )
    };
    b.goto(&format!("{url}#L300"));
    wait_log_ready(&b);
    b.wait_js("line 300 in view and highlighted", LOAD, &in_view(300));
    // Line 1 is the echoed command, so line 300 is row 299.
    assert!(b.text("#L300").contains("row 299"), "{}", b.text("#L300"));
    let far = b.js(
        "const e = document.getElementById('L1'); return !!e && e.getBoundingClientRect().bottom > 0;",
        vec![],
    );
    assert_eq!(far, json!(false), "the page scrolled away from the top");

    b.goto("about:blank");
    b.goto(&format!("{url}#L310-L315"));
    wait_log_ready(&b);
    for n in 310..=315 {
        b.wait_js(&format!("line {n} highlighted"), LOAD, &in_view(n));
    }
    for n in [309, 316] {
        let lit = b.js(
            &format!(
                "const e = document.getElementById('L{n}'); return !!e && e.classList.contains('highlight');"
            ),
            vec![],
        );
        assert_eq!(lit, json!(false), "line {n} is outside the range");
    }

    b.click("#L320 a.ln");
    b.wait_js("line 320 highlighted", LOAD, &in_view(320));
    assert!(b.current_url().ends_with("#L320"), "{}", b.current_url());
}

/// A 200,000-line (16 MB) log opens, renders only what is on screen, and
/// its last line can be reached (with the script, and without it through
/// the server's pages).
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn a_200000_line_log_opens_and_its_last_line_is_reachable() {
    let repo = script_repo(
        "awk 'BEGIN { for (i = 1; i <= 200000; i++) printf \"line %06d abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmn\\n\", i }'\n",
    );
    let c = cluster(&repo);
    let id = c.trigger("demo", None);
    let job = first_job(&c, id);
    assert_eq!(c.wait_build(id, BUILD)["state"], "passed");
    let last_text =
        "line 200000 abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmn";
    let b = Browser::start();
    b.goto(&format!("{}/jobs/{job}", c.http_url()));
    wait_log_ready(&b);
    // Line 1 is the echoed command.
    assert_eq!(b.js("return window.khaLog.lines()", vec![]), json!(200_001));
    assert_eq!(
        b.js("return window.khaLog.text(200001)", vec![]),
        json!(last_text)
    );
    let in_dom = b.js(
        "return document.querySelectorAll('#log .line').length",
        vec![],
    );
    assert!(
        in_dom.as_u64().unwrap() < 20_000,
        "only what is visible is rendered, not {in_dom} lines"
    );
    // Scroll to the end as a user would (the End key on the page, and
    // whatever scrolls inside the viewer).
    b.js(
        "for (const e of [document.scrollingElement, ...document.querySelectorAll('#log, #log *')])
            if (e && e.scrollHeight > e.clientHeight + 4) e.scrollTop = e.scrollHeight;",
        vec![],
    );
    b.wait_js(
        "the last line in view",
        LOAD,
        &format!(
            "const e = document.getElementById('L200001');
             if (!e) return false;
             const r = e.getBoundingClientRect();
             return r.bottom > 0 && r.top < innerHeight && e.textContent.includes({});",
            json!(last_text)
        ),
    );
    // Without JavaScript: the server's pages of 2,000 lines reach it too.
    let page = http_get(&c.http_url(), &format!("/jobs/{job}?from=199001"));
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        html.contains("id=\"L200001\""),
        "no line 200001 in the page"
    );
    assert!(html.contains(last_text));
    let first = http_get(&c.http_url(), &format!("/jobs/{job}")).text();
    assert!(
        first.matches("class=\"line\"").count() <= 2000,
        "the server renders at most 2,000 lines a page"
    );
}

/// The history pages by 25, newest first, and filters by branch; the
/// branches table shows each branch's head, last build and state.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn history_pages_and_filters_and_branches_show_their_last_build() {
    let repo = Repo::temp();
    repo.commit(
        &[(".travis.yml", "language: shell\nscript: true\n")],
        "master passes",
    );
    repo.git(&["checkout", "-q", "-b", "dev"]);
    let dev_head = repo.commit(
        &[(".travis.yml", "language: shell\nscript: false\n")],
        "dev fails",
    );
    repo.git(&["checkout", "-q", "master"]);
    let master_head = repo.git(&["rev-parse", "HEAD"]);
    let c = cluster(&repo);
    let dev: Vec<u64> = (0..3).map(|_| c.trigger("demo", Some("dev"))).collect();
    let master: Vec<u64> = (0..27).map(|_| c.trigger("demo", None)).collect();
    for &id in dev.iter().chain(&master) {
        c.wait_build(id, BUILD);
    }
    let mut all: Vec<u64> = dev.iter().chain(&master).copied().collect();
    all.sort_unstable_by(|a, b| b.cmp(a));

    let b = Browser::start();
    let base = c.http_url();
    let rows = |b: &Browser| -> Vec<u64> {
        b.js(
            "return [...document.querySelectorAll('#history tr[data-build]')].map(r => +r.dataset.build)",
            vec![],
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
    };
    b.goto(&format!("{base}/projects/demo"));
    b.wait_css("#history", LOAD);
    assert_eq!(rows(&b), all[..25].to_vec(), "page 1: the newest 25");
    // The pager is a real link.
    let next = b.js(
        "const a = [...document.querySelectorAll('a[href]')]
            .find(a => /[?&]page=2(&|#|$)/.test(a.getAttribute('href')));
         if (!a) return null;
         a.id = a.id || 'kha-test-next'; return '#' + a.id;",
        vec![],
    );
    let next = next.as_str().expect("a link to page 2").to_string();
    b.click(&next);
    b.wait_js(
        "page 2",
        LOAD,
        "return /[?&]page=2/.test(location.search) && !!document.querySelector('#history')",
    );
    assert_eq!(rows(&b), all[25..].to_vec(), "page 2: the 5 oldest");

    // Filtered by branch, with the form a user would use.
    b.goto(&format!("{base}/projects/demo"));
    b.wait_css(
        "form#filter select[name=branch] option[value=\"dev\"]",
        LOAD,
    );
    b.js(
        "const s = document.querySelector('form#filter select[name=branch]');
         s.value = 'dev'; s.form.submit();",
        vec![],
    );
    b.wait_js(
        "the dev filter",
        LOAD,
        "return /branch=dev/.test(location.search) && !!document.querySelector('#history')",
    );
    let mut want = dev.clone();
    want.reverse();
    assert_eq!(rows(&b), want, "only dev's builds, newest first");

    // The branches table: head, last build, state.
    b.goto(&format!("{base}/projects/demo"));
    b.wait_css("#branches tr[data-branch=\"dev\"]", LOAD);
    let row = |name: &str| b.text(&format!("#branches tr[data-branch=\"{name}\"]"));
    let dev_row = row("dev");
    assert!(
        b.text("#branches tr[data-branch=\"dev\"] .state")
            .to_lowercase()
            .contains("failed"),
        "{dev_row}"
    );
    assert!(dev_row.contains(&dev_head[..7]), "{dev_row}");
    assert!(dev_row.contains(&dev[2].to_string()), "{dev_row}");
    let master_row = row("master");
    assert!(
        b.text("#branches tr[data-branch=\"master\"] .state")
            .to_lowercase()
            .contains("passed"),
        "{master_row}"
    );
    assert!(master_row.contains(&master_head[..7]), "{master_row}");
    assert!(master_row.contains(&master[26].to_string()), "{master_row}");
    // Its link leads to that build's page.
    b.click(&format!(
        "#branches tr[data-branch=\"dev\"] a[href$=\"/builds/{}\"]",
        dev[2]
    ));
    b.wait_js(
        "dev's last build",
        LOAD,
        "const e = document.querySelector('#build'); return e && e.dataset.state === 'failed';",
    );
}

/// A job that needs a label no builder has waits in the queue, and the
/// queue page says why.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn the_queue_page_says_why_a_job_waits() {
    let repo = Repo::with_travis_yml("language: python\npython: \"3.13\"\nscript: true\n");
    let c = cluster(&repo);
    let id = c.trigger("demo", None);
    let job = first_job(&c, id);
    let b = Browser::start();
    b.goto(&format!("{}/queue", c.http_url()));
    let reason = format!("#queue tr[data-job=\"{job}\"] .reason");
    b.wait_css(&reason, LOAD);
    let text = b.text(&reason);
    assert!(
        text.contains("python=3.13") && text.contains("no connected builder"),
        "{text}"
    );
    let row = b.text(&format!("#queue tr[data-job=\"{job}\"]"));
    assert!(row.contains("demo"), "the row names the project: {row}");
    // The overview lists it as queued as well.
    b.goto(&format!("{}/", c.http_url()));
    b.wait_css("#queued", LOAD);
    assert!(b.text("#queued").contains("demo"), "{}", b.text("#queued"));
}

/// A project limited to one running job: the queue page says why its
/// second build waits, and its maintainer (here the admin) moves a build
/// to the front with the build page's "Run next".
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn the_queue_page_names_a_projects_limit_and_run_next_moves_a_build() {
    let repo = script_repo("sleep 60\n");
    let c = cluster(&repo);
    c.kha_ok(&["project", "set", "demo", "--max-running-jobs", "1"]);
    let first = c.trigger("demo", None);
    wait_job_state(&c, first, "running");
    let second = c.trigger("demo", None);
    let third = c.trigger("demo", None);
    let job = first_job(&c, third);
    let b = Browser::start();
    b.goto(&format!("{}/queue", c.http_url()));
    let reason = format!("#queue tr[data-job=\"{job}\"] .reason");
    b.wait_css(&reason, LOAD);
    let text = b.text(&reason);
    assert!(
        text.contains("demo runs at most 1 job at a time and 1 is running"),
        "{text}"
    );
    // Signed in, the build page offers "Run next".
    b.goto(&format!("{}/builds/{third}", c.http_url()));
    b.wait_css("#build", LOAD);
    b.click("a#signin");
    b.wait_css("#break-glass summary", LOAD);
    b.click("#break-glass summary");
    b.send_keys("#token", &c.admin_token());
    b.click("#login-token button");
    b.wait_css("form.prioritize", LOAD);
    b.click("form.prioritize button");
    // The form posts and comes back to the page: the audit log has it.
    wait_for("the prioritize recorded", LOAD, || {
        c.kha_ok(&["audit"])
            .contains("build.prioritize")
            .then_some(())
    });
    b.wait_css("#build", LOAD);
    assert!(b.try_text(".error-message").is_none());
    // The page shows the new priority; the second build keeps its own.
    b.wait_js(
        "the page to show the priority",
        LOAD,
        "const e = document.querySelector('#priority'); return !!e && e.textContent === 'run next';",
    );
    b.goto(&format!("{}/builds/{second}", c.http_url()));
    b.wait_css("#priority", LOAD);
    assert_eq!(b.text("#priority"), "default branch");
    // When the running build ends, the third goes before the second.
    c.kha_ok(&["build", "cancel", &first.to_string()]);
    wait_job_state(&c, third, "running");
    assert_eq!(c.build(second)["jobs"][0]["state"], "queued");
    for id in [second, third] {
        c.kha_ok(&["build", "cancel", &id.to_string()]);
    }
    assert_not_pwned(&b);
}

/// Branch names, a commit message and log lines that carry markup or
/// escape sequences meant to make markup are shown as text and never run,
/// on every page.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn markup_from_repositories_and_logs_is_shown_as_text_never_run() {
    const SCRIPT: &str = "<script>window.__pwned=1</script>";
    const IMG: &str = "\"><img src=x onerror=\"window.__pwned=1\">";
    // Valid git branch names (no spaces) that are markup all the same.
    let branches = [SCRIPT, "\"><img/src/onerror=window.__pwned=1>"];
    let ci = concat!(
        "printf '%s\\n' '<script>window.__pwned=1</script>'\n",
        "printf '%s\\n' '\"><img src=x onerror=\"window.__pwned=1\">'\n",
        // A colour around markup, an OSC 8 hyperlink to javascript:, and
        // a broken escape whose parameters hold markup.
        "printf '\\033[31m<img src=x onerror=window.__pwned=1>\\033[0m\\n'\n",
        "printf '\\033]8;;javascript:window.__pwned=1\\033\\\\link\\033]8;;\\033\\\\\\n'\n",
        "printf '\\033[38;2;1;2;3\"><img src=x onerror=window.__pwned=1>m after\\n'\n",
    );
    let repo = Repo::temp();
    let message = format!("{SCRIPT} {IMG}");
    repo.commit(
        &[
            (".travis.yml", "language: shell\nscript: sh ci.sh\n"),
            ("ci.sh", ci),
        ],
        &message,
    );
    for br in branches {
        repo.git(&["branch", br]);
    }
    let c = cluster(&repo);
    let mut builds = vec![c.trigger("demo", None)];
    for br in branches {
        builds.push(c.trigger("demo", Some(br)));
    }
    let jobs: Vec<u64> = builds.iter().map(|&id| first_job(&c, id)).collect();
    for &id in &builds {
        assert_eq!(c.wait_build(id, BUILD)["state"], "passed");
    }
    let base = c.http_url();

    // The server's HTML never carries the markup itself.
    for path in [
        "/".to_string(),
        "/projects/demo".into(),
        format!("/builds/{}", builds[0]),
        format!("/builds/{}", builds[1]),
        format!("/jobs/{}", jobs[0]),
    ] {
        let html = http_get(&base, &path).text();
        for bad in [
            "<script>window.__pwned",
            "<img src=x",
            "<img/src",
            "javascript:",
        ] {
            assert!(!html.contains(bad), "{path} carries {bad:?} as markup");
        }
    }

    let b = Browser::start();
    // The log: every payload a line of text.
    b.goto(&format!("{base}/jobs/{}", jobs[0]));
    wait_log_ready(&b);
    std::thread::sleep(Duration::from_millis(300));
    let lines = visible_lines(&b);
    for want in [
        SCRIPT,
        IMG,
        "<img src=x onerror=window.__pwned=1>",
        "link",
        // The broken sequence ends at its first final byte (`i`), as in a
        // terminal; the rest is text.
        "mg src=x onerror=window.__pwned=1>m after",
    ] {
        assert!(
            lines.iter().any(|l| l == want || l.ends_with(want)),
            "{want:?} is not shown as text: {lines:?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("javascript:")),
        "OSC sequences are dropped: {lines:?}"
    );
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#log a[href^=\"javascript\"]').length",
            vec![]
        ),
        json!(0)
    );
    assert_not_pwned(&b);

    // The build page: the commit message as text.
    b.goto(&format!("{base}/builds/{}", builds[0]));
    b.wait_css("#commit .message", LOAD);
    let shown = b.text("#commit .message");
    assert!(shown.contains(SCRIPT) && shown.contains(IMG), "{shown}");
    assert_not_pwned(&b);

    // The project page: both branch names as text.
    b.goto(&format!("{base}/projects/demo"));
    b.wait_css("#branches", LOAD);
    let shown = b.text("#branches");
    for br in branches {
        assert!(shown.contains(br), "branch {br:?} not shown: {shown}");
    }
    assert_not_pwned(&b);

    // Every other page, a branch filter made of markup, and not-found
    // pages that echo what was asked for.
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    (c as char).to_string()
                } else {
                    format!("%{c:02X}")
                }
            })
            .collect()
    };
    let mut pages = vec![
        "/".to_string(),
        "/queue".into(),
        "/builders".into(),
        format!("/projects/demo?branch={}", enc(branches[0])),
        format!("/projects/demo?branch={}", enc(branches[1])),
        format!("/projects/{}", enc(SCRIPT)),
        format!("/builds/{}", enc(IMG)),
        format!("/nowhere/{}", enc(SCRIPT)),
    ];
    for (id, job) in builds.iter().zip(&jobs) {
        pages.push(format!("/builds/{id}"));
        pages.push(format!("/jobs/{job}"));
    }
    for p in &pages {
        b.goto(&format!("{base}{p}"));
        if p.starts_with("/jobs/") {
            wait_log_ready(&b);
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_not_pwned(&b);
    }
}

/// An unknown project, build or job is a 404 page, not a panic; the JSON
/// API answers errors as JSON.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn unknown_pages_are_404_and_api_errors_are_json() {
    let repo = Repo::with_travis_yml("language: shell\nscript: true\n");
    let c = Fixture::new().project("demo", &repo.url()).start();
    let base = c.http_url();
    for path in [
        "/projects/nope",
        "/builds/999999",
        "/jobs/999999",
        "/jobs/999999/log.txt",
        "/badge/nope.svg",
        "/no/such/page",
    ] {
        let r = http_get(&base, path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        if !path.ends_with(".txt") && !path.ends_with(".svg") {
            assert!(
                r.header("content-type")
                    .unwrap_or_default()
                    .starts_with("text/html"),
                "{path}: {:?}",
                r.headers
            );
            assert!(
                r.text().contains("<h1>Not found</h1>"),
                "{path}: {}",
                r.text()
            );
        }
    }
    let r = http_get(&base, "/builds/not-a-number");
    assert!(
        r.status == 404 || r.status == 400,
        "a malformed id is the client's mistake: {}",
        r.status
    );

    let error = |r: &Response, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with("application/json"),
            "{:?}",
            r.headers
        );
        let v: Value = r.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    };
    error(&http_get(&base, "/api/v1/projects/nope"), 404, "not_found");
    error(&http_get(&base, "/api/v1/builds/999999"), 404, "not_found");
    error(&http_get(&base, "/api/v1/jobs/999999"), 404, "not_found");
    error(
        &http_get(&base, "/api/v1/jobs/999999/log"),
        404,
        "not_found",
    );
    let body = br#"{"branch":"master","force":true}"#;
    let r = http_request(
        &base,
        "POST",
        "/api/v1/projects/demo/builds",
        &[("Content-Type", "application/json")],
        body,
    );
    error(&r, 401, "unauthenticated");
    let r = http_request(
        &base,
        "POST",
        "/api/v1/projects/demo/builds",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer not-the-token"),
        ],
        body,
    );
    assert!(r.status == 401 || r.status == 403, "{}", r.text());
    // The project exists: reading it is open.
    let ok = http_get(&base, "/api/v1/projects/demo");
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["name"], "demo", "{}", ok.text());

    // What a person sees.
    let b = Browser::start();
    b.goto(&format!("{base}/projects/nope"));
    assert_eq!(b.text("h1"), "Not found");
    assert!(
        b.text("main").contains("nope"),
        "it says what was not found"
    );
    b.goto(&format!("{base}/jobs/999999"));
    assert_eq!(b.text("h1"), "Not found");
    // Still alive after all that.
    assert_eq!(http_get(&base, "/healthz").status, 200);
}

/// The README's screenshots (`docs/screenshots/*.png`, 1280×800): a small
/// cluster with passing, failing, running and waiting builds and a folded,
/// coloured log, photographed by the same browser the tests use. Run it by
/// hand when the UI changes:
/// `cargo test -p kha-tests --test web -- --ignored make_the_readme_screenshots`.
#[test]
#[ignore = "writes docs/screenshots: run by hand with --ignored"]
fn make_the_readme_screenshots() {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    let ci = concat!(
        "echo travis_fold:start:install\n",
        "printf '$ cargo fetch\\n'\n",
        "printf '\\033[1;32m  Downloaded\\033[0m 142 crates (14.2 MB) in 1.91s\\n'\n",
        "echo travis_fold:end:install\n",
        "for c in kha-core kha-proto kha-control kha-builder; do printf '\\033[1;32m   Compiling\\033[0m %s v0.1.0\\n' $c; sleep 0.05; done\n",
        "printf '\\033[1;32m    Finished\\033[0m test profile [unoptimized + debuginfo] in 41.07s\\n'\n",
        "printf 'running 212 tests\\n'\n",
        "for i in $(seq 1 12); do printf 'test state::tests::transition_%02d ... \\033[32mok\\033[0m\\n' $i; done\n",
        "printf 'test travis::tests::matrix_with_exclude ... \\033[33mignored\\033[0m\\n'\n",
        "printf '\\ntest result: \\033[32mok\\033[0m. 211 passed; 0 failed; 1 ignored\\n'\n",
        "if [ \"$SUITE\" = slow ]; then sleep 600; fi\n",
    );
    let kha = Repo::temp();
    kha.commit(
        &[
            (
                ".travis.yml",
                "language: shell\nenv:\n  - SUITE=unit\n  - SUITE=e2e\nscript: sh ci.sh\n",
            ),
            ("ci.sh", ci),
        ],
        "scheduler: fair picks across projects",
    );
    let webapp = Repo::temp();
    webapp.commit(
        &[(
            ".travis.yml",
            "language: shell\nscript:\n  - echo building\n  - npm test\n",
        )],
        "Checkout: pay with a saved card",
    );
    let slow = Repo::temp();
    slow.commit(
        &[
            (
                ".travis.yml",
                "language: shell\nenv: SUITE=slow\nscript: sh ci.sh\n",
            ),
            ("ci.sh", ci),
        ],
        "docs: the quickstart in two commands",
    );
    let py = Repo::with_travis_yml(
        "language: python\npython:\n  - \"3.12\"\n  - \"3.13\"\nscript: pytest\n",
    );
    let c = Fixture::new()
        .project("kha", &kha.url())
        .project("webapp", &webapp.url())
        .project("handbook", &slow.url())
        .project("pylib", &py.url())
        .host_builder_with("builder-1", 2, &["--label", "python=3.12"])
        .host_builder("builder-2", 2)
        .start();
    let passed = c.trigger("kha", None);
    c.wait_build(passed, BUILD);
    let failed = c.trigger("webapp", None);
    c.wait_build(failed, BUILD);
    let second = c.trigger("kha", None);
    c.wait_build(second, BUILD);
    let running = c.trigger("handbook", None);
    wait_job_state(&c, running, "running");
    let waiting = c.trigger("pylib", None);
    wait_for("pylib's 3.12 job to finish", BUILD, || {
        let b = c.build(waiting);
        b["jobs"]
            .as_array()?
            .iter()
            .any(|j| j["state"] == "passed" || j["state"] == "failed")
            .then_some(())
    });
    let job = first_job(&c, passed);
    let base = c.http_url();
    let shots = [
        ("overview", "/".to_string()),
        ("project", "/projects/kha".into()),
        ("build", format!("/builds/{passed}")),
        ("job", format!("/jobs/{job}")),
        ("builders", "/builders".into()),
        ("queue", "/queue".into()),
    ];
    for dark in [false, true] {
        let b = Browser::start_with(BrowserOpts {
            width: 1280,
            height: 800,
            dark,
        });
        // The window's size includes what headless chromium keeps for its
        // own frame: fix the page's viewport itself at 1280×800.
        b.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
        );
        for (name, path) in &shots {
            if dark && *name != "job" && *name != "overview" {
                continue;
            }
            b.goto(&format!("{base}{path}"));
            if path.starts_with("/jobs/") {
                wait_log_ready(&b);
                // The fold open, to show both.
                b.click(".fold[data-fold=\"install\"]");
            }
            std::thread::sleep(Duration::from_millis(500));
            let file = if dark {
                format!("{name}-dark.png")
            } else {
                format!("{name}.png")
            };
            b.screenshot(&out.join(&file));
            eprintln!("wrote {}", out.join(&file).display());
        }
    }
}

/// Reading needs nothing; the buttons need the admin token. Signed in with
/// it, a person cancels a running build, restarts it and drains a builder
/// from the pages, and each page shows the change without a reload.
#[cfg_attr(kha_skip_browser, ignore = "no chromium-driver: browser tests skipped")]
#[test]
fn signed_in_with_the_admin_token_the_buttons_cancel_restart_and_drain() {
    let repo = script_repo("echo started; sleep 60\n");
    let c = cluster(&repo);
    let id = c.trigger("demo", None);
    wait_job_state(&c, id, "running");
    let b = Browser::start();
    let page = format!("{}/builds/{id}", c.http_url());
    b.goto(&page);
    b.wait_css("#build", LOAD);
    assert!(
        b.try_text("form.cancel").is_none(),
        "no buttons for a reader who has not signed in"
    );

    // A wrong token is refused and says so; the right one brings the
    // person back to the page they came from.
    // The admin token is the break-glass way in, folded away below the
    // password form.
    b.click("a#signin");
    b.wait_css("#break-glass summary", LOAD);
    b.click("#break-glass summary");
    b.send_keys("#token", "not-the-token");
    b.click("#login-token button");
    b.wait_css(".error-message", LOAD);
    b.send_keys("#token", &c.admin_token());
    b.click("#login-token button");
    b.wait_css("form.cancel", LOAD);
    assert!(
        b.current_url().ends_with(&format!("/builds/{id}")),
        "{}",
        b.current_url()
    );

    b.click("form.cancel button");
    b.wait_js(
        "the build to be canceled",
        BUILD,
        "const e = document.querySelector('#build'); return e && e.dataset.state === 'canceled';",
    );
    assert_eq!(c.build(id)["state"], "canceled");

    b.wait_css("form.restart", LOAD);
    b.click("form.restart button");
    wait_for("the restarted job to run", BUILD, || {
        let build = c.build(id);
        (build["jobs"][0]["state"] == "running" && build["jobs"][0]["epoch"].as_u64() >= Some(2))
            .then_some(())
    });
    b.wait_js(
        "the page to show the build running again",
        LOAD,
        "const e = document.querySelector('#build'); return e && e.dataset.state === 'running';",
    );

    // Drain the builder from the builders page; the page says so.
    let builder = c.builders[0].id();
    b.goto(&format!("{}/builders", c.http_url()));
    let row = format!("#builders tr[data-builder=\"{builder}\"]");
    b.wait_css(&format!("{row} form.drain"), LOAD);
    b.click(&format!("{row} form.drain button"));
    b.wait_js(
        "the builder to show as draining",
        LOAD,
        &format!(
            "const e = document.querySelector('{} .state'); return !!e && e.textContent.includes('draining');",
            row.replace('\'', "\\'")
        ),
    );
    assert_eq!(c.kha_json(&["builder", "list"])[0]["state"], "draining");

    // Signing out takes the buttons away again.
    b.submit("form.logout button");
    b.goto(&page);
    b.wait_css("#build", LOAD);
    assert!(b.try_text("form.cancel").is_none() && b.try_text("form.restart").is_none());
    c.kha_ok(&["build", "cancel", &id.to_string()]);
    assert_not_pwned(&b);
}
