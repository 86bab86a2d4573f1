//! An mmapable BPF array (`BPF_F_MMAPABLE`) mapped into lbd's address
//! space, shared with the data plane: the bucket tables and the VIP index
//! are read and written in place through it instead of a syscall per
//! entry. Owns the map (its fd) and the mapping, unmapped on drop.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use aya::maps::MapData;

/// `BPF_F_MMAPABLE`: the flag an array needs to be mapped.
pub(crate) const BPF_F_MMAPABLE: u32 = 1 << 10;

/// A second handle on `map` through a duplicate of its fd: a reader on
/// another thread (a census, a replication walk) maps the table through
/// it, and its mapping outlives the loop's.
pub(crate) fn second_handle(map: &MapData) -> std::io::Result<MapData> {
    let fd = map.fd().as_fd().try_clone_to_owned()?;
    MapData::from_fd(fd).map_err(std::io::Error::other)
}

/// The map and its whole value area, mapped shared and writable. Public
/// for the tests, which map pinned tables as another writer would.
pub struct SharedMapping {
    map: MapData,
    base: NonNull<libc::c_void>,
    len: usize,
}

impl SharedMapping {
    /// Maps the first `len` bytes of `map`'s value area (all of it: the
    /// caller computes its size from the map's entries).
    pub fn new(map: MapData, len: usize) -> std::io::Result<Self> {
        // SAFETY: a fresh shared mapping of the map's fd over its value
        // area (what BPF_F_MMAPABLE arrays allow); checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(addr)
            .ok_or_else(|| std::io::Error::other("mmap returned a null mapping"))?;
        Ok(Self { map, base, len })
    }

    /// The mapping's first byte, as the array's element type.
    pub fn base<T>(&self) -> NonNull<T> {
        self.base.cast()
    }

    /// The map, for pinning and its kernel memory account.
    pub(crate) fn map(&self) -> &MapData {
        &self.map
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, unmapped once (before the map's
        // fd closes with the `map` field).
        unsafe {
            libc::munmap(self.base.as_ptr(), self.len);
        }
    }
}
