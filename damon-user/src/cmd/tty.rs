//! Just enough terminal control for a full-screen live view: the alternate screen, a hidden
//! cursor, unbuffered key reads, and the size. Everything is restored on drop, so `q`,
//! Ctrl-C and errors all leave the terminal as it was.
use std::io::Write;

/// The terminal in live-view mode while this exists.
pub struct LiveScreen {
    saved: Option<libc::termios>,
}

impl LiveScreen {
    pub fn enter() -> Self {
        // SAFETY: tcgetattr/tcsetattr on stdin with a properly sized termios.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) == 0 {
                let saved = t;
                // No line buffering, no echo; keep ISIG so Ctrl-C still sends SIGINT.
                t.c_lflag &= !(libc::ICANON | libc::ECHO);
                t.c_cc[libc::VMIN] = 0;
                t.c_cc[libc::VTIME] = 0;
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
                Some(saved)
            } else {
                None
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\x1b[?1049h\x1b[?25l");
        let _ = out.flush();
        LiveScreen { saved }
    }

    /// Replaces the screen's contents.
    pub fn draw(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\x1b[H\x1b[2J");
        // Raw-ish mode: a bare LF would not return the carriage.
        let _ = out.write_all(text.replace('\n', "\r\n").as_bytes());
        let _ = out.flush();
    }

    /// Whether `q` (or `Q`) was pressed since the last call.
    pub fn quit_pressed(&self) -> bool {
        let mut buf = [0u8; 32];
        let mut pfd = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll/read on stdin into a local buffer.
        unsafe {
            if libc::poll(&mut pfd, 1, 0) <= 0 {
                return false;
            }
            let n = libc::read(libc::STDIN_FILENO, buf.as_mut_ptr() as *mut _, buf.len());
            n > 0 && buf[..n as usize].iter().any(|&b| b == b'q' || b == b'Q')
        }
    }
}

impl Drop for LiveScreen {
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
        if let Some(t) = self.saved {
            // SAFETY: restores the attributes saved in enter().
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) };
        }
    }
}

/// Columns and rows of the terminal on stdout, if it is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        let ok = libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) == 0;
        (ok && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
    }
}

/// Columns and rows of the terminal on stdout, or 80x24.
pub fn size() -> (u16, u16) {
    terminal_size().unwrap_or((80, 24))
}
