//! `emberline backup` and `emberline restore`: one file holding a consistent copy of a data
//! directory's stores, and putting it back.
//!
//! **What a backup holds.** The redb files of the data directory: the projections
//! (`projections.redb`), the notification outbox (`outbox.redb`, when the notifier runs),
//! the embedded log with the embedded schema registry (`log.redb`, one file), and a registry
//! file of its own (`registry.redb`, which roles on Kafka keep). Each is a consistent
//! snapshot, taken in that order: what is derived from the log first, then the log, then the
//! registry — so the restored log holds at least every record the projections have applied
//! and the outbox has read, and the registry every schema id the log uses. (A restored
//! `up` catches up the rest, as after any restart.) Nothing else in the directory is copied.
//!
//! **Who takes it.** redb lets one process open a file. When no process holds the data
//! directory, the command opens the files itself. When one does (`emberline up`), the
//! command asks that process over its operations endpoint: `POST /backup` on `ops.addr`
//! (see [`routes`]), which answers with the backup file. The endpoint is guarded by a
//! random token the process writes to `backup.token` in its data directory (mode 0600), so
//! only someone who can read the data directory — who has the data anyway — can take one.
//!
//! **How one file is snapshotted.** The file is copied while this process holds the
//! database's write transaction (and writes nothing in it): no commit can happen
//! meanwhile, and every commit was flushed and fsynced before it returned, so the copy is
//! the file exactly as a `kill -9` at that instant would have left it, which redb opens
//! (and the embedded log guarantees acknowledged appends through). The copy is then opened
//! with redb, which rebuilds its allocator state and checks every page's checksum, and
//! closed cleanly; that clean file goes into the backup. Writers wait for the local file
//! copy only (a few ms per 10 MB), not for verifying or sending it. Chosen over copying
//! table by table inside a read transaction (which would not block writers at all)
//! because redb opens a table only with its key and value types: the backup would have to
//! repeat every store's table definitions and would silently miss a table added later.
//!
//! **The file.** `EMBERLINE-BACKUP 1\n`, then per store `file <name> <bytes>\n` and its
//! bytes, then `end <checksum>\n` (FNV-1a, 64 bits, of everything before `end`), so a
//! truncated or damaged backup is refused before anything is restored.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use emberline_common::redb_file::ReopeningDatabase;
use emberline_log::RedbDatabase;

use crate::config::Config;

/// The stores a backup may hold, in the order they are snapshotted.
const STORES: [&str; 4] = [
    "projections.redb",
    "outbox.redb",
    "log.redb",
    "registry.redb",
];

/// The file in the data directory holding the token `POST /backup` asks for.
pub(crate) const TOKEN_FILE: &str = "backup.token";

const MAGIC: &str = "EMBERLINE-BACKUP 1\n";

/// A store's database as a backup takes it: the one open at the time.
pub(crate) trait Store: Send + Sync {
    /// Runs `f` on the database open now (it may have been reopened since the store was
    /// opened).
    fn with_current(&self, f: &mut dyn FnMut(&RedbDatabase) -> Result<()>) -> Result<()>;
}

impl Store for RedbDatabase {
    fn with_current(&self, f: &mut dyn FnMut(&RedbDatabase) -> Result<()>) -> Result<()> {
        f(self)
    }
}

impl Store for ReopeningDatabase {
    fn with_current(&self, f: &mut dyn FnMut(&RedbDatabase) -> Result<()>) -> Result<()> {
        let db = self.current()?;
        f(&db)
    }
}

type Held = Vec<(PathBuf, Arc<dyn Store>)>;

/// The stores this process holds open, for `POST /backup`: weakly, so that the register
/// never keeps a store open. A redb file is closed cleanly only when its last handle drops;
/// a handle kept here for the life of the process would leave every file marked as needing
/// repair at exit, so the next open would read and check the whole file, and
/// `emberline status` (which opens read-only, and cannot repair) could not read it at all.
static HELD: Mutex<Vec<(PathBuf, Weak<dyn Store>)>> = Mutex::new(Vec::new());

