//! The published containers, one file each in the content directory: `<content ID>.tcc`.
//!
//! A container is public (its key is in no file, only enveloped in the registry), so the
//! directory needs no secrecy; several `serve` processes share it (a shared volume) as they
//! share the registry.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rand_core::CryptoRng;
use treecast_distributor::Distributor;
use treecast_protocol::{ContentId, Error};
use treecast_registry::{ContentRecord, Registry};

/// The content directory.
#[derive(Debug)]
pub struct ContentDir {
    dir: PathBuf,
}

impl ContentDir {
    /// The directory at `dir`, created if missing.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The file of a content's container.
    pub fn path(&self, content: ContentId) -> PathBuf {
        self.dir.join(format!("{}.tcc", content.0))
    }

    /// Writes, syncs and deletes a small file in the directory: whether its disk accepts a
    /// write (readiness).
    ///
    /// # Errors
    /// The I/O error of the first step that failed (a full disk, a read-only mount).
    pub fn probe_write(&self) -> std::io::Result<()> {
        let mut probe = tempfile::Builder::new()
            .prefix(".ready-")
            .tempfile_in(&self.dir)?;
        probe.write_all(&[0u8; 4096])?;
        probe.as_file().sync_all()?;
        probe.close()
    }

    /// A new temporary file in the directory for an upload's body, deleted when dropped (on
    /// the same file system as the containers, and never read by anything but its publish).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created.
    pub fn upload(&self) -> Result<tempfile::NamedTempFile, Error> {
        tempfile::Builder::new()
            .prefix(".upload-")
            .tempfile_in(&self.dir)
            .map_err(|e| Error::Io(format!("{}: {e}", self.dir.display())))
    }

    /// Publishes `plain` (read to its end, a chunk at a time) as a new content: its container is written to a temporary file,
    /// synced, and renamed to its final name once the registry holds the content, so that a
    /// container file is never seen half-written.
    ///
    /// # Errors
    /// As [`Distributor::publish`], and [`Error::Io`].
    pub fn publish<R: Registry>(
        &self,
        distributor: &Distributor<R>,
        plain: impl Read,
        format: Format,
        rng: &mut impl CryptoRng,
    ) -> Result<ContentRecord, Error> {
        let mut suffix = [0u8; 8];
        rng.fill_bytes(&mut suffix);
        let temporary = self
            .dir
            .join(format!(".publishing-{}", u64::from_le_bytes(suffix)));
        let io = |e: std::io::Error| Error::Io(format!("{}: {e}", temporary.display()));
        let result = (|| {
            let mut file = File::create(&temporary).map_err(io)?;
            let mut out = std::io::BufWriter::new(&mut file);
            let record = match format {
                Format::Container => distributor.publish(plain, &mut out, rng)?,
                Format::Cenc => {
                    // The packager holds the file (at most the upload limit) in memory.
                    let mut clear = Vec::new();
                    let mut plain = plain;
                    plain.read_to_end(&mut clear).map_err(io)?;
                    distributor.publish_cenc(&clear, &mut out, rng)?
                }
            };
            out.flush().map_err(io)?;
            drop(out);
            file.sync_all().map_err(io)?;
            std::fs::rename(&temporary, self.path(record.id)).map_err(io)?;
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
            Ok(record)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        result
    }
}

/// What a published content is packaged as.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Format {
    /// treecast's container (`docs/formats.md`), from any bytes.
    Container,
    /// A Common Encryption MP4 (issue 30, `docs/cenc.md`), from a clear fragmented MP4: what a
    /// browser plays through EME.
    Cenc,
}
