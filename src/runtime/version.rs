//! Reading an ONNX Runtime library's version before handing it to `ort`.
//!
//! The build-info string of PyPI wheels says `git-branch=HEAD`, so the version comes from the
//! C API's `OrtGetApiBase()->GetVersionString()`, the same call `ort` makes for its own check.
//! Knowing it first lets discovery reject an old library with the version in the message.

use std::ffi::{c_char, CStr};
use std::path::Path;

/// `OrtApiBase` from `onnxruntime_c_api.h`: two function pointers, in this order.
#[repr(C)]
struct OrtApiBase {
    get_api: unsafe extern "system" fn(version: u32) -> *const std::ffi::c_void,
    get_version_string: unsafe extern "system" fn() -> *const c_char,
}

/// The library's version string, e.g. `1.31.1`.
pub fn library_version(path: &Path) -> Result<String, String> {
    // SAFETY: loading runs the library's initializers; this is the library the engine is about to
    // load anyway. `OrtGetApiBase` has the C signature declared above in every ONNX Runtime
    // release, and the version string it returns is a static NUL-terminated string.
    unsafe {
        let library = libloading::Library::new(path).map_err(|e| format!("cannot load: {e}"))?;
        let get_api_base: libloading::Symbol<unsafe extern "system" fn() -> *const OrtApiBase> =
            library.get(b"OrtGetApiBase").map_err(|_| {
                String::from("not an ONNX Runtime library (no OrtGetApiBase symbol)")
            })?;
        let base = get_api_base();
        if base.is_null() {
            return Err(String::from("OrtGetApiBase returned null"));
        }
        let version = ((*base).get_version_string)();
        if version.is_null() {
            return Err(String::from("GetVersionString returned null"));
        }
        Ok(CStr::from_ptr(version).to_string_lossy().into_owned())
    }
}

/// The minor number of `1.31.1`.
pub fn minor_version(version: &str) -> Option<u32> {
    version.split('.').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_version_parses_release_strings() {
        assert_eq!(minor_version("1.31.1"), Some(31));
        assert_eq!(minor_version("1.9.0"), Some(9));
        assert_eq!(minor_version("garbage"), None);
    }

    #[test]
    fn a_file_that_is_not_a_library_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("libonnxruntime.so");
        std::fs::write(&path, b"not an ELF file").expect("write");
        let err = library_version(&path).expect_err("not loadable");
        assert!(err.starts_with("cannot load"), "{err}");
    }
}
