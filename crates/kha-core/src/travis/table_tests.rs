//! Table tests: `(yaml, expected jobs)` for each rule, most of them the
//! examples of the Travis docs page that states the rule.

use super::*;

/// `k=v …` of each job's matrix values, `!` when allowed to fail,
/// `[stage]` when staged.
fn jobs_of(yaml: &str) -> Vec<String> {
    let cfg = parse(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let jobs = expand(&cfg, DEFAULT_MAX_JOBS).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    jobs.iter()
        .map(|j| {
            let mut s: Vec<String> = j.matrix.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if j.allow_failure {
                s.push("!".into());
            }
            if let Some(st) = &j.stage {
                s.push(format!("[{st}]"));
            }
            s.join(" ")
        })
        .collect()
}

fn check(table: &[(&str, &[&str])]) {
    for (yaml, want) in table {
        assert_eq!(jobs_of(yaml), *want, "\n{yaml}");
    }
}

fn plans(yaml: &str) -> Vec<JobPlan> {
    expand(&parse(yaml).unwrap(), DEFAULT_MAX_JOBS).unwrap()
}

fn plans_with(yaml: &str, files: &[&str]) -> Vec<JobPlan> {
    let opts = ExpandOptions {
        repo: RepoFacts::from_root_files(files.iter().copied()),
        ..ExpandOptions::default()
    };
    expand_with(&parse(yaml).unwrap(), &opts).unwrap().jobs
}

#[test]
fn matrix_expansion() {
    check(&[
        // Travis docs: Build Matrix, "Matrix Expansion": 2 × 2 × 2, the
        // first key varying slowest, env last whatever the file's order.
        (
            "env: [ISOLATED=true, ISOLATED=false]\nrvm: [2.5, 2.2]\ngemfile: [a, b]\n",
            &[
                "rvm=2.5 gemfile=a env=ISOLATED=true",
                "rvm=2.5 gemfile=a env=ISOLATED=false",
                "rvm=2.5 gemfile=b env=ISOLATED=true",
                "rvm=2.5 gemfile=b env=ISOLATED=false",
                "rvm=2.2 gemfile=a env=ISOLATED=true",
                "rvm=2.2 gemfile=a env=ISOLATED=false",
                "rvm=2.2 gemfile=b env=ISOLATED=true",
                "rvm=2.2 gemfile=b env=ISOLATED=false",
            ],
        ),
        // os, arch, dist multiply too; `ruby` is `rvm`.
        (
            "language: ruby\nruby: [3.0]\nos: [linux, osx]\ndist: [focal, jammy]\n",
            &[
                "os=linux dist=focal rvm=3.0",
                "os=linux dist=jammy rvm=3.0",
                "os=osx dist=focal rvm=3.0",
                "os=osx dist=jammy rvm=3.0",
            ],
        ),
        // travis-yml spec "arch on osx": arch is linux-only, the osx rows
        // collapse into one.
        (
            "os: [linux, osx]\narch: [amd64, arm64]\n",
            &["os=linux arch=amd64", "os=linux arch=arm64", "os=osx"],
        ),
        // Keys the language does not use are ignored (travis-yml spec
        // "matrix key unsupported by language").
        ("language: c\npython: [3.7, 3.8]\n", &[""]),
        (
            "language: c\ncompiler: [gcc, clang]\n",
            &["compiler=gcc", "compiler=clang"],
        ),
        // Versions keep their text (Travis docs: Using YAML as a build
        // configuration language, "Version numbers").
        (
            "language: python\npython: [3.10, 3.9]\n",
            &["python=3.10", "python=3.9"],
        ),
        (
            "language: erlang\notp_release: 26.0\n",
            &["otp_release=26.0"],
        ),
        // Duplicate values make one job.
        ("language: go\ngo: [1.x, 1.x]\n", &["go=1.x"]),
        // No matrix at all: one job.
        ("language: rust\n", &[""]),
    ]);
}

#[test]
fn env_forms() {
    check(&[
        ("env: A=1\n", &["env=A=1"]),
        ("env: [A=1, A=2 B=3]\n", &["env=A=1", "env=A=2 B=3"]),
        // A list in the list: one job exporting all of it.
        (
            "env:\n  - [A=1, B=2]\n  - C=3\n",
            &["env=A=1 B=2", "env=C=3"],
        ),
        (
            "env: {matrix: [A=1, A=2], global: G=1}\n",
            &["env=A=1", "env=A=2"],
        ),
        ("env: {jobs: [A=1, A=2]}\n", &["env=A=1", "env=A=2"]),
        // A mapping of variables is one job (travis-yml "env.jobs one hash").
        ("env: {A: 1, B: x y}\n", &["env=A=1 B=\"x y\""]),
        ("env:\n  - A: 1\n  - B: 2\n", &["env=A=1", "env=B=2"]),
        ("env:\n", &[""]),
    ]);
    // Travis docs: Environment Variables, "Global Variables": global in
    // every row, before the row's own.
    let p = plans(
        "env:\n  global:\n    - CAMPFIRE_TOKEN=abc123\n    - TIMEOUT=1000\n  matrix:\n    - USE_NETWORK=true\n    - USE_NETWORK=false\n",
    );
    assert_eq!(
        p[0].env,
        ["CAMPFIRE_TOKEN=abc123", "TIMEOUT=1000", "USE_NETWORK=true"]
    );
    assert_eq!(
        p[1].env,
        ["CAMPFIRE_TOKEN=abc123", "TIMEOUT=1000", "USE_NETWORK=false"]
    );
    // travis-yml spec "empty var on env.jobs overwriting env.global".
    let p = plans("env:\n  global:\n    - ONE: one\njobs:\n  include:\n    - env: ONE=\n");
    assert_eq!(p[0].env, ["ONE=one", "ONE="]);
    // Encrypted values are kept, encrypted, in their place.
    let cfg = parse("env:\n  global:\n    - secure: abcd\n    - A=1\n").unwrap();
    assert_eq!(
        cfg.env_global,
        [super::secure::env_line("abcd"), "A=1".into()]
    );
    assert!(cfg.diagnostics.is_empty());
    // Old callers' view: one line per job.
    let cfg = parse("env:\n  - [A=1, B=2]\n").unwrap();
    assert_eq!(cfg.env_matrix, ["A=1 B=2"]);
    assert_eq!(cfg.env_jobs, [vec!["A=1".to_string(), "B=2".to_string()]]);
}

#[test]
fn includes() {
    check(&[
        // Travis docs: Build Matrix, include-only matrix: 3 jobs, no extra
        // default job.
        (
            "language: python\njobs:\n  include:\n    - python: \"2.7\"\n      env: TEST_SUITE=suite_2_7\n    - python: \"3.8\"\n      env: TEST_SUITE=suite_3_8\n    - python: pypy\n      env: TEST_SUITE=suite_pypy\nscript: ./test.py $TEST_SUITE\n",
            &[
                "python=2.7 env=TEST_SUITE=suite_2_7",
                "python=3.8 env=TEST_SUITE=suite_3_8",
                "python=pypy env=TEST_SUITE=suite_pypy",
            ],
        ),
        // "Explicitly included jobs inherit the first value in the array".
        (
            "language: python\npython: ['3.8', '3.7', '2.7']\njobs:\n  include:\n    - python: '3.8'\n      env: EXTRA_TESTS=true\n    - python: '3.7'\n      env: EXTRA_TESTS=true\n    - env: X=1\n",
            &[
                "python=3.8",
                "python=3.7",
                "python=2.7",
                "python=3.8 env=EXTRA_TESTS=true",
                "python=3.7 env=EXTRA_TESTS=true",
                "python=3.8 env=X=1",
            ],
        ),
        // "Explicitly included jobs with only one element in the build
        // matrix": the includes replace it...
        (
            "language: python\npython: ['3.8']\njobs:\n  include:\n    - env: EXTRA_TESTS=true\n",
            &["python=3.8 env=EXTRA_TESTS=true"],
        ),
        // ... and a blank entry brings it back; `{}` and an empty item are
        // the same job, so one of them is dropped as a duplicate.
        (
            "language: python\npython: ['3.8']\njobs:\n  include:\n    - {}\n    -\n    - env: EXTRA_TESTS=true\n",
            &["python=3.8", "python=3.8 env=EXTRA_TESTS=true"],
        ),
        // `matrix:` is the older name of `jobs:`; a list means `include`;
        // one mapping is one include.
        ("matrix:\n  include:\n    - env: A=1\n", &["env=A=1"]),
        ("jobs:\n  - env: A=1\n  - env: A=2\n", &["env=A=1", "env=A=2"]),
        ("dist: trusty\njobs:\n  include:\n    env: FOO=foo\n", &["dist=trusty env=FOO=foo"]),
        // Given both, `matrix` is used.
        (
            "jobs:\n  include: [{env: J=1}]\nmatrix:\n  include: [{env: M=1}]\n",
            &["env=M=1"],
        ),
        // Includes without env take the first env entry (travis-yml
        // "jobs include inheriting env (legacy)").
        (
            "env: [A=1, A=2]\nrvm: [2.7]\njobs:\n  include:\n    - name: lint\n",
            &["rvm=2.7 env=A=1", "rvm=2.7 env=A=2", "rvm=2.7 env=A=1 name=lint"],
        ),
        // A job in another language does not inherit the root's version
        // key (travis-yml `without_unsupported`).
        (
            "language: python\npython: ['3.8', '3.9']\njobs:\n  include:\n    - language: node_js\n      node_js: 18\n",
            &["python=3.8", "python=3.9", "node_js=18"],
        ),
    ]);
    // The include's own commands replace the root's, the rest are shared.
    let p = plans(
        "language: shell\nscript: root\nbefore_script: prep\njobs:\n  include:\n    - script: own\n    - name: plain\n",
    );
    assert_eq!(p[0].phases.script, ["own"]);
    assert_eq!(p[0].phases.before_script, ["prep"]);
    assert_eq!(p[1].phases.script, ["root"]);
    assert_eq!(p[1].name.as_deref(), Some("plain"));
}

#[test]
fn excludes() {
    // Travis docs: Build Matrix, "Excluding Jobs": a partial entry drops
    // every job with those values (3 × 3 × 4 = 36, minus 3).
    let yaml = "language: ruby\nrvm: [1.9.3, 2.0.0, 2.1.0]\nenv: [DB=mongodb, DB=redis, DB=mysql]\ngemfile: [Gemfile, gemfiles/rails4.gemfile, gemfiles/rails31.gemfile, gemfiles/rails32.gemfile]\njobs:\n  exclude:\n    - rvm: 2.0.0\n      gemfile: Gemfile\n";
    let got = jobs_of(yaml);
    assert_eq!(got.len(), 33);
    assert!(!got
        .iter()
        .any(|j| j.starts_with("rvm=2.0.0 gemfile=Gemfile ")));
    assert_eq!(
        got.iter()
            .filter(|j| j.contains("gemfile=Gemfile "))
            .count(),
        6
    );

    // "Excluding jobs with env value": must match exactly.
    let base = "language: ruby\nrvm: [1.9.3, 2.0.0, 2.1.0]\nenv:\n  - DB=mongodb SUITE=all\n  - DB=mongodb SUITE=compact\n  - DB=redis\n  - DB=mysql\njobs:\n  exclude:\n";
    assert_eq!(
        jobs_of(&format!("{base}    - rvm: 1.9.3\n      env: DB=mongodb\n")).len(),
        12
    );
    assert_eq!(
        jobs_of(&format!(
            "{base}    - rvm: 1.9.3\n      env: SUITE=all DB=mongodb\n"
        ))
        .len(),
        12
    );
    let got = jobs_of(&format!(
        "{base}    - rvm: 1.9.3\n      env: DB=mongodb SUITE=all\n    - rvm: 1.9.3\n      env: DB=mongodb  SUITE=compact\n"
    ));
    assert_eq!(got.len(), 10);
    assert_eq!(got[0], "rvm=1.9.3 env=DB=redis");

    check(&[
        // Global env is set aside when matching (travis-yml spec "jobs
        // exclude with global env").
        (
            "language: python\npython: [3.7]\nenv:\n  global: [FOO=foo]\n  matrix: [ONE=one, TWO=two]\njobs:\n  exclude:\n    - env: TWO=two\n",
            &["python=3.7 env=ONE=one"],
        ),
        // Excludes apply to included jobs too.
        (
            "env: [A=1, A=2]\njobs:\n  include:\n    - env: A=3\n  exclude:\n    - env: A=3\n",
            &["env=A=1", "env=A=2"],
        ),
        // Keys kha keeps without acting on them match too.
        (
            "services: [redis]\nenv: [A=1, A=2]\njobs:\n  exclude:\n    - services: redis\n      env: A=1\n",
            &["env=A=2"],
        ),
        // Excluding the default stage by name.
        (
            "env: [A=1, A=2]\njobs:\n  exclude:\n    - stage: test\n      env: A=1\n",
            &["env=A=2"],
        ),
    ]);
    // An entry matching nothing is reported.
    let exp = expand_with(
        &parse("env: [A=1]\njobs:\n  exclude:\n    - env: B=1\n").unwrap(),
        &ExpandOptions::default(),
    )
    .unwrap();
    assert_eq!(exp.jobs.len(), 1);
    assert_eq!(exp.warnings.len(), 1);
    assert_eq!(exp.warnings[0].line, Some(4));
}

#[test]
fn allowed_failures() {
    check(&[
        // Travis docs: Building a Rust Project.
        (
            "language: rust\nrust: [stable, beta, nightly]\njobs:\n  allow_failures:\n    - rust: nightly\n  fast_finish: true\n",
            &["rust=stable", "rust=beta", "rust=nightly !"],
        ),
        // Allowed failures keep their place and number (travis-core
        // `Build::Matrix#expand_matrix`; see matrix/mod.rs, step 9).
        (
            "language: rust\nrust: [nightly, stable]\njobs:\n  allow_failures:\n    - rust: nightly\n",
            &["rust=nightly !", "rust=stable"],
        ),
        (
            "language: rust\nrust: [stable, nightly, beta]\njobs:\n  allow_failures:\n    - rust: nightly\n",
            &["rust=stable", "rust=nightly !", "rust=beta"],
        ),
        // Within stages too; the stages' order still comes first.
        (
            "language: rust\nrust: [nightly, stable]\njobs:\n  include:\n    - stage: deploy\n      rust: stable\n      name: d\n  allow_failures:\n    - rust: nightly\n",
            &["rust=nightly ! [test]", "rust=stable [test]", "rust=stable name=d [deploy]"],
        ),
        // By env only, the global env set aside.
        (
            "env:\n  global: [G=1]\n  jobs: [A=1, A=2]\njobs:\n  allow_failures:\n    - env: A=2\n",
            &["env=A=1", "env=A=2 !"],
        ),
        // Travis docs: Build Matrix, "allow_failures Examples": the global
        // variable written into the entry matches no job.
        (
            "language: ruby\nrvm: [2.0.0, 2.1.6]\nenv:\n  global: [SECRET_VAR1=SECRET1]\n  jobs: [SECRET_VAR2=SECRET2]\njobs:\n  allow_failures:\n    - env: SECRET_VAR1=SECRET1 SECRET_VAR2=SECRET2\n",
            &["rvm=2.0.0 env=SECRET_VAR2=SECRET2", "rvm=2.1.6 env=SECRET_VAR2=SECRET2"],
        ),
        // ... but global lines listed apart are tolerated (travis-yml
        // `matches_env?`).
        (
            "env:\n  global: [G=1]\n  jobs: [A=1, A=2]\njobs:\n  allow_failures:\n    - env: [G=1, A=1]\n",
            &["env=A=1 !", "env=A=2"],
        ),
        // Keys that only an include sets match too (travis-yml; the docs'
        // second example says otherwise, see `allow_failure_matches`).
        (
            "language: php\nphp: [5.6, 7.0]\njobs:\n  include:\n    - php: 7.0\n      env: KEY=VALUE\n  allow_failures:\n    - php: 7.0\n      env: KEY=VALUE\n",
            &["php=5.6", "php=7.0", "php=7.0 env=KEY=VALUE !"],
        ),
        // All keys must match.
        (
            "language: go\ngo: [1.x, tip]\nos: [linux, osx]\njobs:\n  allow_failures:\n    - go: tip\n      os: osx\n",
            &["os=linux go=1.x", "os=linux go=tip", "os=osx go=1.x", "os=osx go=tip !"],
        ),
        // `os` is linux when not given.
        (
            "language: go\ngo: [1.x, tip]\njobs:\n  allow_failures:\n    - os: linux\n      go: tip\n",
            &["go=1.x", "go=tip !"],
        ),
        // By name.
        (
            "jobs:\n  include:\n    - name: a\n    - name: b\n  allow_failures:\n    - name: a\n",
            &["name=a !", "name=b"],
        ),
    ]);
    // By branch: needs the branch being built.
    let cfg = parse("env: [A=1]\njobs:\n  allow_failures:\n    - branch: dev\n").unwrap();
    let on = |b: Option<&str>| {
        let opts = ExpandOptions {
            branch: b.map(str::to_string),
            ..ExpandOptions::default()
        };
        expand_with(&cfg, &opts).unwrap().jobs[0].allow_failure
    };
    assert!(on(Some("dev")));
    assert!(!on(Some("main")));
    assert!(!on(None));
    // The flag is exported too.
    let p = plans("language: rust\nrust: [nightly]\njobs:\n  allow_failures: [{rust: nightly}]\n");
    assert!(p[0]
        .builtin_env
        .contains(&("TRAVIS_ALLOW_FAILURE".into(), "true".into())));
}

#[test]
fn anchors_and_duplicates() {
    check(&[
        // Travis docs: Build Matrix, "Job Uniqueness and Duplicate Jobs".
        (
            "_shared_job: &shared_job\n  script: echo \"shared script config\"\njobs:\n  include:\n  - <<: *shared_job\n  - <<: *shared_job\n",
            &[""],
        ),
        (
            "_shared_job: &shared_job\n  script: echo \"shared script config\"\njobs:\n  include:\n  - name: Job 1\n    <<: *shared_job\n  - name: Job 2\n    <<: *shared_job\n",
            &["name=Job 1", "name=Job 2"],
        ),
        // Aliases of lists.
        (
            "language: erlang\n_versions: &otp [25.3, 26.2]\notp_release: *otp\n",
            &["otp_release=25.3", "otp_release=26.2"],
        ),
        // An include equal to a matrix row is dropped (travis-yml spec
        // "jobs include duplicate").
        (
            "env: FOO=foo\nrvm: [2.2]\njobs:\n  include:\n    - env: FOO=foo\n      rvm: 2.2\n",
            &["rvm=2.2 env=FOO=foo"],
        ),
    ]);
    let p = plans("_s: &s\n  script: [a, b]\njobs:\n  include:\n    - <<: *s\n      name: x\n");
    assert_eq!(p[0].phases.script, ["a", "b"]);
    // Private keys warn about nothing.
    assert!(parse("_x: {a: 1}\nlanguage: shell\n")
        .unwrap()
        .warnings
        .is_empty());
}

#[test]
fn stages() {
    check(&[
        // Travis docs: Build Stages; travis-yml `Stages`: jobs without a
        // stage take the previous one's, the first `test`; `stages:` sets
        // the order.
        (
            "language: go\ngo: [1.x, tip]\nstages: [test, deploy]\njobs:\n  include:\n    - stage: deploy\n      script: d\n    - script: e\n",
            &["go=1.x [test]", "go=tip [test]", "go=1.x [deploy]", "go=1.x [deploy]"],
        ),
        (
            "stages: [lint, test]\nenv: [A=1, A=2]\njobs:\n  include:\n    - stage: lint\n      script: l\n",
            &["env=A=1 [lint]", "env=A=1 [test]", "env=A=2 [test]"],
        ),
        // Without `stages:`, first appearance orders them.
        (
            "jobs:\n  include:\n    - stage: b\n      env: X=1\n    - stage: a\n      env: X=2\n    - stage: b\n      env: X=3\n",
            &["env=X=1 [b]", "env=X=3 [b]", "env=X=2 [a]"],
        ),
    ]);
    let exp = expand_with(
        &parse("stages: [test, build, unused]\njobs:\n  include:\n    - stage: build\n      script: b\n").unwrap(),
        &ExpandOptions::default(),
    )
    .unwrap();
    assert_eq!(exp.stages, ["build"]);
}

#[test]
fn limits() {
    // Travis's limit, 200 jobs, by default; configurable.
    let yaml = "language: python\npython: [a, b, c, d, e, f, g, h, i, j]\nenv: [A=1, A=2, A=3, A=4, A=5, A=6, A=7, A=8, A=9, A=10, A=11, A=12, A=13, A=14, A=15, A=16, A=17, A=18, A=19, A=20, A=21]\n";
    let cfg = parse(yaml).unwrap();
    let e = expand(&cfg, DEFAULT_MAX_JOBS).unwrap_err();
    assert!(
        e.message
            .contains("expands to 210 jobs (10 python × 21 env)"),
        "{e}"
    );
    assert!(e.message.contains("limit of 200"), "{e}");
    assert_eq!(expand(&cfg, 210).unwrap().len(), 210);
    // Excludes count: under the limit after them is fine.
    let ok = format!("{yaml}jobs:\n  exclude:\n    - python: a\n");
    assert_eq!(expand(&parse(&ok).unwrap(), 200).unwrap().len(), 189);
    // A product that would overflow is refused before any work.
    let values = (0..1000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = format!(
        "language: ruby\nos: [{values}]\narch: [{values}]\ndist: [{values}]\nrvm: [{values}]\ngemfile: [{values}]\njdk: [{values}]\nosx_image: [{values}]\n"
    );
    let e = expand(&parse(&yaml).unwrap(), DEFAULT_MAX_JOBS).unwrap_err();
    assert!(e.message.contains("more than 2^64"), "{e}");
}

/// (yaml, root files, install, script)
type DefaultsCase = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn language_defaults() {
    // Travis docs of each language.
    let table: &[DefaultsCase] = &[
        (
            "language: rust\n",
            &[],
            &["cargo build --verbose"],
            &["cargo build --verbose", "cargo test --verbose"],
        ),
        (
            "language: go\n",
            &[],
            &["go get -t ./..."],
            &["go test -v ./..."],
        ),
        (
            "language: go\ngobuild_args: -x\n",
            &["Makefile"],
            &["true"],
            &["make"],
        ),
        (
            "language: go\ngobuild_args: -x\n",
            &[],
            &["go get -t ./..."],
            &["go test -x ./..."],
        ),
        (
            "language: python\n",
            &["requirements.txt"],
            &["pip install -r requirements.txt"],
            &[langs::PYTHON_NO_SCRIPT],
        ),
        ("language: python\nscript: pytest\n", &[], &[], &["pytest"]),
        (
            "language: node_js\n",
            &["package.json"],
            &["npm install"],
            &["npm test"],
        ),
        (
            "language: node_js\n",
            &["package.json", "package-lock.json"],
            &["npm ci"],
            &["npm test"],
        ),
        (
            "language: node_js\n",
            &["package.json", "yarn.lock"],
            &["yarn"],
            &["yarn test"],
        ),
        (
            "language: ruby\n",
            &["Gemfile"],
            &["bundle install --jobs=3 --retry=3"],
            &["rake"],
        ),
        (
            "language: ruby\n",
            &["Gemfile", "Gemfile.lock"],
            &["bundle install --jobs=3 --retry=3 --deployment"],
            &["rake"],
        ),
        (
            "bundler_args: --without production\n",
            &["Gemfile"],
            &["bundle install --jobs=3 --retry=3 --without production"],
            &["rake"],
        ),
        ("language: ruby\n", &[], &[], &["rake"]),
        (
            "language: c\n",
            &[],
            &[],
            &["./configure && make && make test"],
        ),
        (
            "language: cpp\n",
            &[],
            &[],
            &["./configure && make && make test"],
        ),
        ("language: generic\n", &[], &[], &[]),
        ("language: shell\n", &["Makefile"], &[], &[]),
        ("language: bash\n", &[], &[], &[]),
        (
            "language: erlang\n",
            &["rebar.config"],
            &["rebar get-deps"],
            &["rebar compile && rebar skip_deps=true eunit"],
        ),
        // `skip` drops the default; `true` runs `true`.
        (
            "language: rust\ninstall: skip\n",
            &[],
            &[],
            &["cargo build --verbose", "cargo test --verbose"],
        ),
        (
            "language: rust\ninstall: true\n",
            &[],
            &["true"],
            &["cargo build --verbose", "cargo test --verbose"],
        ),
    ];
    for (yaml, files, install, script) in table {
        let p = plans_with(yaml, files);
        assert_eq!(p[0].phases.install, *install, "{yaml} {files:?}");
        assert_eq!(p[0].phases.script, *script, "{yaml} {files:?}");
    }
    // An include can skip what the root has.
    let p = plans("language: rust\ninstall: x\njobs:\n  include:\n    - install: skip\n");
    assert!(p[0].phases.install.is_empty());
}

#[test]
fn requirements_and_travis_variables() {
    let p = plans("language: cpp\ncompiler: clang\narch: [x86_64, arm64]\n");
    assert_eq!(p.len(), 2);
    assert_eq!(
        p[0].requires.to_string(),
        "arch=x86_64,compiler=clang,os=linux"
    );
    assert_eq!(p[1].requires.get("arch"), Some("aarch64"));
    assert!(p[0].builtin_env.contains(&("CXX".into(), "clang++".into())));
    assert!(p[0]
        .builtin_env
        .contains(&("TRAVIS_OS_NAME".into(), "linux".into())));
    // Only runtime versions are required; a gemfile is not a capability.
    let p = plans("rvm: [3.2]\ngemfile: [gemfiles/a.gemfile]\n");
    assert_eq!(p[0].requires.to_string(), "os=linux,rvm=3.2");
    assert!(p[0]
        .builtin_env
        .contains(&("BUNDLE_GEMFILE".into(), "$PWD/gemfiles/a.gemfile".into())));
    assert_eq!(p[0].language, "ruby");
    // Rust defaults to stable.
    let p = plans("language: rust\n");
    assert_eq!(p[0].requires.get("rust"), Some("stable"));
}

#[test]
fn diagnostics_have_positions() {
    let cfg = parse(
        "language: erlang\nservices:\n  - redis\nscript:\n  - echo a: b\n  - ok\nfoo: 1\nenv:\n  - 1X: y\n",
    )
    .unwrap();
    let lines: Vec<Option<usize>> = cfg.diagnostics.iter().map(|d| d.line).collect();
    assert_eq!(
        lines,
        [Some(2), Some(5), Some(7), Some(9)],
        "{:#?}",
        cfg.diagnostics
    );
    assert_eq!(cfg.phases.script, ["ok"]);
    assert!(cfg.warnings[0].starts_with("line 2, column 1: `services`"));
    assert_eq!(cfg.kept.len(), 2);
    // YAML errors name where.
    for (bad, line) in [
        ("a: [1\n", 2),
        ("a: b\n  c: d\n", 2),
        ("a:\n\t- b\n", 2),
        ("key: \"unterminated\n", 1),
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.line, Some(line), "{bad:?}: {e}");
        assert!(e.column.is_some());
    }
    // Not a mapping.
    let e = parse("just text\n").unwrap_err();
    assert!(e.message.contains("mapping"), "{e}");
    assert_eq!(
        parse("# only a comment\n").unwrap_err().message,
        ".travis.yml is empty"
    );
}

#[test]
fn branches_forms() {
    let allowed = |yaml: &str, b: &str, tag: bool| branch_allowed(&parse(yaml).unwrap(), b, tag);
    assert!(allowed("language: c\n", "any", false));
    assert!(allowed("branches: {only: [main]}\n", "main", false));
    assert!(!allowed("branches: {only: [main]}\n", "dev", false));
    assert!(allowed("branches: [main, dev]\n", "dev", false));
    assert!(allowed("branches: main, dev\n", "dev", false));
    assert!(!allowed("branches: {except: [/^wip-/]}\n", "wip-x", false));
    assert!(allowed(
        "branches:\n  only:\n    - /^\\d+\\.\\d+\\.\\d+.*$/\n",
        "13.0.0",
        true
    ));
    let cfg = parse("branches:\n  only:\n    - main\n    - /(?<=x)y/\n").unwrap();
    assert_eq!(cfg.diagnostics.len(), 1);
    assert_eq!(cfg.diagnostics[0].line, Some(4));
    assert!(branch_allowed(&cfg, "main", false));
}

#[test]
fn notifications_and_git() {
    let cfg = parse(
        "notifications:\n  on_success: never\n  email:\n    recipients: [a@x, b@x]\n    on_failure: change\n  irc: chat.example#kha\n  webhooks:\n    urls: https://hook\n    on_start: always\n  jabber: [ci@muc.example]\n  slack: secret\ngit:\n  depth: false\n  submodules: false\n",
    )
    .unwrap();
    let n = &cfg.notifications;
    assert_eq!(n.email[0].recipients, ["a@x", "b@x"]);
    assert_eq!(n.email[0].on_success, Frequency::Never);
    assert_eq!(n.email[0].on_failure, Frequency::Change);
    let irc = &n.irc[0];
    assert_eq!(irc.on_success, Frequency::Never, "inherited");
    assert_eq!(irc.on_failure, Frequency::Always);
    let hooks = &n.webhooks[0];
    assert_eq!(hooks.recipients, ["https://hook"]);
    assert_eq!(hooks.on_start, Frequency::Always);
    assert_eq!(n.jabber[0].recipients, ["ci@muc.example"]);
    // Any other channel goes to the notifier plugin of its name.
    assert_eq!(n.plugins[0].0, "slack");
    assert!(cfg.diagnostics.is_empty(), "{:?}", cfg.diagnostics);
    assert_eq!(cfg.git.depth, None);
    assert!(!cfg.git.submodules);
    let d = parse("language: c\n").unwrap();
    assert_eq!(d.git, GitSettings::default());
    assert_eq!(d.git.depth, Some(50));
    assert!(d.notifications.email[0].enabled && d.notifications.email[0].recipients.is_empty());
}

#[test]
fn skip_markers() {
    assert!(should_skip("Update README [skip travis]"));
    assert!(should_skip("[CI SKIP]"));
    assert!(!should_skip("skip the ci"));
}