/// Records that this process holds the store at `path`, so the operations endpoint can back
/// it up while it is open, and makes sure its data directory holds this process's backup
/// token.
pub(crate) fn hold(path: &Path, store: Arc<dyn Store>) {
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    held.retain(|(p, s)| p != path && s.strong_count() > 0);
    held.push((path.to_owned(), Arc::downgrade(&store)));
    if let Some(dir) = path.parent()
        && let Err(e) = write_token(dir)
    {
        tracing::warn!(error = %format!("{e:#}"), dir = %dir.display(), "cannot write the backup token; `emberline backup` will not be able to ask this process");
    }
}

/// The stores this process holds open, with their paths.
pub(crate) fn held() -> Held {
    HELD.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(|(path, store)| Some((path.clone(), store.upgrade()?)))
        .collect()
}

/// This process's token, random, made once.
fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut bytes = [0u8; 24];
        let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        if random.is_err() {
            // No /dev/urandom: the standard library's per-process random hash keys.
            use std::hash::{BuildHasher, Hasher};
            for chunk in bytes.chunks_mut(8) {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(emberline_common::clock::now_nanos());
                let n = h.finish().to_le_bytes();
                chunk.copy_from_slice(&n[..chunk.len()]);
            }
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

fn write_token(dir: &Path) -> Result<()> {
    let path = dir.join(TOKEN_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(token().as_bytes())?;
    Ok(())
}

/// The operations endpoint's backup route: `POST /backup` with `Authorization: Bearer
/// <token>` answers with a backup of the stores this process holds.
pub(crate) fn routes() -> Router {
    Router::new().route("/backup", post(serve_backup))
}

fn authorized(headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = token();
    // Compared in constant time.
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn serve_backup(headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            format!(
                "a backup needs `Authorization: Bearer <the {TOKEN_FILE} of the data directory>`\n"
            ),
        )
            .into_response();
    }
    let held = held();
    let Some(dir) = held
        .first()
        .and_then(|(p, _)| p.parent())
        .map(Path::to_owned)
    else {
        return (
            StatusCode::NOT_FOUND,
            "this process holds no embedded store\n",
        )
            .into_response();
    };
    let archive = dir.join(format!(
        ".backup-{}.tmp",
        emberline_common::clock::now_nanos()
    ));
    let written = {
        let archive = archive.clone();
        tokio::task::spawn_blocking(move || -> Result<std::fs::File> {
            let result = write_archive(&held, &archive);
            let file = result.and_then(|_| Ok(std::fs::File::open(&archive)?));
            // The open file stays readable; the name goes now, whatever happened.
            let _ = std::fs::remove_file(&archive);
            file
        })
        .await
    };
    let file = match written {
        Ok(Ok(file)) => file,
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "backup failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let length = file.metadata().map(|m| m.len()).ok();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut chunk = vec![0u8; 1 << 20];
            match file.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let mut response =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
    if let Some(length) = length
        && let Ok(value) = length.to_string().parse()
    {
        response.headers_mut().insert(header::CONTENT_LENGTH, value);
    }
    response
}

/// The rank of a store in [`STORES`] (unknown names last).
fn rank(path: &Path) -> usize {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    STORES
        .iter()
        .position(|s| *s == name)
        .unwrap_or(STORES.len())
}

/// FNV-1a, 64 bits: catches truncation and damage, not tampering.
#[derive(Clone, Copy)]
struct Checksum(u64);

impl Checksum {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Writes a backup of `stores` to `out`: each snapshotted in [`STORES`] order (see the
/// module docs). Returns each store's name and size.
fn write_archive(stores: &[(PathBuf, Arc<dyn Store>)], out: &Path) -> Result<Vec<(String, u64)>> {
    let mut stores = stores.to_vec();
    stores.sort_by_key(|(p, _)| rank(p));
    let mut archive = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    let mut sum = Checksum::new();
    let mut put = |archive: &mut std::io::BufWriter<std::fs::File>, bytes: &[u8]| {
        sum.update(bytes);
        archive.write_all(bytes)
    };
    put(&mut archive, MAGIC.as_bytes())?;
    let mut written = Vec::new();
    for (path, db) in &stores {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("a store without a file name")?
            .to_owned();
        let copy = out.with_extension(format!("{name}.tmp"));
        snapshot(db.as_ref(), path, &copy)
            .with_context(|| format!("snapshotting {}", path.display()))?;
        let result = (|| -> Result<u64> {
            let mut file = std::fs::File::open(&copy)?;
            let len = file.metadata()?.len();
            put(&mut archive, format!("file {name} {len}\n").as_bytes())?;
            let mut buf = vec![0u8; 1 << 20];
            let mut left = len;
            while left > 0 {
                let n = file.read(&mut buf)?;
                anyhow::ensure!(n > 0, "{} shrank while being read", copy.display());
                let n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
                put(&mut archive, &buf[..n])?;
                left -= n as u64;
            }
            Ok(len)
        })();
        let _ = std::fs::remove_file(&copy);
        written.push((name, result?));
    }
    let end = format!("end {:016x}\n", sum.0);
    archive.write_all(end.as_bytes())?;
    let file = archive.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(written)
}

/// Copies the store at `path` (open as `db`) to `copy` while holding its write
/// transaction, then opens the copy (redb repairs and checks it) and closes it cleanly.
fn snapshot(store: &dyn Store, path: &Path, copy: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    {
        store.with_current(&mut |db| {
            let txn = db.begin_write()?;
            std::fs::copy(path, copy).with_context(|| format!("copying to {}", copy.display()))?;
            txn.abort()?;
            Ok(())
        })?;
    }
    let blocked = started.elapsed();
    verify(copy)?;
    tracing::info!(store = %path.display(), writers_waited_ms = blocked.as_millis() as u64, "store snapshotted");
    Ok(())
}

/// Opens the redb file at `path` (repairing it if it was not closed cleanly), checks every
/// page, and closes it cleanly.
fn verify(path: &Path) -> Result<()> {
    let mut db =
        RedbDatabase::open(path).with_context(|| format!("opening the copy {}", path.display()))?;
    anyhow::ensure!(
        db.check_integrity()
            .with_context(|| format!("checking {}", path.display()))?,
        "{} needed repairs after its copy was opened",
        path.display()
    );
    Ok(())
}

/// What opening a data directory's stores found.
enum Local {
    /// This process opened every store present.
    Opened(Held),
    /// Another process holds at least one.
    Held(PathBuf),
}

fn open_local(dir: &Path) -> Result<Local> {
    let mut opened = Vec::new();
    for name in STORES {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        match RedbDatabase::open(&path) {
            Ok(db) => opened.push((path, Arc::new(db) as Arc<dyn Store>)),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Ok(Local::Held(path)),
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        }
    }
    Ok(Local::Opened(opened))
}

/// `emberline backup <file>`: a backup of the data directory. Taken here when no process
/// holds the directory, else by that process through its operations endpoint
/// (`ops_addr`, default `ops.addr`).
pub(crate) async fn backup(
    config: &Config,
    file: &Path,
    ops_addr: Option<SocketAddr>,
) -> Result<()> {
    let dir = config.data_dir()?;
    let partial = partial_name(file);
    let local = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || open_local(&dir)).await??
    };
    match local {
        Local::Opened(stores) => {
            anyhow::ensure!(
                !stores.is_empty(),
                "{} holds no Emberline store ({})",
                dir.display(),
                STORES.join(", ")
            );
            let out = partial.clone();
            let written =
                tokio::task::spawn_blocking(move || write_archive(&stores, &out)).await??;
            tracing::info!(stores = ?written, "backup taken from the data directory (no process holds it)");
        }
        Local::Held(path) => {
            let addr = ops_addr.or(config.ops.addr).with_context(|| {
                format!(
                    "{} is held by a running process, which takes the backup: set ops.addr (in the \
                     configuration or EMBERLINE__OPS__ADDR) for that process, or pass --ops-addr \
                     with its operations endpoint",
                    path.display()
                )
            })?;
            fetch(&dir, addr, &partial).await.with_context(|| {
                format!(
                    "asking the process that holds {} (ops endpoint {addr})",
                    dir.display()
                )
            })?;
        }
    }
    let stores = {
        let partial = partial.clone();
        tokio::task::spawn_blocking(move || check_archive(&partial)).await?
    };
    let stores = match stores {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.context("the backup just written does not read back"));
        }
    };
    std::fs::rename(&partial, file)
        .with_context(|| format!("renaming {} to {}", partial.display(), file.display()))?;
    tracing::info!(file = %file.display(), stores = ?stores, "backup written");
    Ok(())
}

