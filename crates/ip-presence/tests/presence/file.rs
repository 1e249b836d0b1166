//! Reading sign-in files: the two-thread, user-sharded path of `MemoryState` and the store's
//! block-by-block path give exactly the result of plain sequential processing, for JSON
//! lines and JSON arrays.

use ip_presence::*;

use super::data::{BenchSpec, bench_config, generate};
use super::support::{at, engine_of};

#[test]
fn the_parallel_file_path_equals_sequential_processing() {
    let spec = BenchSpec {
        sign_ins: 12_000,
        users: 500,
        ..BenchSpec::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let files = generate(dir.path(), &spec).unwrap();
    assert!(
        files.bytes > 4 << 20,
        "large enough for the two-thread path"
    );
    let engine = PresenceEngine::new(bench_config(&spec)).unwrap();
    let opts = ProcessOptions::at(spec.now());

    let bytes = std::fs::read(&files.sign_ins).unwrap();
    let mut seq = MemoryState::new();
    let r_seq = engine
        .process(&mut seq, parse_all(&bytes).unwrap(), &opts)
        .unwrap();

    let mut par = MemoryState::new();
    let r_par = engine
        .process_file(&mut par, &files.sign_ins, &opts)
        .unwrap();
    assert_eq!(r_par, r_seq);
    assert_eq!(par.to_json(), seq.to_json());
    assert_eq!(par.discovery().unwrap(), seq.discovery().unwrap());
    assert!(r_par.counts.presence_observed > 0 && r_par.counts.discovered > 0);

    // A second pass over the same file: everything is a duplicate.
    let again = engine
        .process_file(&mut par, &files.sign_ins, &opts)
        .unwrap();
    assert_eq!(
        again.counts.discarded.duplicate,
        r_seq.counts.matched + r_seq.counts.discovered
    );
    assert!(again.access_events.is_empty() && again.presence_events.is_empty());

    // The store reads the file on the calling thread, a block at a time.
    let sdir = tempfile::tempdir().unwrap();
    let mut store = PresenceStore::open(sdir.path()).unwrap();
    let r_store = engine
        .process_file(&mut store, &files.sign_ins, &opts)
        .unwrap();
    assert_eq!(r_store.access_events, r_seq.access_events);
    assert_eq!(r_store.presence_events, r_seq.presence_events);
    assert_eq!(
        store.all_presence_events().unwrap(),
        seq.presence_events().unwrap()
    );
}

#[test]
fn json_array_files_and_small_files_work() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_of(serde_json::json!({
        "ranges": [{"name": "hq", "cidrs": ["10.0.0.0/8"], "location": "HQ"}],
        "users": [{"upn": "a@x", "mode": "track_and_display"}]
    }));
    let opts = at("2024-05-07T18:00:00Z");
    let arr = dir.path().join("a.json");
    std::fs::write(
        &arr,
        r#"[{"id":"1","createdDateTime":"2024-05-07T08:00:00Z","ipAddress":"10.0.0.1","userPrincipalName":"a@x","extra":{"deep":[1,2,{"x":"y"}]}}]"#,
    )
    .unwrap();
    let r = engine
        .process_file(&mut MemoryState::new(), &arr, &opts)
        .unwrap();
    assert_eq!(r.presence_events.len(), 1);
    let bad = dir.path().join("b.jsonl");
    std::fs::write(&bad, "{\"id\":\"1\"}\n{oops}\n").unwrap();
    let err = engine
        .process_file(&mut MemoryState::new(), &bad, &opts)
        .unwrap_err();
    assert!(err.to_string().contains("byte 11"), "{err}");
}
