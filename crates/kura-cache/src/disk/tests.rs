use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kura_config::DiskConfig;

use super::*;
use crate::object::Entry;
use crate::test_util::object;

fn cfg(dir: &std::path::Path, max: u64, cleaned: u64) -> DiskConfig {
    DiskConfig {
        dir: dir.to_path_buf(),
        max_bytes: max,
        cleaned_bytes: cleaned,
    }
}

async fn open(c: &DiskConfig) -> DiskTier {
    let c = c.clone();
    tokio::task::spawn_blocking(move || {
        DiskTier::open(&c, Arc::new(Stats::default()), Arc::default())
    })
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn entries_and_segments_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), 1 << 30, 1 << 29);
    let disk = open(&c).await;
    let obj = object("a.com/x", 10, 6);
    disk.put_entry(&Entry::Object(obj.clone()));
    disk.put_segment(&obj, 0, &Bytes::from_static(b"012345"));
    disk.put_segment(&obj, 1, &Bytes::from_static(b"6789"));
    disk.flush().await;
    assert!(disk.bytes() > 10);
    drop(disk);

    let disk = open(&c).await;
    let Some(Entry::Object(back)) = disk.get_entry("a.com/x").await else {
        panic!("entry persisted")
    };
    assert_eq!(back.version, obj.version);
    assert_eq!(back.headers["content-type"], "text/plain");
    assert_eq!(&disk.get_segment(&back, 0).await.unwrap()[..], b"012345");
    assert_eq!(&disk.get_segment(&back, 1).await.unwrap()[..], b"6789");
    assert!(disk.get_entry("a.com/other").await.is_none());
}

#[tokio::test]
async fn corrupt_segments_and_heads_are_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), 1 << 30, 1 << 29);
    let disk = open(&c).await;
    let obj = object("a.com/c", 6, 6);
    disk.put_entry(&Entry::Object(obj.clone()));
    disk.put_segment(&obj, 0, &Bytes::from_static(b"abcdef"));
    disk.flush().await;
    // Flip a byte in the segment file (same length: only the checksum can tell).
    let hash = hash_hex("a.com/c");
    let seg = disk.inner.seg_path(&hash, obj.version, 0);
    std::fs::write(&seg, b"abcdeX").unwrap();
    assert!(disk.get_segment(&obj, 0).await.is_none());
    disk.flush().await;
    assert!(!disk.has_segment(&obj, 0), "a corrupt segment is forgotten");
    assert_eq!(disk.inner.stats.corrupt.load(Relaxed), 1);

    // A torn head file is a miss, and is dropped at the next start.
    let head = disk.inner.head_path(&hash);
    let bytes = std::fs::read(&head).unwrap();
    std::fs::write(&head, &bytes[..bytes.len() / 2]).unwrap();
    assert!(disk.get_entry("a.com/c").await.is_none());
    drop(disk);
    let disk = open(&c).await;
    assert!(!head.exists());
    assert!(disk.get_entry("a.com/c").await.is_none());
}