fn partial_name(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Asks the process serving `addr` for a backup and writes it to `out`.
async fn fetch(dir: &Path, addr: SocketAddr, out: &Path) -> Result<()> {
    let token_path = dir.join(TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("reading the backup token {}", token_path.display()))?;
    let client = emberline_common::http::client(std::time::Duration::from_secs(24 * 3_600))?;
    let mut response = client
        .post(format!("http://{addr}/backup"))
        .header("authorization", format!("Bearer {}", token.trim()))
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("the process answered {status}: {}", body.trim());
    }
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    while let Some(chunk) = response.chunk().await? {
        file.write_all(&chunk)?;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// One store in a backup file.
struct Entry {
    name: String,
    len: u64,
}

/// Reads a backup file through `visit` (each store's name, size and bytes), checking its
/// form and checksum; the entries, once the whole file has checked out.
fn read_archive(
    path: &Path,
    mut visit: impl FnMut(&Entry, &mut dyn Read) -> Result<()>,
) -> Result<Vec<Entry>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut sum = Checksum::new();
    let mut line = String::new();
    reader.read_line(&mut line)?;
    anyhow::ensure!(
        line == MAGIC,
        "{} is not an Emberline backup",
        path.display()
    );
    sum.update(line.as_bytes());
    let mut entries = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let words: Vec<&str> = line.trim_end_matches('\n').split(' ').collect();
        match words.as_slice() {
            ["file", name, len] => {
                sum.update(line.as_bytes());
                let entry = Entry {
                    name: (*name).to_owned(),
                    len: len.parse().context("a store's size")?,
                };
                anyhow::ensure!(
                    STORES.contains(&entry.name.as_str()),
                    "unknown store {:?} in the backup",
                    entry.name
                );
                let mut body = Summed {
                    inner: (&mut reader).take(entry.len),
                    sum: &mut sum,
                };
                visit(&entry, &mut body)?;
                // Whatever `visit` left unread still counts.
                std::io::copy(&mut body, &mut std::io::sink())?;
                anyhow::ensure!(
                    body.inner.limit() == 0,
                    "the backup is truncated in {}",
                    entry.name
                );
                entries.push(entry);
            }
            ["end", checksum] => {
                anyhow::ensure!(
                    *checksum == format!("{:016x}", sum.0),
                    "the backup is damaged: its checksum does not match"
                );
                return Ok(entries);
            }
            _ => anyhow::bail!("the backup is truncated or damaged (no end marker)"),
        }
    }
}

