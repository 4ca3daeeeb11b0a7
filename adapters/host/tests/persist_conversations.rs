//! Conversations on disk: entries written by `FileStorage` survive a restart (a new load of the
//! same directory) and replay; removes reach the disk; expired, corrupt and leftover files are
//! cleaned on load; oversized and foreign files are left alone.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cursorpool_core::chat::{ChatMessage, ChatRequest, Part, RequestMetadata, Role};
use cursorpool_core::conversation::{
    Completed, ConversationKey, ConversationStorage as _, ConversationStore, Entry, Plan, Recorded,
    StoreConfig,
};
use cursorpool_core::turn::BlobStore;
use cursorpool_host::persist::conversations::{self, FileStorage, LoadOptions};
use cursorpool_proto::Message as _;
use cursorpool_proto::agent_v1 as pb;

const TTL: Duration = Duration::from_secs(30 * 60);
const CLIENT_KEY: &str = "sk-client-secret-key";

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("cursorpool-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn user(t: &str) -> ChatMessage {
    ChatMessage {
        role: Role::User,
        content: vec![Part::Text(t.to_owned())],
    }
}

fn assistant(t: &str) -> ChatMessage {
    ChatMessage {
        role: Role::Assistant,
        content: vec![Part::Text(t.to_owned())],
    }
}

fn request(session: &str, messages: Vec<ChatMessage>) -> ChatRequest {
    ChatRequest {
        model: "m".to_owned(),
        messages,
        metadata: RequestMetadata {
            user_id: None,
            session_id: Some(session.to_owned()),
        },
        ..ChatRequest::default()
    }
}

/// A checkpoint with one agent turn per text (as core's store tests build them), its blobs
/// stored in `blobs`.
fn checkpoint(blobs: &mut BlobStore, turns: &[&str]) -> Bytes {
    let id = |b: [u8; 32]| Bytes::copy_from_slice(&b);
    let mut turn_ids = Vec::new();
    for t in turns {
        let text = blobs.insert(Bytes::from(t.as_bytes().to_vec()));
        let user = pb::UserMessage {
            text_blob_id: Some(id(text)),
            ..Default::default()
        };
        let user = blobs.insert(Bytes::from(user.encode_to_vec()));
        let step = pb::ConversationStep {
            message: Some(pb::conversation_step::Message::AssistantMessage(
                pb::AssistantMessage {
                    text: format!("answer to {t}"),
                },
            )),
        };
        let step = blobs.insert(Bytes::from(step.encode_to_vec()));
        let turn = pb::ConversationTurnStructure {
            turn: Some(
                pb::conversation_turn_structure::Turn::AgentConversationTurn(
                    pb::AgentConversationTurnStructure {
                        user_message: id(user),
                        steps: vec![id(step)],
                        ..Default::default()
                    },
                ),
            ),
        };
        turn_ids.push(id(blobs.insert(Bytes::from(turn.encode_to_vec()))));
    }
    let state = pb::ConversationStateStructure {
        turns: turn_ids,
        ..Default::default()
    };
    Bytes::from(state.encode_to_vec())
}

/// Records a one-turn conversation `session` on account "a".
fn record_one(
    store: &mut ConversationStore<FileStorage>,
    session: &str,
    now: Instant,
) -> (ConversationKey, ChatRequest, Bytes) {
    let req = request(session, vec![user(&format!("{session} first"))]);
    let key = ConversationKey::for_request(&req, CLIENT_KEY);
    let mut blobs = BlobStore::new();
    let cp = checkpoint(&mut blobs, &[&format!("{session} first")]);
    let reply = [assistant("hello")];
    let recorded = store.record(
        &key,
        Completed {
            account: "a",
            request: &req,
            reply: &reply,
            checkpoint: &cp,
            blobs: &blobs,
        },
        now,
    );
    assert!(matches!(recorded, Recorded::Stored { .. }));
    (key, req, cp)
}

fn follow_up(req: &ChatRequest, question: &str) -> ChatRequest {
    let mut next = req.clone();
    next.messages.push(assistant("hello"));
    next.messages.push(user(question));
    next
}

