//! Travis's own spec cases, as tables: travis-conditions'
//! `spec/v1/parser_spec.rb` and `spec/v1/parser/*_spec.rb` (the trees, as
//! s-expressions written the way the specs write them) and
//! `spec/v1/eval_spec.rb` (results against the spec's data); and the
//! real-world conditions of `spec/v1/fixtures/{passes,failures}.txt`
//! (stored in `testdata/conditions/`, see its README).

use super::{eval, parse, Data, Value};

const PARSES: &[(&str, &str)] = &[
    // parser_spec.rb
    ("1=1", r#"[:eq, [:val, "1"], [:val, "1"]]"#),
    ("true=true", r#"[:eq, [:val, "true"], [:val, "true"]]"#),
    (
        "true!=false",
        r#"[:not_eq, [:val, "true"], [:val, "false"]]"#,
    ),
    ("1 = 1", r#"[:eq, [:val, "1"], [:val, "1"]]"#),
    ("type = foo", r#"[:eq, [:var, :type], [:val, "foo"]]"#),
    ("(type = foo)", r#"[:eq, [:var, :type], [:val, "foo"]]"#),
    (
        "type = foo OR type = bar",
        r#"[:or, [:eq, [:var, :type], [:val, "foo"]], [:eq, [:var, :type], [:val, "bar"]]]"#,
    ),
    (
        "type = foo OR type = bar OR type = baz",
        r#"[:or, [:or, [:eq, [:var, :type], [:val, "foo"]], [:eq, [:var, :type], [:val, "bar"]]], [:eq, [:var, :type], [:val, "baz"]]]"#,
    ),
    (
        "type = foo AND type = bar OR type = baz",
        r#"[:or, [:and, [:eq, [:var, :type], [:val, "foo"]], [:eq, [:var, :type], [:val, "bar"]]], [:eq, [:var, :type], [:val, "baz"]]]"#,
    ),
    (
        "type = foo OR type = bar AND type = baz",
        r#"[:or, [:eq, [:var, :type], [:val, "foo"]], [:and, [:eq, [:var, :type], [:val, "bar"]], [:eq, [:var, :type], [:val, "baz"]]]]"#,
    ),
    (
        "type = foo AND type = bar AND type = baz",
        r#"[:and, [:and, [:eq, [:var, :type], [:val, "foo"]], [:eq, [:var, :type], [:val, "bar"]]], [:eq, [:var, :type], [:val, "baz"]]]"#,
    ),
    (
        "(type = foo OR type = bar) AND type = baz",
        r#"[:and, [:or, [:eq, [:var, :type], [:val, "foo"]], [:eq, [:var, :type], [:val, "bar"]]], [:eq, [:var, :type], [:val, "baz"]]]"#,
    ),
    (
        "type = foo AND (type = bar OR type = baz)",
        r#"[:and, [:eq, [:var, :type], [:val, "foo"]], [:or, [:eq, [:var, :type], [:val, "bar"]], [:eq, [:var, :type], [:val, "baz"]]]]"#,
    ),
    (
        "type = foo AND (type = bar OR type = baz) AND type = buz",
        r#"[:and, [:and, [:eq, [:var, :type], [:val, "foo"]], [:or, [:eq, [:var, :type], [:val, "bar"]], [:eq, [:var, :type], [:val, "baz"]]]], [:eq, [:var, :type], [:val, "buz"]]]"#,
    ),
    (
        "(type = foo AND (type = bar OR type = baz)) OR type = buz",
        r#"[:or, [:and, [:eq, [:var, :type], [:val, "foo"]], [:or, [:eq, [:var, :type], [:val, "bar"]], [:eq, [:var, :type], [:val, "baz"]]]], [:eq, [:var, :type], [:val, "buz"]]]"#,
    ),
    (
        "NOT type = foo",
        r#"[:not, [:eq, [:var, :type], [:val, "foo"]]]"#,
    ),
    (
        "NOT type = foo OR type = bar",
        r#"[:or, [:not, [:eq, [:var, :type], [:val, "foo"]]], [:eq, [:var, :type], [:val, "bar"]]]"#,
    ),
    (
        "type = foo OR NOT type = bar",
        r#"[:or, [:eq, [:var, :type], [:val, "foo"]], [:not, [:eq, [:var, :type], [:val, "bar"]]]]"#,
    ),
    (
        "NOT (type = foo OR type = bar)",
        r#"[:not, [:or, [:eq, [:var, :type], [:val, "foo"]], [:eq, [:var, :type], [:val, "bar"]]]]"#,
    ),
    (
        "(NOT type = foo OR type = bar OR type = baz)",
        r#"[:or, [:or, [:not, [:eq, [:var, :type], [:val, "foo"]]], [:eq, [:var, :type], [:val, "bar"]]], [:eq, [:var, :type], [:val, "baz"]]]"#,
    ),
    (
        "NOT (type = foo OR type = bar) AND type = baz",
        r#"[:and, [:not, [:or, [:eq, [:var, :type], [:val, "foo"]], [:eq, [:var, :type], [:val, "bar"]]]], [:eq, [:var, :type], [:val, "baz"]]]"#,
    ),
    (
        "(type = foo OR type = bar) AND NOT type = baz",
        r#"[:and, [:or, [:eq, [:var, :type], [:val, "foo"]], [:eq, [:var, :type], [:val, "bar"]]], [:not, [:eq, [:var, :type], [:val, "baz"]]]]"#,
    ),
    (
        "NOT (NOT type = foo AND NOT (NOT type = bar OR NOT type = baz)) OR NOT type = buz",
        r#"[:or, [:not, [:and, [:not, [:eq, [:var, :type], [:val, "foo"]]], [:not, [:or, [:not, [:eq, [:var, :type], [:val, "bar"]]], [:not, [:eq, [:var, :type], [:val, "baz"]]]]]]], [:not, [:eq, [:var, :type], [:val, "buz"]]]]"#,
    ),
    // parser/term_spec.rb
    (r#"type = "foo""#, r#"[:eq, [:var, :type], [:val, "foo"]]"#),
    (r#""foo" = type"#, r#"[:eq, [:val, "foo"], [:var, :type]]"#),
    (
        "type = env(foo)",
        r#"[:eq, [:var, :type], [:call, :env, [[:val, "foo"]]]]"#,
    ),
    (
        "env(foo) = type",
        r#"[:eq, [:call, :env, [[:val, "foo"]]], [:var, :type]]"#,
    ),
    ("type = type", "[:eq, [:var, :type], [:var, :type]]"),
    (
        "env(foo) = env(bar)",
        r#"[:eq, [:call, :env, [[:val, "foo"]]], [:call, :env, [[:val, "bar"]]]]"#,
    ),
    ("tag =~ foo", r#"[:match, [:var, :tag], [:reg, "foo"]]"#),
    ("tag =~ /foo/", r#"[:match, [:var, :tag], [:reg, "foo"]]"#),
    (
        "tag =~ env(foo)",
        r#"[:match, [:var, :tag], [:reg, [:call, :env, [[:val, "foo"]]]]]"#,
    ),
    ("type IN (foo)", r#"[:in, [:var, :type], [[:val, "foo"]]]"#),
    (
        r#""foo" IN (foo)"#,
        r#"[:in, [:val, "foo"], [[:val, "foo"]]]"#,
    ),
    (
        "env(foo) IN (foo)",
        r#"[:in, [:call, :env, [[:val, "foo"]]], [[:val, "foo"]]]"#,
    ),
    ("type IS present", "[:is, [:var, :type], :present]"),
    (r#""foo" IS present"#, r#"[:is, [:val, "foo"], :present]"#),
    (
        "env(foo) IS present",
        r#"[:is, [:call, :env, [[:val, "foo"]]], :present]"#,
    ),
    (
        "sender = sender-foo",
        r#"[:eq, [:var, :sender], [:val, "sender-foo"]]"#,
    ),
    // parser/call_spec.rb
    ("env()", "[:call, :env, []]"),
    ("env(type)", "[:call, :env, [[:var, :type]]]"),
    (
        "env(env(env(foo)))",
        r#"[:call, :env, [[:call, :env, [[:call, :env, [[:val, "foo"]]]]]]]"#,
    ),
    (
        "env(foo, bar)",
        r#"[:call, :env, [[:val, "foo"], [:val, "bar"]]]"#,
    ),
    (
        r#"env("foo", "bar")"#,
        r#"[:call, :env, [[:val, "foo"], [:val, "bar"]]]"#,
    ),
    (
        "env('foo', 'bar')",
        r#"[:call, :env, [[:val, "foo"], [:val, "bar"]]]"#,
    ),
    // parser/regex_spec.rb, the reference's notes on parser_spec.rb
    (
        "branch =~ ^.*-bar$",
        r#"[:match, [:var, :branch], [:reg, "^.*-bar$"]]"#,
    ),
    (
        "branch =~ /^.* foo$/",
        r#"[:match, [:var, :branch], [:reg, "^.* foo$"]]"#,
    ),
    (
        r"tag =~ /a\/b (c)/ AND x",
        r#"[:and, [:match, [:var, :tag], [:reg, "a\\/b (c)"]], [:val, "x"]]"#,
    ),
    // keywords and functions in any case, attributes in lower case only
    (
        "BRANCH = master",
        r#"[:eq, [:val, "BRANCH"], [:val, "master"]]"#,
    ),
    (
        "branch not in (a,b) and fork is not true",
        r#"[:and, [:not_in, [:var, :branch], [[:val, "a"], [:val, "b"]]], [:is_not, [:var, :fork], :true]]"#,
    ),
    (
        "! fork || ENV(x) != y && draft",
        r#"[:or, [:not, [:var, :fork]], [:and, [:not_eq, [:call, :env, [[:val, "x"]]], [:val, "y"]], [:var, :draft]]]"#,
    ),
    ("type ~= x", r#"[:match, [:var, :type], [:reg, "x"]]"#),
    ("type !~ x", r#"[:not_match, [:var, :type], [:reg, "x"]]"#),
    ("type == x", r#"[:eq, [:var, :type], [:val, "x"]]"#),
    // line continuation
    (
        "branch = master \\\n  AND type = push",
        r#"[:and, [:eq, [:var, :branch], [:val, "master"]], [:eq, [:var, :type], [:val, "push"]]]"#,
    ),
    // quirks kept: a function name without `(` is consumed
    (
        "environment = x",
        r#"[:eq, [:val, "ironment"], [:val, "x"]]"#,
    ),
    ("type IN", "[:in, [:var, :type], nil]"),
];

#[test]
fn parser_spec() {
    for (src, want) in PARSES {
        match parse(src) {
            Ok(e) => assert_eq!(e.sexp(), *want, "{src}"),
            Err(e) => panic!("{src:?} does not parse: {e}"),
        }
    }
}

#[test]
fn parse_errors_say_where() {
    for (src, offset) in [
        ("branch = master AND", 19),
        ("branch IS master", 10),
        ("$TRAVIS_BRANCH = master", 0),
        ("type = (", 7),
        ("branch = \"master", 16),
        ("(branch = master", 16),
        ("branch = master)", 15),
    ] {
        match parse(src) {
            Ok(e) => panic!("{src:?} parses as {}", e.sexp()),
            Err(e) => assert_eq!(e.offset, offset, "{src:?}: {e}"),
        }
    }
}

/// eval_spec.rb's data: `{ branch: 'master', tag: tag, env: { foo: 'foo',
/// bar: false } }`.
fn spec_data(tag: Option<&str>) -> Data {
    let mut d = Data::default();
    d.set("branch", Value::Str("master".into()));
    d.set("tag", tag.map_or(Value::Nil, |t| Value::Str(t.into())));
    d.add_env_lines(&["foo=foo bar=false".to_string()]);
    d
}

const EVALS: &[(&str, bool)] = &[
    ("1", true),
    ("0", true),
    ("\"\"", true),
    ("true", true),
    ("TRUE", true),
    ("false", false),
    ("FALSE", false),
    ("NOT branch = foo AND (env(foo) = foo OR tag = wat)", true),
    ("branch = foo OR env(foo) = foo AND NOT tag = wat", true),
    ("branch = foo OR env(foo) = foo AND tag = wat", false),
    ("env(bar) = true", false),
    ("concat(foo, -, bar) = foo-bar", true),
    (
        "concat(branch, -, env(foo), -, env(bar)) = master-foo-false",
        true,
    ),
    ("1 = 1", true),
    ("true = true", true),
    ("branch = master", true),
    ("branch = foo", false),
    ("env(foo) = foo", true),
    ("ENV(foo) = foo", true),
    ("env(foo) = bar", false),
    ("branch != master", false),
    ("branch != foo", true),
    ("env(foo) != foo", false),
    ("env(foo) != bar", true),
    ("branch =~ ^ma.*$", true),
    ("branch =~ ^foo.*$", false),
    ("env(foo) =~ ^foo.*$", true),
    ("env(foo) =~ ^bar.*$", false),
    ("env(foo) =~ env(foo)", true),
    ("env(foo) =~ concat(\"^\", env(foo), \"$\")", true),
    ("branch in (foo, master, bar)", true),
    ("branch IN (foo, master, bar)", true),
    ("branch IN (foo, bar)", false),
    ("env(foo) IN (foo, bar, baz)", true),
    ("env(foo) IN (bar, baz)", false),
    ("branch not in (foo, master, bar)", false),
    ("branch NOT IN (foo, master, bar)", false),
    ("branch NOT IN (foo, bar)", true),
    ("env(foo) NOT IN (foo, bar, baz)", false),
    ("env(foo) NOT IN (bar, baz)", true),
    ("branch is present", true),
    ("branch IS present", true),
    ("branch IS PRESENT", true),
    ("tag IS present", false),
    ("env(foo) IS present", true),
    ("env(bar) IS present", false),
    ("env(baz) IS present", false),
    ("branch IS BLANK", false),
    ("branch IS blank", false),
    ("tag IS blank", true),
    ("env(foo) IS blank", false),
    ("env(bar) IS blank", true),
    ("env(baz) IS blank", true),
    ("branch is not present", false),
    ("branch IS NOT present", false),
    ("tag IS NOT present", true),
    ("branch IS NOT blank", true),
    ("tag IS NOT blank", false),
    ("env(foo) IS NOT present", false),
    ("env(bar) IS NOT blank", false),
    // beyond the spec: Ruby regex semantics
    ("branch =~ /^MASTER$/", false),
    ("branch =~ /(?i)^MASTER$/", true),
    ("branch =~ /^(?!dev)/", true),
    ("branch =~ ^(?!dev)x", false),
    ("branch =~ ast", true),
    ("tag !~ x", true),
    ("tag =~ x", false),
];

#[test]
fn eval_spec() {
    let data = spec_data(None);
    for (src, want) in EVALS {
        let got = parse(src).and_then(|e| eval(&e, &data));
        assert_eq!(got, Ok(*want), "{src}");
    }
    let semver = "tag =~ /^(0|[1-9]\\d*)(?:\\.(0|[1-9]\\d*))?(?:\\.(0|[1-9]\\d*))?(?:-([\\w.-]+))?(?:\\+([\\w.-]+))?$ AND type IN (push, api)/";
    let got = parse(semver).and_then(|e| eval(&e, &spec_data(Some("0.0.1"))));
    assert_eq!(got, Ok(false));
    // `env: ["foo=foo", "REPO=this"]`: REPO is a name, not the attribute.
    let mut d = spec_data(None);
    d.add_env_lines(&["REPO=this".to_string(), "THIS_REPO=this".to_string()]);
    for src in [
        "concat(branch, -, env(foo), -, env(REPO)) = master-foo-this",
        "concat(branch, -, env(foo), -, env(THIS_REPO)) = master-foo-this",
    ] {
        assert_eq!(parse(src).and_then(|e| eval(&e, &d)), Ok(true), "{src}");
    }
}

#[test]
fn booleans_given_as_strings() {
    let mut d = Data::default();
    d.set("sudo", Value::Str("true".into()));
    for src in [
        "sudo = true",
        "sudo != false",
        "sudo IS true",
        "sudo IS NOT false",
    ] {
        assert_eq!(parse(src).and_then(|e| eval(&e, &d)), Ok(true), "{src}");
    }
}

#[test]
fn evaluation_errors() {
    let d = spec_data(None);
    for src in [
        "tag =~ /(/",
        "branch =~ [",
        "type IN",
        "env(a, b) = c",
        "tag =~ env(nope)",
    ] {
        let r = parse(src).and_then(|e| eval(&e, &d));
        assert!(r.is_err(), "{src}: {r:?}");
    }
}

fn fixture(name: &str) -> Vec<&'static str> {
    let text = match name {
        "passes" => include_str!("../testdata/conditions/passes.txt"),
        _ => include_str!("../testdata/conditions/failures.txt"),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .collect()
}

/// conditions_spec.rb: every real condition in passes.txt parses.
#[test]
fn real_conditions_parse() {
    let passes = fixture("passes");
    assert!(passes.len() > 200, "{}", passes.len());
    let bad: Vec<String> = passes
        .iter()
        .filter_map(|c| parse(c).err().map(|e| format!("{c:?}: {e}")))
        .collect();
    assert!(
        bad.is_empty(),
        "{} do not parse:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// conditions_spec.rb: every condition in failures.txt is refused.
#[test]
fn real_mistakes_are_refused() {
    let fails = fixture("failures");
    assert!(fails.len() > 200, "{}", fails.len());
    let parsed: Vec<&str> = fails.iter().copied().filter(|c| parse(c).is_ok()).collect();
    assert!(
        parsed.is_empty(),
        "{} parse:\n{}",
        parsed.len(),
        parsed.join("\n")
    );
}
