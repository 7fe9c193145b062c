//! Pseudo-terminals for exec sessions with a TTY (`kubus exec -it`): the
//! agent keeps the master side, readable and writable without blocking a
//! thread, and hands the command the other side as its controlling
//! terminal.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The agent's side of a terminal; cheap to clone (one file).
#[derive(Clone)]
pub struct Pty {
    master: Arc<AsyncFd<OwnedFd>>,
}

/// Open a terminal of `width` × `height`; returns the agent's side and the
/// command's (to give it as stdin, stdout and stderr).
pub fn open(width: u16, height: u16) -> io::Result<(Pty, File)> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(name.as_bytes()));
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)?;
    let flags = fcntl_getfl(&master)?;
    fcntl_setfl(&master, flags | OFlags::NONBLOCK)?;
    // SAFETY: the AsyncFd owns `master` (an OwnedFd), so the descriptor
    // stays open and the same for as long as it is registered.
    #[allow(unsafe_code)]
    let registered = unsafe { AsyncFd::register(master) };
    let pty = Pty {
        master: Arc::new(registered.map_err(io::Error::from)?),
    };
    pty.resize(width, height)?;
    Ok((pty, slave))
}

impl Pty {
    /// Set the terminal's size (the command sees SIGWINCH).
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        let size = Winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        Ok(tcsetwinsize(self.master.get_ref(), size)?)
    }
}

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.master.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut *unfilled)?)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // every holder of the command's side closed it: the end
                Ok(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.master.poll_write_ready(cx))?;
            match guard.try_io(|fd| Ok(rustix::io::write(fd.get_ref(), data)?)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_command_on_the_terminal_sees_a_tty_of_its_size() {
        let (mut pty, slave) = open(100, 30).expect("open a pty");
        let mut child = tokio::process::Command::new("setsid")
            .args([
                "--ctty",
                "--wait",
                "sh",
                "-c",
                "tty -s && stty size; read x; echo got $x",
            ])
            .stdin(slave.try_clone().expect("dup"))
            .stdout(slave.try_clone().expect("dup"))
            .stderr(slave)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        pty.write_all(b"hello\n").await.expect("write");
        let mut out = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            pty.read_to_end(&mut out),
        )
        .await;
        assert!(read.is_ok(), "the terminal ended when the command did");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("30 100"), "{text}");
        assert!(text.contains("got hello"), "{text}");
        assert!(child.wait().await.expect("wait").success());
    }
}
