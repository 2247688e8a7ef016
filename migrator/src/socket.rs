//! The migrator's Unix socket: created with mode 0660; a stale socket file
//! (nobody listening) is replaced, a live one makes start-up fail, and a path
//! that is not a socket is never deleted.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

/// The listening socket systemd passed us (socket activation: `LISTEN_FDS`,
/// see `systemd/stonescriptdb-migrator.socket`), if any. With it, requests
/// that arrive while the migrator restarts wait in the socket's backlog
/// instead of failing.
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("cannot set permissions of {}: {e}", path.display()))?;
    Ok(listener)
}
