//! Pages of our own with known contents and frames, for the calibration and validation of the
//! kernel layout.
use std::time::Instant;

use damon_common::PROBE_WORDS;

use super::sys;

/// A locked, populated anonymous page of ours holding random words.
pub struct Marker {
    page: *mut u8,
    pub words: [u64; PROBE_WORDS],
}

impl Marker {
    pub fn new() -> std::io::Result<Self> {
        let mut words = [0u64; PROBE_WORDS];
        let mut x: u64 = Instant::now().elapsed().as_nanos() as u64
            ^ (std::process::id() as u64).rotate_left(32)
            ^ (&words as *const _ as u64)
            ^ 0x9e37_79b9_7f4a_7c15;
        for w in words.iter_mut() {
            // xorshift64*: enough to make a collision with real memory contents impossible in
            // practice.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            *w = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        }
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        // SAFETY: a fresh private anonymous mapping, unmapped in Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let page = p as *mut u8;
        // SAFETY: `page` is our writable page; the words fit in it.
        unsafe {
            std::ptr::copy_nonoverlapping(words.as_ptr() as *const u8, page, 8 * PROBE_WORDS);
        }
        Ok(Self { page, words })
    }

    pub fn addr(&self) -> u64 {
        self.page as u64
    }

    /// Writes one byte of the page (sets its Accessed and Dirty bits).
    pub fn touch(&self) {
        // SAFETY: our own writable page; the last byte is outside the marker words.
        unsafe { self.page.add(4095).write_volatile(1) };
    }

    /// The page's frame number from `/proc/self/pagemap` (needs CAP_SYS_ADMIN).
    pub fn pfn(&self) -> std::io::Result<Option<u64>> {
        sys::pagemap_pfn(std::process::id(), self.addr()).map(|p| p.filter(|&p| p != 0))
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        // SAFETY: unmaps the page `new` mapped.
        unsafe { libc::munmap(self.page as *mut _, 4096) };
    }
}
