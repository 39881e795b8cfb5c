//! A bump allocator for plugins whose calls allocate little: every gaffer call runs in a fresh
//! instance, so memory freed during a call would only be reused within that same call.
//!
//! [`BumpAlloc`] hands out memory from the end of the module's data (`__heap_base`) upwards and
//! never reuses it, except that freeing or resizing the most recent allocation moves the top
//! back or grows it in place (a `String` that is pushed to grows without copying). When the
//! linear memory is full it grows the memory with `memory.grow`; the host's memory cap bounds
//! that, and an allocation past the cap fails (the plugin traps, reported as a memory fault).
//!
//! Compared with the default allocator (dlmalloc in wasi-libc) an allocation is a handful of
//! instructions, with no free lists to set up on the first call of every fresh instance. Use it
//! only in a plugin whose calls allocate a bounded amount: a call that frees and allocates in a
//! long loop keeps every byte it ever allocated until the call ends.
//!
//! ```
//! #[cfg(target_arch = "wasm32")]
//! #[global_allocator]
//! static ALLOC: gaffer_sdk::alloc::BumpAlloc = gaffer_sdk::alloc::BumpAlloc::new();
//! # fn main() {}
//! ```
//!
//! On targets other than `wasm32` the type exists (so that code naming it compiles) but is not
//! an allocator.

/// A bump allocator over the instance's linear memory (see the [module](self) documentation).
///
/// Single-threaded: gaffer's plugin instances have one thread.
pub struct BumpAlloc {
    #[cfg(target_arch = "wasm32")]
    top: core::cell::Cell<usize>,
}

// SAFETY: a wasm32 plugin instance has one thread (gaffer enables no threads proposal), so the
// cell is never touched concurrently; on other targets the type holds nothing.
unsafe impl Sync for BumpAlloc {}

impl BumpAlloc {
    /// An allocator whose heap starts at `__heap_base` on the first allocation.
    pub const fn new() -> BumpAlloc {
        BumpAlloc {
            #[cfg(target_arch = "wasm32")]
            top: core::cell::Cell::new(0),
        }
    }
}

impl Default for BumpAlloc {
    fn default() -> Self {
        BumpAlloc::new()
    }
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::BumpAlloc;
    use core::alloc::{GlobalAlloc, Layout};
    use core::arch::wasm32;

    const PAGE: usize = 64 * 1024;

    unsafe extern "C" {
        /// The first byte after the module's stack and data, set by the linker.
        static __heap_base: u8;
    }

    impl BumpAlloc {
        /// The current top, starting at `__heap_base` the first time.
        #[inline]
        fn current_top(&self) -> usize {
            let top = self.top.get();
            if top != 0 {
                return top;
            }
            core::ptr::addr_of!(__heap_base) as usize
        }

        /// Make the memory reach `end` (exclusive), growing it when needed. False when the
        /// memory cannot grow that far.
        #[inline]
        fn reach(end: usize) -> bool {
            let size = wasm32::memory_size(0) * PAGE;
            if end <= size {
                return true;
            }
            let pages = (end - size).div_ceil(PAGE);
            wasm32::memory_grow(0, pages) != usize::MAX
        }

        /// Bump `size` bytes aligned to `align` from `top`; null when out of memory.
        #[inline]
        fn bump(&self, size: usize, align: usize) -> *mut u8 {
            let top = self.current_top();
            let Some(start) = top.checked_add(align - 1).map(|t| t & !(align - 1)) else {
                return core::ptr::null_mut();
            };
            let Some(end) = start.checked_add(size) else {
                return core::ptr::null_mut();
            };
            if !Self::reach(end) {
                return core::ptr::null_mut();
            }
            self.top.set(end);
            start as *mut u8
        }
    }

    // SAFETY: every block handed out lies within the linear memory (`reach` grew it first),
    // is aligned as asked, and never overlaps another live block: the top only moves back over
    // the most recent block when that block is freed or resized in place.
    unsafe impl GlobalAlloc for BumpAlloc {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.bump(layout.size(), layout.align())
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // Memory past the top has been written before only if a block there was freed or
            // shrunk in place, so it is zeroed here rather than assumed fresh.
            let ptr = self.bump(layout.size(), layout.align());
            if !ptr.is_null() {
                // SAFETY: `ptr` is a fresh block of `layout.size()` bytes.
                unsafe { core::ptr::write_bytes(ptr, 0, layout.size()) };
            }
            ptr
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // Only the most recent block is taken back.
            if ptr as usize + layout.size() == self.top.get() {
                self.top.set(ptr as usize);
            }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let old = ptr as usize;
            // The most recent block grows or shrinks in place.
            if old + layout.size() == self.top.get() {
                let Some(end) = old.checked_add(new_size) else {
                    return core::ptr::null_mut();
                };
                if !Self::reach(end) {
                    return core::ptr::null_mut();
                }
                self.top.set(end);
                return ptr;
            }
            if new_size <= layout.size() {
                return ptr;
            }
            let new = self.bump(new_size, layout.align());
            if !new.is_null() {
                // SAFETY: both blocks are live, distinct (the new one lies above the top the
                // old one was below), and at least `layout.size()` bytes long.
                unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size()) };
            }
            new
        }
    }
}
