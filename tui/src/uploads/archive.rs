//! A tar of a file or a directory, as dstack's `create_file_archive` makes it: the walk honours
//! `.gitignore` (even outside a Git repo), `.dstackignore` and the Git excludes, keeps hidden
//! files, leaves `.git` out and is sorted (the same content gives the same archive, so the
//! daemon stores it once). A symlink that stays inside the root is kept as a relative link;
//! one that leads outside is replaced by what it points to. Owners are left out (uid and gid
//! 0, no names): the files belong to whoever unpacks them, the job's user.

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use tar::{Builder, EntryType, Header};

/// How entries are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One top entry `root` (the file or directory itself), then `root/...` (`files`).
    Root,
    /// The directory's contents at the top (`repos`).
    Contents,
}

/// Counts and hashes what goes to the file.
struct Hashing {
    inner: BufWriter<File>,
    hasher: Sha256,
    size: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Packs `path` into a temporary file: the file (at its start), its size, its SHA-256 in hex.
pub fn pack(path: &Path, layout: Layout) -> io::Result<(File, u64, String)> {
    let root = path.canonicalize()?;
    let writer = Hashing {
        inner: BufWriter::new(tempfile::tempfile()?),
        hasher: Sha256::new(),
        size: 0,
    };
    let mut builder = Builder::new(writer);
    let meta = fs::metadata(&root)?;
    if meta.is_dir() {
        if layout == Layout::Root {
            add(&mut builder, &root, &root, "root")?;
        }
        for entry in walk(&root)? {
            let rel = entry.strip_prefix(&root).map_err(io::Error::other)?;
            let rel = rel.to_string_lossy();
            let name = match layout {
                Layout::Root => format!("root/{rel}"),
                Layout::Contents => rel.into_owned(),
            };
            add(&mut builder, &root, &entry, &name)?;
        }
    } else {
        add(&mut builder, &root, &root, "root")?;
    }
    let writer = builder.into_inner()?;
    let Hashing {
        inner,
        hasher,
        size,
    } = writer;
    let mut file = inner.into_inner().map_err(|e| e.into_error())?;
    file.flush()?;
    file.rewind()?;
    let hash = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((file, size, hash))
}

/// Every path under `root` that is not ignored, sorted.
fn walk(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut overrides = ignore::overrides::OverrideBuilder::new(root);
    overrides.add("!/.git/").map_err(io::Error::other)?;
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .require_git(false)
        .add_custom_ignore_filename(".dstackignore")
        .overrides(overrides.build().map_err(io::Error::other)?)
        .follow_links(false)
        .build();
    let mut paths = Vec::new();
    for entry in walker {
        let entry = entry.map_err(io::Error::other)?;
        if entry.depth() > 0 {
            paths.push(entry.into_path());
        }
    }
    paths.sort();
    Ok(paths)
}

fn header(meta: &fs::Metadata, kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(meta.mode() & 0o7777);
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn add<W: Write>(b: &mut Builder<W>, root: &Path, path: &Path, name: &str) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path)?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        let absolute = normalize(&parent.join(&target));
        if path != root && absolute.starts_with(root) {
            let mut h = header(&meta, EntryType::Symlink, 0);
            return b.append_link(&mut h, name, relative(parent, &absolute));
        }
        // Outside the root: what it points to.
        let real = fs::canonicalize(path)?;
        return add_real(b, &real, &fs::metadata(&real)?, name);
    }
    add_real(b, path, &meta, name)
}

fn add_real<W: Write>(
    b: &mut Builder<W>,
    path: &Path,
    meta: &fs::Metadata,
    name: &str,
) -> io::Result<()> {
    if meta.is_dir() {
        let mut h = header(meta, EntryType::Directory, 0);
        b.append_data(&mut h, format!("{name}/"), io::empty())
    } else if meta.is_file() {
        let mut h = header(meta, EntryType::Regular, meta.len());
        b.append_data(&mut h, name, File::open(path)?)
    } else {
        // Sockets, pipes and devices are not files to send.
        Ok(())
    }
}

/// `path` with `.` and `..` resolved by their names (without following links).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The relative path from the directory `from` to `to` (both absolute and normalised).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn names(file: File) -> Vec<String> {
        let mut archive = tar::Archive::new(file);
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let mut name = e.path().expect("path").display().to_string();
                if e.header().entry_type() == EntryType::Symlink {
                    let target = e.link_name().expect("link").expect("a target");
                    name = format!("{name} -> {}", target.display());
                }
                name
            })
            .collect()
    }

    #[test]
    fn ignored_files_and_git_stay_out_and_the_same_tree_gives_the_same_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::create_dir_all(d.join(".git/objects")).expect("git");
        fs::create_dir_all(d.join("src")).expect("src");
        fs::write(d.join(".gitignore"), "*.log\n").expect("gitignore");
        fs::write(d.join(".dstackignore"), "big/\n").expect("dstackignore");
        fs::create_dir_all(d.join("big")).expect("big");
        fs::write(d.join("big/blob"), "x").expect("blob");
        fs::write(d.join("train.log"), "noise").expect("log");
        fs::write(d.join(".env"), "A=1").expect("hidden");
        fs::write(d.join("src/main.py"), "print(1)").expect("main");
        std::os::unix::fs::symlink("src/main.py", d.join("link.py")).expect("link");
        let outside = tempfile::tempdir().expect("outside");
        fs::write(outside.path().join("o.txt"), "outer").expect("o");
        std::os::unix::fs::symlink(outside.path().join("o.txt"), d.join("o.txt")).expect("o");

        let (file, size, hash) = pack(d, Layout::Contents).expect("pack");
        assert_eq!(size, file.metadata().expect("meta").len());
        assert_eq!(
            names(file),
            [
                ".dstackignore",
                ".env",
                ".gitignore",
                "link.py -> src/main.py",
                "o.txt",
                "src/",
                "src/main.py"
            ]
        );
        let (_, _, again) = pack(d, Layout::Contents).expect("pack again");
        assert_eq!(hash, again);

        let (file, _, _) = pack(&d.join("src"), Layout::Root).expect("pack root");
        assert_eq!(names(file), ["root/", "root/main.py"]);
        let (file, _, _) = pack(&d.join("src/main.py"), Layout::Root).expect("pack a file");
        let mut archive = tar::Archive::new(file);
        let mut entry = archive
            .entries()
            .expect("entries")
            .next()
            .expect("one")
            .expect("entry");
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("read");
        assert_eq!(
            (entry.path().expect("path").display().to_string(), text),
            ("root".to_string(), "print(1)".to_string())
        );
    }

    #[test]
    fn relative_links_walk_up() {
        assert_eq!(
            relative(Path::new("/r/a/b"), Path::new("/r/c/d")),
            PathBuf::from("../../c/d")
        );
    }
}
