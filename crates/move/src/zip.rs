//! A streaming zip writer over any [`AsyncWrite`]: entries are written as they come
//! (local header with a data descriptor, so sizes and CRC need not be known in
//! advance), nothing is buffered beyond one copy chunk, and zip64 records are added
//! only where a size, an offset or the entry count needs them (as Go's `archive/zip`
//! does, so readers of both agree). Entries are STORED: the contents are mostly
//! already compressed (photos, videos, PDFs) and storing keeps the export as fast as
//! a plain copy.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const LOCAL_SIG: u32 = 0x0403_4b50;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const END_SIG: u32 = 0x0605_4b50;
const END64_SIG: u32 = 0x0606_4b50;
const LOCATOR64_SIG: u32 = 0x0706_4b50;
/// Bit 3: sizes in a data descriptor; bit 11: UTF-8 names.
const FLAGS: u16 = 0x0008 | 0x0800;
const MAX32: u64 = 0xFFFF_FFFF;
const MAX16: u64 = 0xFFFF;
/// Made by: Unix (3), spec version 4.5.
const MADE_BY: u16 = (3 << 8) | 45;

struct Central {
    name: String,
    crc: u32,
    size: u64,
    offset: u64,
    mode: u32,
    dos_time: u16,
    dos_date: u16,
}

/// The options of one entry.
#[derive(Debug, Clone, Copy)]
pub struct EntryMeta {
    /// Unix permission bits (`0o640`, `0o750`).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch (UTC).
    pub mtime: u64,
}

