//! `export PLATFORM DIR`: each package is byte for byte its golden copy in
//! `tests/golden/<platform>/` (rewrite them with `UPDATE_GOLDEN=1 cargo test --test cli
//! export` after changing an action, and review the diff), the same on every run, written
//! only into an empty directory, and with the binary bundled on request.
//! The Python suite `python/soar/` validates the packages with the platforms' tooling
//! and runs their wrappers against the emulator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::process::{BIN, run};

const PLATFORMS: &[&str] = &["xsoar", "splunk-soar", "stackstorm"];

fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn export(platform: &str, dir: &Path, extra: &[&str]) -> crate::support::process::Outcome {
    let state = tempfile::tempdir().unwrap();
    let mut args = vec!["export", platform, dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args, b"", state.path())
}

fn golden(platform: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(platform)
}

#[test]
fn every_export_is_its_golden_copy() {
    for platform in PLATFORMS {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("pkg");
        let o = export(platform, &out, &[]);
        assert_eq!(o.code, 0, "{platform}: {}", o.stderr);
        let got = files_under(&out);
        let dir = golden(platform);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            let _ = std::fs::remove_dir_all(&dir);
            for (rel, bytes) in &got {
                let path = dir.join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
            continue;
        }
        let want = files_under(&dir);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{platform}: the files differ from tests/golden/{platform} (UPDATE_GOLDEN=1 rewrites it)"
        );
        for (rel, bytes) in &got {
            assert!(
                bytes == &want[rel],
                "{platform}: {rel} differs from its golden copy (UPDATE_GOLDEN=1 rewrites it)"
            );
        }
        let written = o.json()["written"].as_array().unwrap().len();
        assert_eq!(
            written,
            got.len(),
            "{platform}: the answer lists every file"
        );
    }
}

#[test]
fn an_export_is_the_same_every_time() {
    for platform in PLATFORMS {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        assert_eq!(export(platform, &a, &[]).code, 0);
        assert_eq!(export(platform, &b, &[]).code, 0);
        assert!(files_under(&a) == files_under(&b), "{platform}");
    }
}

#[test]
fn a_non_empty_directory_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().join("notes.txt");
    std::fs::write(&keep, "mine").unwrap();
    let o = export("stackstorm", tmp.path(), &[]);
    assert_eq!(o.code, 2, "{}", o.stdout);
    assert_eq!(o.json()["error"]["details"][0]["path"], "/dir");
    assert_eq!(files_under(tmp.path()).len(), 1, "nothing written");
    let o = export("stackstorm", tmp.path(), &["--force"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "mine");
    assert!(tmp.path().join("pack.yaml").is_file());
}

#[test]
fn bundle_puts_the_binary_beside_each_wrapper() {
    for (platform, wrapper_dir) in [
        ("xsoar", "Integrations/MSGraphConnector"),
        ("splunk-soar", ""),
        ("stackstorm", "actions"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("pkg");
        assert_eq!(export(platform, &out, &["--bundle"]).code, 0);
        let bundled = out.join(wrapper_dir).join("msgraph-connector");
        assert_eq!(
            std::fs::read(&bundled).unwrap(),
            std::fs::read(BIN).unwrap(),
            "{platform}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&bundled).unwrap().permissions().mode();
            assert_eq!(mode & 0o111, 0o111, "{platform}: executable");
        }
        let wrappers = files_under(&out.join(wrapper_dir));
        assert!(wrappers.keys().any(|k| k.ends_with(".py")), "{platform}");
    }
}

#[test]
fn an_unknown_platform_is_refused_with_the_choices() {
    let tmp = tempfile::tempdir().unwrap();
    let o = export("soar2000", &tmp.path().join("x"), &[]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("xsoar")
            && o.stderr.contains("splunk-soar")
            && o.stderr.contains("stackstorm")
    );
    assert!(!tmp.path().join("x").exists());
}