#[tokio::test]
async fn cleaning_starts_above_the_high_mark_and_stops_at_the_low_one() {
    let dir = tempfile::tempdir().unwrap();
    // Each object: ~1 KiB head + 10 KiB body.
    let c = cfg(dir.path(), 60 * 1024, 30 * 1024);
    let disk = open(&c).await;
    let body = Bytes::from(vec![7u8; 10 * 1024]);
    let mut objs = Vec::new();
    for i in 0..5 {
        let o = object(&format!("a.com/{i}"), body.len() as u64, 16 * 1024);
        disk.put_entry(&Entry::Object(o.clone()));
        disk.put_segment(&o, 0, &body);
        disk.flush().await;
        objs.push(o);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(disk.bytes() <= 60 * 1024, "{}", disk.bytes());
    // Touch the oldest so that it is the most recently used.
    assert!(disk.get_entry("a.com/0").await.is_some());
    tokio::time::sleep(Duration::from_millis(5)).await;
    for i in 5..7 {
        let o = object(&format!("a.com/{i}"), body.len() as u64, 16 * 1024);
        disk.put_entry(&Entry::Object(o.clone()));
        disk.put_segment(&o, 0, &body);
        disk.flush().await;
    }
    let total = disk.bytes();
    assert!(total <= 60 * 1024, "{total}");
    assert!(disk.inner.stats.disk_evictions.load(Relaxed) > 0);
    assert!(
        disk.get_entry("a.com/0").await.is_some(),
        "recently used survives"
    );
    assert!(
        disk.get_entry("a.com/1").await.is_none(),
        "least recently used goes"
    );
    assert!(disk.get_entry("a.com/6").await.is_some());
}

#[tokio::test]
async fn orphans_and_temporary_files_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), 1 << 30, 1 << 29);
    let disk = open(&c).await;
    let obj = object("a.com/o", 3, 6);
    disk.put_entry(&Entry::Object(obj.clone()));
    disk.flush().await;
    let hash = hash_hex("a.com/o");
    let orphan = disk.inner.seg_path(&hash, obj.version, 0);
    std::fs::write(&orphan, b"abc").unwrap(); // written, but the head never listed it
    let tmp = disk.inner.dir(&hash).join("x.head.tmp");
    std::fs::write(&tmp, b"partial").unwrap();
    drop(disk);
    let disk = open(&c).await;
    assert!(!orphan.exists());
    assert!(!tmp.exists());
    assert!(disk.get_entry("a.com/o").await.is_some());
}

#[tokio::test]
async fn purge_by_prefix_and_all() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), 1 << 30, 1 << 29);
    let disk = open(&c).await;
    for k in ["a.com/img/1", "a.com/img/2", "a.com/css/1"] {
        disk.put_entry(&Entry::Object(object(k, 0, 6)));
    }
    disk.flush().await;
    assert_eq!(disk.purge_prefix("a.com/img/").await, 2);
    assert!(disk.get_entry("a.com/img/1").await.is_none());
    assert!(disk.get_entry("a.com/css/1").await.is_some());
    assert_eq!(disk.purge_all().await, 1);
    assert_eq!(disk.bytes(), 0);
}

#[tokio::test]
async fn a_queued_segment_is_readable_before_the_writer_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let disk = open(&cfg(dir.path(), 1 << 30, 1 << 29)).await;
    let obj = object("a.com/q", 6, 6);
    disk.put_entry(&Entry::Object(obj.clone()));
    // The writer is busy (a slow disk): the segment waits in the queue.
    let (release, held) = std::sync::mpsc::channel::<()>();
    disk.jobs.send_surely(Job::Hold(held));
    disk.put_segment_wait(&obj, 0, &Bytes::from_static(b"queued"))
        .await;
    assert!(disk.has_segment(&obj, 0));
    assert_eq!(
        disk.get_segment(&obj, 0).await.as_deref(),
        Some(&b"queued"[..])
    );
    assert!(disk.inner.seg_meta(&obj, 0).is_none(), "not written yet");
    // Another version of the object does not see it.
    let other = Arc::new(Object {
        version: obj.version + 1,
        ..(*obj).clone()
    });
    assert!(!disk.has_segment(&other, 0));
    drop(release);
    disk.flush().await;
    assert!(
        disk.inner.pending().is_empty(),
        "written, then dropped from the queue"
    );
    assert_eq!(
        disk.get_segment(&obj, 0).await.as_deref(),
        Some(&b"queued"[..])
    );
    assert!(disk.inner.seg_meta(&obj, 0).is_some());
}

#[tokio::test]
async fn removing_an_object_forgets_its_queued_segments() {
    let dir = tempfile::tempdir().unwrap();
    let disk = open(&cfg(dir.path(), 1 << 30, 1 << 29)).await;
    let obj = object("a.com/r", 6, 6);
    disk.put_entry(&Entry::Object(obj.clone()));
    let (release, held) = std::sync::mpsc::channel::<()>();
    disk.jobs.send_surely(Job::Hold(held));
    disk.put_segment_wait(&obj, 0, &Bytes::from_static(b"queued"))
        .await;
    disk.remove(&obj.key);
    assert!(!disk.has_segment(&obj, 0));
    assert!(disk.get_segment(&obj, 0).await.is_none());
    drop(release);
    disk.flush().await;
    assert!(disk.get_segment(&obj, 0).await.is_none());
}

