//! Reading sign-in files: the two-thread, user-sharded path of `MemoryState` and the store's
//! block-by-block path give exactly the result of plain sequential processing, for JSON
//! lines and JSON arrays.

use ip_presence::*;

use super::data::{
    BenchFiles, BenchSpec, OrgSpec, bench_config, generate, generate_org, org_config,
};
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

/// Many days of the organisation-scale generator, small enough for a test (12,000
/// sign-ins by 300 people over 9 days, over 8 MiB), in `dir`.
fn nine_days(dir: &std::path::Path) -> (OrgSpec, BenchFiles, PresenceEngine) {
    let spec = OrgSpec {
        sign_ins: 12_000,
        users: 300,
        days: 9,
        ..OrgSpec::default()
    };
    let files = generate_org(dir, &spec).unwrap();
    assert!(files.bytes > 8 << 20, "large enough for many blocks");
    let engine = PresenceEngine::new(org_config(&spec)).unwrap();
    (spec, files, engine)
}

/// A replay a megabyte at a time with the default window, as of the end of `spec`.
fn replay_options(spec: &OrgSpec) -> ProcessOptions {
    ProcessOptions {
        replay: true,
        replay_block: 1 << 20,
        ..ProcessOptions::at(spec.now())
    }
}

/// `path` processed into `state` with `opts`: everything streamed, with the counts, sorted.
fn streamed(
    engine: &PresenceEngine,
    state: &mut MemoryState,
    path: &std::path::Path,
    opts: &ProcessOptions,
) -> BatchReport {
    let mut sink = Streamed::default();
    let counts = engine
        .process_file_to(state, path, opts, &mut sink)
        .unwrap();
    let mut r = sink.0;
    r.counts = counts;
    r.sort();
    r
}

/// A copy of the JSON-lines file `path` in `dir`, newest first (as pull_sign_ins writes a
/// backfill).
fn newest_first(dir: &std::path::Path, path: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.reverse();
    let reversed = dir.join("newest-first.jsonl");
    std::fs::write(&reversed, lines.join("\n") + "\n").unwrap();
    reversed
}

/// Nine days replayed a megabyte at a time with the default window: every event a window
/// over the whole file gives, nothing too late, and a state of the last days only; the
/// same newest first.
#[test]
fn a_replay_gives_the_events_of_a_window_over_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, files, engine) = nine_days(dir.path());
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

    let replay = replay_options(&spec);
    let mut state = MemoryState::new();
    assert_eq!(
        streamed(&engine, &mut state, &files.sign_ins, &replay),
        expected
    );
    // The state keeps the window of `now` only: what the whole run keeps once pruned so.
    all.prune(spec.now().to_zoned(jiff::tz::TimeZone::UTC).date(), 90, 2)
        .unwrap();
    assert_eq!(state.to_json(), all.to_json());
    assert_eq!(state.to_json()["days"].as_array().unwrap().len(), 3);

    let reversed = newest_first(dir.path(), &files.sign_ins);
    let mut state = MemoryState::new();
    assert_eq!(streamed(&engine, &mut state, &reversed, &replay), expected);
    assert_eq!(state.to_json(), all.to_json());
}

/// The same replay spilled (its sign-ins partitioned by user on disk, its state's days
/// written to a file): the same events and counts, and a state that reads back as the
/// one held in memory; a run from either state gives the same again. A damaged days file
/// is refused, naming it.
#[test]
fn a_spilled_replay_gives_the_events_and_state_of_one_held_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, files, engine) = nine_days(dir.path());
    let replay = replay_options(&spec);
    let spill = |state: &mut MemoryState, name: &str| {
        let days = dir.path().join(name);
        let file = std::fs::File::create(&days).unwrap();
        state.spill_to(
            dir.path().to_path_buf(),
            days.display().to_string(),
            Box::new(file),
        );
    };
    let mut held = MemoryState::new();
    let expected = streamed(&engine, &mut held, &files.sign_ins, &replay);
    let mut spilled = MemoryState::new();
    spill(&mut spilled, "days.jsonl");
    let got = streamed(&engine, &mut spilled, &files.sign_ins, &replay);
    assert!(spilled.days_spilled());
    assert_eq!(got, expected);
    assert!(expected.statuses.len() > 2_000);

    let state = spilled.to_json();
    assert_eq!(state["version"], 3);
    assert_eq!(
        state["days"].as_array().unwrap().len(),
        0,
        "days are in the file"
    );
    let lines = std::fs::read_to_string(dir.path().join("days.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert!(lines > 300, "{lines}");
    assert_eq!(state["days_file"]["lines"], lines);
    let read_back = MemoryState::from_json(state.clone()).unwrap();
    assert_eq!(read_back.to_json(), held.to_json());

    // The next run, newest first, from either state (and spilled again).
    let reversed = newest_first(dir.path(), &files.sign_ins);
    let again = streamed(&engine, &mut held, &reversed, &replay);
    let mut from_file = MemoryState::from_json(state.clone()).unwrap();
    spill(&mut from_file, "days2.jsonl");
    assert_eq!(streamed(&engine, &mut from_file, &reversed, &replay), again);
    assert_eq!(
        MemoryState::from_json(from_file.to_json())
            .unwrap()
            .to_json(),
        held.to_json()
    );

    // A days file cut short, or with a damaged line, is refused at /days_file/path.
    let path = dir.path().join("days.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let first_lines: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(&path, first_lines.join("\n") + "\n").unwrap();
    let err = MemoryState::from_json(state.clone())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/days_file/path")
            && err.contains(&format!(
                "holds 3 user-days where the state says {}",
                state["days_file"]["lines"]
            )),
        "{err}"
    );
    std::fs::write(
        &path,
        "{\"date\":\"2024-05-01\",\"user\":\"a@x\",\"seen\":\"12\"}\n",
    )
    .unwrap();
    let err = MemoryState::from_json(state.clone())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 1, seen: is not 16-digit hashes"),
        "{err}"
    );
    std::fs::remove_file(&path).unwrap();
    let err = MemoryState::from_json(state).unwrap_err().to_string();
    assert!(err.contains("cannot read"), "{err}");
}
