//! The streaming zip writer read back by the `zip` crate: contents, modes, times,
//! and the zip64 end records past 65,535 entries.

#![allow(clippy::unwrap_used)]

use std::io::Read;

use hearth_move::zip::{EntryMeta, ZipWriter};

#[tokio::test]
async fn entries_read_back() {
    let mut z = ZipWriter::new(Vec::new());
    let t = 1_700_000_000; // 2023-11-14T22:13:20Z
    z.add_bytes(
        "a/b.json",
        EntryMeta {
            mode: 0o640,
            mtime: t,
        },
        b"{\"x\":1}",
    )
    .await
    .unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let mut r = big.as_slice();
    let n = z
        .add_reader(
            "My Cozy/Files/été.bin",
            EntryMeta {
                mode: 0o750,
                mtime: t,
            },
            &mut r,
        )
        .await
        .unwrap();
    assert_eq!(n, big.len() as u64);
    z.add_bytes(
        "empty",
        EntryMeta {
            mode: 0o640,
            mtime: t,
        },
        b"",
    )
    .await
    .unwrap();
    let bytes = z.finish().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(archive.len(), 3);
    let mut f = archive.by_name("My Cozy/Files/été.bin").unwrap();
    assert_eq!(f.unix_mode().unwrap() & 0o777, 0o750);
    let m = f.last_modified().unwrap();
    assert_eq!(
        (m.year(), m.month(), m.day(), m.hour(), m.minute()),
        (2023, 11, 14, 22, 13)
    );
    let mut out = Vec::new();
    f.read_to_end(&mut out).unwrap();
    assert_eq!(out, big);
    drop(f);
    let mut f = archive.by_index(0).unwrap();
    assert_eq!(f.name(), "a/b.json");
    assert_eq!(f.unix_mode().unwrap() & 0o777, 0o640);
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "{\"x\":1}");
}

#[tokio::test]
async fn zip64_past_65535_entries() {
    let mut z = ZipWriter::new(Vec::new());
    let meta = EntryMeta {
        mode: 0o640,
        mtime: 0,
    };
    for i in 0..70_000u32 {
        z.add_bytes(&format!("{i}"), meta, &i.to_le_bytes())
            .await
            .unwrap();
    }
    let bytes = z.finish().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(archive.len(), 70_000);
    for i in [0u32, 65_534, 65_535, 69_999] {
        let mut f = archive.by_name(&i.to_string()).unwrap();
        let mut out = Vec::new();
        f.read_to_end(&mut out).unwrap();
        assert_eq!(out, i.to_le_bytes());
    }
}

/// An entry past 4 GiB, after another one, so that the size and the offset both
/// need zip64 (extra field in the central directory, 24-byte data descriptor).
/// Writes 4 GiB to a temporary file: run with `--ignored`.
#[tokio::test]
#[ignore = "writes 4 GiB to disk"]
async fn zip64_entry_past_4_gib() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.zip");
    let file = tokio::fs::File::create(&path).await.unwrap();
    let mut z = ZipWriter::new(tokio::io::BufWriter::new(file));
    let meta = EntryMeta {
        mode: 0o640,
        mtime: 0,
    };
    let size = (4u64 << 30) + 10;
    let mut big = tokio::io::repeat(7).take(size);
    assert_eq!(z.add_reader("big", meta, &mut big).await.unwrap(), size);
    z.add_bytes("after", meta, b"tail").await.unwrap();
    let file = z.finish().await.unwrap().into_inner();
    file.sync_all().await.unwrap();
    drop(file);
    let read = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::BufReader::new(f)).unwrap();
        assert_eq!(archive.by_name("big").unwrap().size(), size);
        let mut tail = String::new();
        archive
            .by_name("after")
            .unwrap()
            .read_to_string(&mut tail)
            .unwrap();
        assert_eq!(tail, "tail");
        // The whole content, CRC checked by the reader at the end.
        let mut f = archive.by_name("big").unwrap();
        let n = std::io::copy(&mut f, &mut std::io::sink()).unwrap();
        assert_eq!(n, size);
    });
    read.await.unwrap();
}
