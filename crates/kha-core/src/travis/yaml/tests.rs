use super::*;

fn root(text: &str) -> Node {
    load(text).unwrap().root
}

#[test]
fn positions_are_one_based() {
    let r = root("a: 1\nb:\n  - x\n");
    let b = r.get("b").unwrap();
    assert_eq!(b.key_pos, Pos { line: 2, column: 1 });
    let x = &b.value.items().unwrap()[0];
    assert_eq!(x.pos, Pos { line: 3, column: 5 });
    assert_eq!(x.scalar(), Some("x"));
}

#[test]
fn scalars_keep_their_text() {
    let r = root("a: 3.10\nb: '1.0'\nc: ~\nd: yes\ne: 'yes'\n");
    assert_eq!(r.get("a").unwrap().value.scalar(), Some("3.10"));
    assert_eq!(r.get("b").unwrap().value.scalar(), Some("1.0"));
    assert!(r.get("c").unwrap().value.is_null());
    assert_eq!(r.get("d").unwrap().value.as_bool(), Some(true));
    assert_eq!(r.get("e").unwrap().value.as_bool(), None);
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let r = root("base: &b\n  x: 1\n  y: 2\nuse:\n  <<: *b\n  y: 3\nlist: [*b, *b]\n");
    let u = &r.get("use").unwrap().value;
    assert_eq!(u.get("x").unwrap().value.scalar(), Some("1"));
    assert_eq!(u.get("y").unwrap().value.scalar(), Some("3"));
    assert_eq!(r.get("list").unwrap().value.items().unwrap().len(), 2);
    let r = root("a: &a {k: 1}\nb: &b {k: 2, j: 2}\nc:\n  <<: [*a, *b]\n");
    let c = &r.get("c").unwrap().value;
    assert_eq!(c.get("k").unwrap().value.scalar(), Some("1"));
    assert_eq!(c.get("j").unwrap().value.scalar(), Some("2"));
}

#[test]
fn duplicate_keys_keep_the_last_and_warn() {
    let l = load("a: 1\na: 2\n").unwrap();
    assert_eq!(l.root.get("a").unwrap().value.scalar(), Some("2"));
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(l.warnings[0].0.line, 2);
}

#[test]
fn limits() {
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(load(&deep).is_err());
    // Billion laughs: each level doubles.
    let mut s = String::from("a0: &a0 [x, x]\n");
    for i in 1..40 {
        s.push_str(&format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
    }
    let e = load(&s).unwrap_err();
    assert!(e.message.contains("more than"), "{}", e.message);
    // Aliases nest what they name: depth counts through them.
    let mut s = format!("a0: &a0 {}x{}\n", "[".repeat(40), "]".repeat(40));
    s.push_str("a1: &a1 [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*a0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n");
    let e = load(&s).unwrap_err();
    assert!(e.message.contains("through aliases"), "{}", e.message);
}

#[test]
fn errors_have_positions() {
    let e = load("a: [1, 2\nb: c\n").unwrap_err();
    assert!(e.pos.is_some());
    let e = load("a: *nope\n").unwrap_err();
    assert!(e.message.contains("invalid YAML"), "{}", e.message);
}

#[test]
fn only_the_first_document() {
    let l = load("a: 1\n---\nb: 2\n").unwrap();
    assert!(l.root.get("b").is_none());
    assert_eq!(l.warnings.len(), 1);
}
