//! Running `queuectl` under a pseudo-terminal, as a person would: stdout and stderr
//! are the pty's terminal side (so `isatty` is true and the window size is what the
//! test set), and everything written there comes back as text.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a command run under a pty printed, and how it exited.
#[derive(Debug)]
pub struct PtyOutput {
    pub code: Option<i32>,
    /// stdout and stderr as the terminal got them, with `\r\n` back to `\n`.
    pub text: String,
}

/// Runs `cmd` with stdout and stderr on a new pty of `columns` columns (24 rows),
/// stdin from `/dev/null`; panics if it has not exited within `timeout`.
pub fn run_in_pty(mut cmd: Command, columns: u16, timeout: Duration) -> PtyOutput {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let size = libc::winsize {
        ws_row: 24,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two new descriptors into `master` and `slave`; the name
    // buffer and termios are optional (null), the window size is read only.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(slave.try_clone().expect("dup the pty")))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("run queuectl under a pty");
    // The parent's copies of the terminal side are gone with `cmd`: once the child
    // (and anything it started) exits, reading the master side ends with EIO.
    drop(cmd);
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut master = File::from(master);
        let mut bytes = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            match master.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            }
        }
        let _ = sender.send(bytes);
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for queuectl") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("queuectl under a pty did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
    let bytes = receiver
        .recv_timeout(left)
        .expect("the pty's output to end after queuectl exited");
    PtyOutput {
        code: status.code(),
        text: String::from_utf8_lossy(&bytes).replace("\r\n", "\n"),
    }
}
