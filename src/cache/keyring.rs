//! The Linux kernel keyring: secrets held in kernel memory, per user, each with a timeout
//! after which the kernel destroys it even if we never run again. No file, no swap of ours.

use std::ffi::CString;
use std::time::Duration;

use super::SlotStore;
use crate::secret::Secret;

const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
const KEYCTL_SETPERM: libc::c_long = 5;
const KEYCTL_DESCRIBE: libc::c_long = 6;
const KEYCTL_UNLINK: libc::c_long = 9;
const KEYCTL_SEARCH: libc::c_long = 10;
const KEYCTL_READ: libc::c_long = 11;
const KEYCTL_SET_TIMEOUT: libc::c_long = 15;
const KEYCTL_INVALIDATE: libc::c_long = 21;
/// Possessor and same-user processes may view, read, write, search, link and set attributes;
/// nobody else may do anything.
const PERMISSIONS: libc::c_long = 0x3f3f_0000;
const PREFIX: &str = "slothbox:";
/// The kernel refuses user-key payloads above 32 KiB anyway.
const MAX_PAYLOAD: usize = 32 * 1024;

pub struct Keyring;

fn keyctl(op: libc::c_long, a: libc::c_long, b: libc::c_long, c: libc::c_long) -> libc::c_long {
    // SAFETY: keyctl takes plain integers or pointers to buffers we own for the call's
    // duration; the kernel validates every argument and fails with an errno otherwise.
    unsafe { libc::syscall(libc::SYS_keyctl, op, a, b, c, 0 as libc::c_long) }
}

fn description(slot: &str) -> Option<CString> {
    CString::new(format!("{PREFIX}{slot}")).ok()
}

impl Keyring {
    /// The user keyring, if this kernel and sandbox allow keyring calls (container seccomp
    /// profiles often do not).
    pub fn open() -> Option<Keyring> {
        let id = keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 1, 0);
        (id > 0).then_some(Keyring)
    }

    fn find(&self, slot: &str) -> Option<libc::c_long> {
        let desc = description(slot)?;
        let kind = c"user";
        let id = keyctl(
            KEYCTL_SEARCH,
            KEY_SPEC_USER_KEYRING,
            kind.as_ptr() as libc::c_long,
            desc.as_ptr() as libc::c_long,
        );
        (id > 0).then_some(id)
    }

    fn destroy(&self, id: libc::c_long) {
        if keyctl(KEYCTL_INVALIDATE, id, 0, 0) < 0 {
            keyctl(KEYCTL_UNLINK, id, KEY_SPEC_USER_KEYRING, 0);
        }
    }
}

impl SlotStore for Keyring {
    fn describe(&self) -> String {
        "the kernel keyring (user keyring)".to_string()
    }

    fn read(&self, slot: &str) -> Option<Secret<Vec<u8>>> {
        let id = self.find(slot)?;
        let mut buf = vec![0u8; MAX_PAYLOAD];
        let n = keyctl(
            KEYCTL_READ,
            id,
            buf.as_mut_ptr() as libc::c_long,
            buf.len() as libc::c_long,
        );
        if n < 0 || n as usize > buf.len() {
            return None;
        }
        buf.truncate(n as usize);
        Some(Secret::new(buf))
    }

    fn write(&self, slot: &str, bytes: &Secret<Vec<u8>>, lifetime: Duration) -> anyhow::Result<()> {
        let desc = description(slot).ok_or_else(|| anyhow::anyhow!("slot name holds a NUL"))?;
        let payload = bytes.expose();
        anyhow::ensure!(payload.len() <= MAX_PAYLOAD, "entry too large for a key");
        let kind = c"user";
        // SAFETY: every pointer refers to a live buffer of the given length for the call.
        let id = unsafe {
            libc::syscall(
                libc::SYS_add_key,
                kind.as_ptr(),
                desc.as_ptr(),
                payload.as_ptr(),
                payload.len(),
                KEY_SPEC_USER_KEYRING,
            )
        };
        if id < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        keyctl(KEYCTL_SETPERM, id, PERMISSIONS, 0);
        let seconds = lifetime.as_secs().clamp(1, u32::MAX as u64);
        if keyctl(KEYCTL_SET_TIMEOUT, id, seconds as libc::c_long, 0) < 0 {
            // A key that cannot expire must not stay.
            self.destroy(id);
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    fn remove(&self, slot: &str) {
        if let Some(id) = self.find(slot) {
            self.destroy(id);
        }
    }

    fn clear(&self) -> anyhow::Result<usize> {
        // Reading a keyring yields the serials of the keys linked to it.
        let mut ids = vec![0i32; 4096];
        let n = keyctl(
            KEYCTL_READ,
            KEY_SPEC_USER_KEYRING,
            ids.as_mut_ptr() as libc::c_long,
            (ids.len() * 4) as libc::c_long,
        );
        if n < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        ids.truncate((n as usize / 4).min(ids.len()));
        let mut removed = 0;
        for id in ids {
            let mut desc = vec![0u8; 512];
            let len = keyctl(
                KEYCTL_DESCRIBE,
                id as libc::c_long,
                desc.as_mut_ptr() as libc::c_long,
                desc.len() as libc::c_long,
            );
            if len <= 0 {
                continue;
            }
            desc.truncate((len as usize).min(desc.len()));
            let text = String::from_utf8_lossy(&desc);
            // "type;uid;gid;perm;description" and a NUL.
            let text = text.trim_end_matches('\0');
            let mut fields = text.splitn(5, ';');
            let kind = fields.next();
            let name = fields.nth(3);
            if kind == Some("user") && name.is_some_and(|n| n.starts_with(PREFIX)) {
                self.destroy(id as libc::c_long);
                removed += 1;
            }
        }
        Ok(removed)
    }
}
