//! The migrator's Unix socket: it appears at its path with its final mode
//! (0660) — bound in a private directory, then renamed into place, so there
//! is never a moment with wider permissions; a stale socket file (nobody
//! listening) is replaced, a live one makes start-up fail, and a path that
//! is not a socket is never deleted. Each connection's peer is checked
//! ([`Peers`]): only the migrator's own user, root, or its group may talk
//! to it, whatever the file's mode.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tokio::net::{UnixListener, UnixStream};

/// Who may connect: the migrator's own user (the router runs as the same
/// user in the systemd units), root, and members of its group (the
/// socket's group; `Group=` in the unit).
#[derive(Debug, Clone, Copy)]
pub struct Peers {
    uid: u32,
    gid: u32,
}

impl Peers {
    /// This process's effective user and group (the owner of `/proc/self`).
    pub fn of_this_process() -> Result<Peers, String> {
        let meta = std::fs::metadata("/proc/self")
            .map_err(|e| format!("cannot read this process's user from /proc/self: {e}"))?;
        Ok(Peers {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == self.uid || uid == 0 || gid == self.gid
    }

    /// `Ok` for an allowed peer; otherwise the log line's text.
    pub fn check(&self, stream: &UnixStream) -> Result<(), String> {
        let cred = stream
            .peer_cred()
            .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
        if self.allows(cred.uid(), cred.gid()) {
            return Ok(());
        }
        Err(format!(
            "uid {} gid {} (pid {}) may not use the migrator socket: only uid {}, root or gid {} may",
            cred.uid(),
            cred.gid(),
            cred.pid().map_or_else(|| "?".into(), |p| p.to_string()),
            self.uid,
            self.gid
        ))
    }
}

/// The listening socket systemd passed us (socket activation: `LISTEN_FDS`,
/// see `systemd/stonescriptdb-migrator.socket`), if any. With it, requests
/// that arrive while the migrator restarts wait in the socket's backlog
/// instead of failing.
/// The socket to serve on: the one systemd passed (`true`: it stays when
/// the migrator stops, queueing requests for the next start), else
/// `path`, bound here.
pub fn listen(path: &Path) -> Result<(UnixListener, bool), String> {
    match from_systemd()? {
        Some(l) => Ok((l, true)),
        None => Ok((bind(path)?, false)),
    }
}

pub fn from_systemd() -> Result<Option<UnixListener>, String> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let listener = fds
        .take_unix_listener(0)
        .map_err(|e| format!("the socket passed by systemd is unusable: {e}"))?
        .ok_or("systemd passed a socket that is not a Unix stream socket")?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot use the socket passed by systemd: {e}"))?;
    UnixListener::from_std(listener)
        .map(Some)
        .map_err(|e| format!("cannot use the socket passed by systemd: {e}"))
}

pub fn bind(path: &Path) -> Result<UnixListener, String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "another migrator is already listening on {} (stop it first)",
                    path.display()
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
        }
        Ok(_) => {
            return Err(format!(
            "{} exists and is not a socket; refusing to replace it (set MIGRATOR_SOCKET elsewhere)",
            path.display()
        ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Bind in a directory only we can enter, give the socket its mode, then
    // rename it into place: it never exists at `path` with the umask's mode.
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} names no file", path.display()))?;
    let private = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| format!("cannot create {}: {e}", private.display()))?;
    let staged = private.join("s");
    let bound = UnixListener::bind(&staged)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))
        .and_then(|l| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o660))
                .map_err(|e| format!("cannot set permissions of {}: {e}", path.display()))?;
            std::fs::rename(&staged, path)
                .map_err(|e| format!("cannot move the socket to {}: {e}", path.display()))?;
            Ok(l)
        });
    let _ = std::fs::remove_dir_all(&private);
    bound
}