fn load(dir: &Path) -> (FileStorage, Vec<Entry>) {
    FileStorage::load(dir, TTL, SystemTime::now()).expect("load")
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn entries_survive_a_restart_and_replay() {
    let tmp = TempDir::new("conv-restart");
    let dir = tmp.0.join("state").join("conversations");
    let t0 = Instant::now();

    let (storage, loaded) = load(&dir);
    assert!(loaded.is_empty());
    assert_eq!(mode(&dir), 0o700);
    let mut store = ConversationStore::with_storage(storage, StoreConfig::default(), t0);
    let (key, req, cp) = record_one(&mut store, "s1", t0);
    let stored = store.storage().get(&key).expect("in memory").encode();
    store.storage().flush();

    let file = dir.join(conversations::file_name(&key));
    assert_eq!(names(&dir), [conversations::file_name(&key)]);
    let name = conversations::file_name(&key);
    assert!(name.len() == 32 + ".cpce".len());
    assert!(name[..32].bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!name.contains(CLIENT_KEY));
    assert_eq!(mode(&file), 0o600);
    assert_eq!(fs::read(&file).expect("read"), stored);
    drop(store);

    // The restart.
    let t1 = t0 + Duration::from_secs(60);
    let (storage, loaded) = load(&dir);
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].key(), &key);
    assert_eq!(loaded[0].encode(), stored);
    let mut store = ConversationStore::with_storage(storage, StoreConfig::default(), t1);
    assert_eq!(store.len(), 1);
    let Plan::Replay(replay) = store.plan(&key, &follow_up(&req, "second"), "a", t1) else {
        panic!("a replay of the stored checkpoint expected");
    };
    assert_eq!(replay.conversation_state, cp);
    assert_eq!(replay.new_messages, 2..3);
    assert_eq!(replay.input.text, "second");
    assert_eq!(
        replay.blobs.len(),
        4,
        "every blob the checkpoint references"
    );
}

#[test]
fn removes_reach_the_disk_and_the_last_put_wins() {
    let tmp = TempDir::new("conv-remove");
    let t0 = Instant::now();
    let (storage, _) = load(&tmp.0);
    let mut store = ConversationStore::with_storage(storage, StoreConfig::default(), t0);
    let (gone, _, _) = record_one(&mut store, "gone", t0);
    let (kept, req, _) = record_one(&mut store, "kept", t0);
    // Several checkpoints of one conversation in a row: the file holds the last.
    for i in 0..5 {
        let next = follow_up(&req, &format!("q{i}"));
        let mut blobs = BlobStore::new();
        let cp = checkpoint(&mut blobs, &[&format!("t{i}")]);
        store.record(
            &kept,
            Completed {
                account: "a",
                request: &next,
                reply: &[assistant("ok")],
                checkpoint: &cp,
                blobs: &blobs,
            },
            t0,
        );
    }
    assert!(store.remove(&gone));
    let last = store.storage().get(&kept).expect("kept").encode();
    store.storage().flush();
    assert_eq!(names(&tmp.0), [conversations::file_name(&kept)]);
    assert_eq!(
        fs::read(tmp.0.join(conversations::file_name(&kept))).expect("read"),
        last
    );
}

#[test]
fn expired_corrupt_and_leftover_files_are_removed_on_load() {
    let tmp = TempDir::new("conv-clean");
    let t0 = Instant::now();
    let (storage, _) = load(&tmp.0);
    let mut store = ConversationStore::with_storage(storage, StoreConfig::default(), t0);
    let (fresh, _, _) = record_one(&mut store, "fresh", t0);
    let (old, _, _) = record_one(&mut store, "old", t0);
    let (big, _, _) = record_one(&mut store, "big", t0);
    store.storage().flush();
    drop(store);

    let old_file = fs::File::options()
        .write(true)
        .open(tmp.0.join(conversations::file_name(&old)))
        .expect("open");
    old_file
        .set_modified(SystemTime::now() - 2 * TTL)
        .expect("age the file");
    drop(old_file);
    let corrupt = "0123456789abcdef0123456789abcdef.cpce";
    fs::write(tmp.0.join(corrupt), b"CPCE\x01 not an entry").expect("write corrupt");
    // A valid entry under another conversation's name is as good as corrupt.
    fs::copy(
        tmp.0.join(conversations::file_name(&fresh)),
        tmp.0.join("ffffffffffffffffffffffffffffffff.cpce"),
    )
    .expect("copy");
    fs::write(tmp.0.join(".x.cpce.1.2.tmp"), b"interrupted").expect("write temp");
    fs::write(tmp.0.join("notes.txt"), b"not ours").expect("write foreign");
    let big_file = tmp.0.join(conversations::file_name(&big));
    let big_len = fs::metadata(&big_file).expect("stat").len();
    fs::OpenOptions::new()
        .append(true)
        .open(&big_file)
        .expect("open")
        .set_len(big_len + 4096)
        .expect("grow");

    let options = LoadOptions {
        ttl: TTL,
        max_file_bytes: big_len + 1024,
    };
    let (storage, loaded) =
        FileStorage::load_with(&tmp.0, options, SystemTime::now()).expect("load");
    let keys: Vec<_> = loaded.iter().map(|e| *e.key()).collect();
    assert_eq!(keys, [fresh]);
    assert_eq!(storage.keys(), [fresh]);
    let mut expected = vec![
        conversations::file_name(&fresh),
        conversations::file_name(&big),
        "notes.txt".to_owned(),
    ];
    expected.sort();
    assert_eq!(
        names(&tmp.0),
        expected,
        "expired, corrupt, misnamed and temporary files deleted; oversized and foreign kept"
    );
}