#[tokio::test]
async fn cleaning_goes_a_batch_at_a_time_and_keeps_what_was_used_meanwhile() {
    use super::writer::{CLEAN_BATCH, Cleaning, clean_step};
    let dir = tempfile::tempdir().unwrap();
    let disk = open(&cfg(dir.path(), 500_000, 250_000)).await;
    // The writer is held: only this test cleans.
    let (release, held) = std::sync::mpsc::channel::<()>();
    disk.jobs.send_surely(Job::Hold(held));
    let hash = |i: u64| hash_hex(&format!("a.com/{i}"));
    {
        let mut idx = disk.inner.lock();
        for i in 0..1000u64 {
            let info = ObjInfo {
                key: format!("a.com/{i}"),
                version: 1,
                head_bytes: 1000,
                segs: Vec::new(),
                atime: 1 + i,
                verified: false,
            };
            idx.objects.insert(hash(i), info);
        }
        idx.total = 1_000_000;
    }
    let mut cleaning = Cleaning::default();
    assert!(clean_step(&disk.inner, &mut cleaning), "more to do");
    assert_eq!(disk.bytes(), 1_000_000 - CLEAN_BATCH as u64 * 1000);
    let present = |i: u64| disk.inner.lock().objects.contains_key(&hash(i));
    assert!((0..CLEAN_BATCH as u64).all(|i| !present(i)), "oldest first");
    assert!(present(CLEAN_BATCH as u64));
    // Object 100 is read after being chosen: it stays.
    disk.inner.lock().objects.get_mut(&hash(100)).unwrap().atime = 5000;
    let mut steps = 1;
    while clean_step(&disk.inner, &mut cleaning) {
        steps += 1;
    }
    assert!(steps >= 750 / CLEAN_BATCH, "{steps} steps");
    assert!(present(100), "used since chosen");
    assert!(!present(101));
    assert!(present(999));
    assert_eq!(
        disk.bytes(),
        251_000,
        "down to the low mark, less the kept one"
    );
    assert_eq!(disk.inner.stats.disk_evictions.load(Relaxed), 749);
    // Below the high mark nothing more is chosen.
    assert!(!clean_step(&disk.inner, &mut cleaning));
    drop(release);
}

#[tokio::test]
async fn an_invalidation_is_never_dropped_and_takes_effect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let disk = open(&cfg(dir.path(), 1 << 30, 1 << 29)).await;
    let obj = object("a.com/inv", 6, 6);
    disk.put_entry(&Entry::Object(obj.clone()));
    disk.put_segment(&obj, 0, &Bytes::from_static(b"stale!"));
    disk.flush().await;
    assert!(disk.get_entry("a.com/inv").await.is_some());
    // The writer stops and its queue fills up (a slow disk under load).
    let release = disk.hold();
    let mut queued = 0;
    while disk.jobs.try_send(Job::Evict).is_ok() {
        queued += 1;
        assert!(queued <= super::QUEUE, "the queue never filled");
    }
    disk.remove("a.com/inv");
    assert!(
        disk.get_entry("a.com/inv").await.is_none(),
        "invalidated at once, before the writer gets to it"
    );
    // A purge asked meanwhile does not block its caller (an async task) on the full queue.
    let purge = disk.purge_prefix("b.com/");
    drop(release);
    assert_eq!(purge.await, 0);
    disk.flush().await;
    assert!(disk.get_entry("a.com/inv").await.is_none());
    assert!(
        !disk.inner.head_path(&hash_hex("a.com/inv")).exists(),
        "the removal was applied, not dropped"
    );
    // Stored again after the invalidation: readable (the pending removal is forgotten).
    disk.put_entry(&Entry::Object(obj.clone()));
    disk.flush().await;
    assert!(disk.get_entry("a.com/inv").await.is_some());
}
