//! Every guest under guests/ is used by a test: a guest nobody runs is a claim nobody checks.

use crate::common;

#[test]
fn guests_each_guest_is_used_by_a_test() {
    let root = common::root();
    // Every connector under guests/ (the SDK is a library, not a guest).
    let mut guests: Vec<String> = std::fs::read_dir(root.join("guests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "sdk" && name != "test-guests")
        .collect();
    for entry in std::fs::read_dir(root.join("guests/test-guests")).unwrap() {
        guests.push(entry.unwrap().file_name().to_string_lossy().into_owned());
    }
    // Tests name a guest as "name" (Rust) or {guest:name} (scenario folders).
    let mut tests = String::new();
    for entry in std::fs::read_dir(root.join("tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") && path.file_name().unwrap() != "guests.rs" {
            tests.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    for entry in std::fs::read_dir(root.join("tests/scenarios")).unwrap() {
        tests.push_str(
            &std::fs::read_to_string(entry.unwrap().path().join("scenario.json")).unwrap(),
        );
    }
    let unused: Vec<_> = guests
        .iter()
        .filter(|g| {
            !tests.contains(&format!("\"{g}\"")) && !tests.contains(&format!("{{guest:{g}}}"))
        })
        .collect();
    assert!(unused.is_empty(), "guests with no test: {unused:?}");
    assert!(
        guests.len() >= 11,
        "expected the sandbox and the test guests, found {guests:?}"
    );
}