pub struct ZipWriter<W> {
    out: W,
    written: u64,
    entries: Vec<Central>,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> ZipWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            entries: Vec::new(),
            buf: vec![0; 64 * 1024],
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    async fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes).await?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes one entry whose content is `bytes`.
    pub async fn add_bytes(&mut self, name: &str, meta: EntryMeta, bytes: &[u8]) -> io::Result<()> {
        let mut r = bytes;
        self.add_reader(name, meta, &mut r).await.map(|_| ())
    }

    /// Writes one entry whose content is everything `r` gives; answers its size.
    pub async fn add_reader<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        name: &str,
        meta: EntryMeta,
        r: &mut R,
    ) -> io::Result<u64> {
        let offset = self.written;
        let (dos_time, dos_date) = dos_datetime(meta.mtime);
        let mut h = Vec::with_capacity(30 + name.len());
        h.extend(LOCAL_SIG.to_le_bytes());
        h.extend(20u16.to_le_bytes()); // version needed (45 only when zip64 is used)
        h.extend(FLAGS.to_le_bytes());
        h.extend(0u16.to_le_bytes()); // stored
        h.extend(dos_time.to_le_bytes());
        h.extend(dos_date.to_le_bytes());
        h.extend([0u8; 12]); // crc, sizes: in the descriptor
        h.extend(
            u16::try_from(name.len())
                .map_err(|_| bad("name too long"))?
                .to_le_bytes(),
        );
        h.extend(0u16.to_le_bytes());
        h.extend(name.as_bytes());
        self.put(&h).await?;
        let mut hasher = crc32fast::Hasher::new();
        let mut size = 0u64;
        let mut buf = std::mem::take(&mut self.buf);
        let res = async {
            loop {
                let n = r.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                self.put(&buf[..n]).await?;
                size += n as u64;
            }
            Ok::<(), io::Error>(())
        }
        .await;
        self.buf = buf;
        res?;
        let crc = hasher.finalize();
        let mut d = Vec::with_capacity(24);
        d.extend(DESCRIPTOR_SIG.to_le_bytes());
        d.extend(crc.to_le_bytes());
        if size > MAX32 {
            d.extend(size.to_le_bytes());
            d.extend(size.to_le_bytes());
        } else {
            d.extend((size as u32).to_le_bytes());
            d.extend((size as u32).to_le_bytes());
        }
        self.put(&d).await?;
        self.entries.push(Central {
            name: name.to_owned(),
            crc,
            size,
            offset,
            mode: meta.mode,
            dos_time,
            dos_date,
        });
        Ok(size)
    }

    /// Writes the central directory and flushes; answers the writer.
    pub async fn finish(mut self) -> io::Result<W> {
        let start = self.written;
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let needs64 = e.size > MAX32 || e.offset > MAX32;
            let mut extra = Vec::new();
            if needs64 {
                let mut body = Vec::new();
                if e.size > MAX32 {
                    body.extend(e.size.to_le_bytes());
                    body.extend(e.size.to_le_bytes());
                }
                if e.offset > MAX32 {
                    body.extend(e.offset.to_le_bytes());
                }
                extra.extend(1u16.to_le_bytes());
                extra.extend((body.len() as u16).to_le_bytes());
                extra.extend(body);
            }
            let clamp = |v: u64| if v > MAX32 { MAX32 as u32 } else { v as u32 };
            let mut c = Vec::with_capacity(46 + e.name.len() + extra.len());
            c.extend(CENTRAL_SIG.to_le_bytes());
            c.extend(MADE_BY.to_le_bytes());
            c.extend((if needs64 { 45u16 } else { 20u16 }).to_le_bytes());
            c.extend(FLAGS.to_le_bytes());
            c.extend(0u16.to_le_bytes());
            c.extend(e.dos_time.to_le_bytes());
            c.extend(e.dos_date.to_le_bytes());
            c.extend(e.crc.to_le_bytes());
            c.extend(clamp(e.size).to_le_bytes());
            c.extend(clamp(e.size).to_le_bytes());
            c.extend((e.name.len() as u16).to_le_bytes());
            c.extend((extra.len() as u16).to_le_bytes());
            c.extend(0u16.to_le_bytes()); // comment
            c.extend(0u16.to_le_bytes()); // disk
            c.extend(0u16.to_le_bytes()); // internal attributes
            c.extend(((0o100_000 | e.mode) << 16).to_le_bytes());
            c.extend(clamp(e.offset).to_le_bytes());
            c.extend(e.name.as_bytes());
            c.extend(extra);
            self.put(&c).await?;
        }
        let end = self.written;
        let size = end - start;
        let count = entries.len() as u64;
        if count >= MAX16 || size >= MAX32 || start >= MAX32 {
            let mut z = Vec::with_capacity(76);
            z.extend(END64_SIG.to_le_bytes());
            z.extend(44u64.to_le_bytes());
            z.extend(MADE_BY.to_le_bytes());
            z.extend(45u16.to_le_bytes());
            z.extend(0u32.to_le_bytes());
            z.extend(0u32.to_le_bytes());
            z.extend(count.to_le_bytes());
            z.extend(count.to_le_bytes());
            z.extend(size.to_le_bytes());
            z.extend(start.to_le_bytes());
            z.extend(LOCATOR64_SIG.to_le_bytes());
            z.extend(0u32.to_le_bytes());
            z.extend(end.to_le_bytes());
            z.extend(1u32.to_le_bytes());
            self.put(&z).await?;
        }
        let c16 = |v: u64| if v >= MAX16 { MAX16 as u16 } else { v as u16 };
        let c32 = |v: u64| if v >= MAX32 { MAX32 as u32 } else { v as u32 };
        let mut e = Vec::with_capacity(22);
        e.extend(END_SIG.to_le_bytes());
        e.extend([0u8; 4]);
        e.extend(c16(count).to_le_bytes());
        e.extend(c16(count).to_le_bytes());
        e.extend(c32(size).to_le_bytes());
        e.extend(c32(start).to_le_bytes());
        e.extend(0u16.to_le_bytes());
        self.put(&e).await?;
        self.out.flush().await?;
        Ok(self.out)
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

/// MS-DOS time and date of a Unix time (UTC), clamped to 1980..2107.
fn dos_datetime(secs: u64) -> (u16, u16) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = hearth_core::civil_from_days(days);
    if y < 1980 {
        return (0, (1 << 5) | 1);
    }
    let y = (y - 1980).min(127) as u16;
    let time =
        ((rem / 3600) as u16) << 11 | (((rem % 3600) / 60) as u16) << 5 | ((rem % 60) / 2) as u16;
    let date = y << 9 | (m as u16) << 5 | d as u16;
    (time, date)
}