/// A reader that adds what it reads to a checksum.
struct Summed<'a, R> {
    inner: R,
    sum: &'a mut Checksum,
}

impl<R: Read> Read for Summed<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
}

/// Checks a backup file's form and checksum; its stores' names and sizes.
fn check_archive(path: &Path) -> Result<Vec<(String, u64)>> {
    let entries = read_archive(path, |_, _| Ok(()))?;
    Ok(entries.into_iter().map(|e| (e.name, e.len)).collect())
}

/// `emberline restore <file>`: writes the backup's stores into the data directory, which
/// must be empty — or, with `force`, held by no process, its stores then replaced (every
/// `*.redb` in it is removed first; other files are left).
pub(crate) fn restore(config: &Config, file: &Path, force: bool) -> Result<()> {
    let dir = config.data_dir()?;
    // Read the whole backup once before touching the directory.
    let stores = check_archive(file).with_context(|| format!("reading {}", file.display()))?;
    let existing: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    if !existing.is_empty() {
        anyhow::ensure!(
            force,
            "{} is not empty: restore into an empty data directory, or pass --force to replace \
             its stores",
            dir.display()
        );
        if let Local::Held(path) = open_local(&dir)? {
            anyhow::bail!(
                "{} is held by a running process: stop it before restoring over its data",
                path.display()
            );
        }
        for path in existing
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "redb"))
        {
            std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let restoring = |name: &str| dir.join(format!("{name}.restoring"));
    let written = read_archive(file, |entry, body| {
        let path = restoring(&entry.name);
        let mut out =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        std::io::copy(body, &mut out)?;
        out.sync_all()?;
        Ok(())
    });
    if let Err(e) = written {
        for (name, _) in &stores {
            let _ = std::fs::remove_file(restoring(name));
        }
        return Err(e.context(format!("restoring {}", file.display())));
    }
    for (name, _) in &stores {
        let path = dir.join(name);
        std::fs::rename(restoring(name), &path)
            .with_context(|| format!("moving {} into place", path.display()))?;
        verify(&path)?;
    }
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    tracing::info!(dir = %dir.display(), stores = ?stores, "backup restored");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");

    fn store(path: &Path, rows: std::ops::Range<u64>) -> Arc<RedbDatabase> {
        let db = RedbDatabase::create(path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut t = txn.open_table(T).expect("table");
            for i in rows {
                t.insert(i, i * 2).expect("insert");
            }
        }
        txn.commit().expect("commit");
        Arc::new(db)
    }

    fn rows(path: &Path) -> Vec<(u64, u64)> {
        use redb::{ReadableDatabase, ReadableTable};
        let db = RedbDatabase::open(path).expect("open");
        let txn = db.begin_read().expect("read");
        let t = txn.open_table(T).expect("table");
        t.iter()
            .expect("iter")
            .map(|e| e.map(|(k, v)| (k.value(), v.value())).expect("row"))
            .collect()
    }

    fn config(dir: &Path) -> Config {
        Config {
            data_dir: Some(dir.to_owned()),
            ..Config::default()
        }
    }

    #[test]
    fn a_backup_of_open_stores_restores_their_rows_in_order_and_refuses_damage() {
        let root = tempfile::tempdir().expect("tempdir");
        let live = root.path().join("live");
        std::fs::create_dir_all(&live).expect("dir");
        let log = store(&live.join("log.redb"), 0..1_000);
        let projections = store(&live.join("projections.redb"), 0..10);
        let archive = root.path().join("backup");
        // Stores handed over out of order are snapshotted derived state first.
        let written = write_archive(
            &[
                (live.join("log.redb"), log.clone() as Arc<dyn Store>),
                (live.join("projections.redb"), projections),
            ],
            &archive,
        )
        .expect("backup");
        let names: Vec<&str> = written.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["projections.redb", "log.redb"]);
        // Still writable after the snapshot (the write transaction was let go).
        store_more(&log).expect("still writable");

        let restored = root.path().join("restored");
        restore(&config(&restored), &archive, false).expect("restore");
        assert_eq!(rows(&restored.join("log.redb")).len(), 1_000);
        assert_eq!(rows(&restored.join("projections.redb")).len(), 10);
        assert!(!restored.join("log.redb.restoring").exists());

        // A non-empty directory is refused, and replaced with --force.
        let refused = restore(&config(&restored), &archive, false).expect_err("not empty");
        assert!(format!("{refused:#}").contains("not empty"), "{refused:#}");
        restore(&config(&restored), &archive, true).expect("restore --force");
        // Over a directory a process holds, even --force is refused.
        let held = store(&live.join("outbox.redb"), 0..1);
        let refused = restore(&config(&live), &archive, true).expect_err("held");
        assert!(format!("{refused:#}").contains("held"), "{refused:#}");
        drop(held);

        // One flipped byte, or a cut, is refused before anything is written.
        let bytes = std::fs::read(&archive).expect("read");
        for (what, damaged) in [
            ("flipped", {
                let mut b = bytes.clone();
                let at = b.len() / 2;
                b[at] ^= 1;
                b
            }),
            ("cut", bytes[..bytes.len() - 100].to_vec()),
        ] {
            std::fs::write(&archive, damaged).expect("write");
            let empty = root.path().join(format!("empty-{what}"));
            let e = restore(&config(&empty), &archive, false).expect_err(what);
            assert!(
                format!("{e:#}").contains("damaged") || format!("{e:#}").contains("truncated"),
                "{what}: {e:#}"
            );
            assert!(!empty.join("log.redb").exists(), "{what}");
        }
    }

    fn store_more(db: &RedbDatabase) -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(T)?.insert(5_000, 1)?;
        txn.commit()?;
        Ok(())
    }

    #[test]
    fn only_the_token_of_the_data_directory_is_accepted() {
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers));
        headers.insert(
            header::AUTHORIZATION,
            "Bearer nope".parse().expect("header"),
        );
        assert!(!authorized(&headers));
        let good = format!("Bearer {}", token());
        headers.insert(header::AUTHORIZATION, good.parse().expect("header"));
        assert!(authorized(&headers));
    }
}
