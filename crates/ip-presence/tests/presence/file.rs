//! Reading sign-in files: the two-thread, user-sharded path of `MemoryState` and the store's
//! block-by-block path give exactly the result of plain sequential processing, for JSON
//! lines and JSON arrays.

use ip_presence::*;

use super::data::{BenchSpec, OrgSpec, bench_config, generate, generate_org, org_config};
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

/// A sink that keeps what it is handed, in the order handed.
#[derive(Default)]
struct Streamed(BatchReport);

impl EventSink for Streamed {
    fn access(&mut self, e: &AccessEvent) {
        self.0.access_events.push(e.clone());
    }
    fn presence(&mut self, e: &PresenceEvent, superseded: bool) {
        self.0.presence(e, superseded);
    }
    fn status(&mut self, s: &UserDayStatus) {
        self.0.statuses.push(s.clone());
    }
}

#[test]
fn streamed_events_are_exactly_the_collected_ones() {
    // The one-day fixture of the file test above, through the two-thread path.
    let spec = BenchSpec {
        sign_ins: 12_000,
        users: 500,
        ..BenchSpec::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let files = generate(dir.path(), &spec).unwrap();
    let engine = PresenceEngine::new(bench_config(&spec)).unwrap();
    let opts = ProcessOptions::at(spec.now());
    let bytes = std::fs::read(&files.sign_ins).unwrap();
    let mut seq = MemoryState::new();
    let collected = engine
        .process(&mut seq, parse_all(&bytes).unwrap(), &opts)
        .unwrap();

    let mut streamed_state = MemoryState::new();
    let mut sink = Streamed::default();
    let counts = engine
        .process_file_to(&mut streamed_state, &files.sign_ins, &opts, &mut sink)
        .unwrap();
    let mut streamed = sink.0;
    streamed.counts = counts;
    streamed.sort();
    assert_eq!(streamed, collected);
    assert_eq!(streamed_state.to_json(), seq.to_json());
    assert!(!streamed.access_events.is_empty() && !streamed.statuses.is_empty());

    // The store, on the calling thread, streams the same events.
    let sdir = tempfile::tempdir().unwrap();
    let mut store = PresenceStore::open(sdir.path()).unwrap();
    let mut sink = Streamed::default();
    let counts = engine
        .process_file_to(&mut store, &files.sign_ins, &opts, &mut sink)
        .unwrap();
    let mut from_store = sink.0;
    from_store.counts = counts;
    from_store.sort();
    assert_eq!(from_store, collected);
}

/// Many days of the organisation-scale generator, small enough for a test, replayed a
/// megabyte at a time with the default window: every event a window over the whole file
/// gives, nothing too late, and a state of the last days only; the same newest first.
#[test]
fn a_replay_gives_the_events_of_a_window_over_the_whole_file() {
    let spec = OrgSpec {
        sign_ins: 12_000,
        users: 300,
        days: 9,
        ..OrgSpec::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let files = generate_org(dir.path(), &spec).unwrap();
    assert!(files.bytes > 8 << 20, "large enough for many blocks");
    let engine = PresenceEngine::new(org_config(&spec)).unwrap();
    let whole = ProcessOptions {
        late_window_days: spec.days as u16,
        ..ProcessOptions::at(spec.now())
    };
    let mut all = MemoryState::new();
    let expected = engine
        .process_file(&mut all, &files.sign_ins, &whole)
        .unwrap();
    assert_eq!(expected.counts.discarded.too_late, 0);
    assert!(
        expected.statuses.len() > 2_000,
        "{}",
        expected.statuses.len()
    );

    let replay = ProcessOptions {
        replay: true,
        replay_block: 1 << 20,
        ..ProcessOptions::at(spec.now())
    };
    let replayed = |path: &std::path::Path| {
        let mut state = MemoryState::new();
        let mut sink = Streamed::default();
        let counts = engine
            .process_file_to(&mut state, path, &replay, &mut sink)
            .unwrap();
        let mut r = sink.0;
        r.counts = counts;
        r.sort();
        (r, state)
    };
    let (got, state) = replayed(&files.sign_ins);
    assert_eq!(got, expected);
    // The state keeps the window of `now` only: what the whole run keeps once pruned so.
    all.prune(spec.now().to_zoned(jiff::tz::TimeZone::UTC).date(), 90, 2)
        .unwrap();
    assert_eq!(state.to_json(), all.to_json());
    assert_eq!(state.to_json()["days"].as_array().unwrap().len(), 3);

    // Newest first, as pull_sign_ins writes a backfill.
    let text = std::fs::read_to_string(&files.sign_ins).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.reverse();
    let reversed = dir.path().join("newest-first.jsonl");
    std::fs::write(&reversed, lines.join("\n") + "\n").unwrap();
    let (got, state) = replayed(&reversed);
    assert_eq!(got, expected);
    assert_eq!(state.to_json(), all.to_json());
}
