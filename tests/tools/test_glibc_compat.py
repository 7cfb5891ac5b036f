"""The glibc compatibility step: patches only what it recognises, and patching twice is harmless.

The fixtures are real ELF shared objects built with gcc against a stub
``libc.so.6`` whose version script puts ``__isoc23_strtol`` & co. at
``GLIBC_2.38``, exactly as the TFDV wheel's extension references them. After
the patch, the object loads with this host's real glibc and its code parses
numbers through the classic ``strtol``.
"""
import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    "glibc_compat", os.path.join(ROOT, "tools", "glibc_compat.py"))
glibc_compat = importlib.util.module_from_spec(_spec)
sys.modules["glibc_compat"] = glibc_compat
_spec.loader.exec_module(glibc_compat)

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")

STUB_LIBC = """
long __isoc23_strtol(const char *s, char **e, int b) { return 0; }
long long __isoc23_strtoll(const char *s, char **e, int b) { return 0; }
long __isoc23_sscanf(const char *s, const char *f, ...) { return 0; }
int extra_new_function(void) { return 0; }
unsigned long strlen(const char *s) { return 0; }
"""
STUB_VERSIONS = """
GLIBC_2.2.5 { global: strlen; local: *; };
GLIBC_2.38 { global: __isoc23_strtol; __isoc23_strtoll; __isoc23_sscanf; extra_new_function; } GLIBC_2.2.5;
"""
USER_OK = """
extern long __isoc23_strtol(const char *, char **, int);
extern long long __isoc23_strtoll(const char *, char **, int);
extern unsigned long strlen(const char *);
long parse(const char *s) { return __isoc23_strtol(s, 0, 0) + 1000 * (long)strlen(s); }
long long parse_ll(const char *s) { return __isoc23_strtoll(s, 0, 10); }
"""
USER_SSCANF = """
extern long __isoc23_sscanf(const char *, const char *, ...);
extern unsigned long strlen(const char *);
long f(const char *s) { long x; __isoc23_sscanf(s, "%ld", &x); return x + strlen(s); }
"""
USER_OTHER = """
extern long __isoc23_strtol(const char *, char **, int);
extern int extra_new_function(void);
extern unsigned long strlen(const char *);
long f(const char *s) { return __isoc23_strtol(s, 0, 0) + extra_new_function() + strlen(s); }
"""


def _gcc(*args):
    subprocess.run(["gcc", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def stub_libc(tmp_path_factory):
    d = tmp_path_factory.mktemp("stub")
    (d / "libc.c").write_text(STUB_LIBC)
    (d / "libc.map").write_text(STUB_VERSIONS)
    _gcc("-shared", "-fPIC", "-nostdlib", "-Wl,-soname,libc.so.6",
         f"-Wl,--version-script={d / 'libc.map'}", "-o", str(d / "libc.so.6"), str(d / "libc.c"))
    return d / "libc.so.6"


def _user_lib(tmp_path, stub_libc, source, name="libuser.so"):
    (tmp_path / "user.c").write_text(source)
    out = tmp_path / name
    _gcc("-shared", "-fPIC", "-nostdlib", "-o", str(out), str(tmp_path / "user.c"), str(stub_libc))
    return out


def _versions(path):
    return subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True,
                          check=True).stdout


def test_elf_hash_of_known_version_names():
    # The vna_hash values stored in the TFDV 1.21 wheel's extension for these names.
    assert glibc_compat.elf_hash(b"GLIBC_2.2.5") == 0x09691A75
    assert glibc_compat.elf_hash(b"GLIBC_2.38") == 0x069691B8
    assert glibc_compat.elf_hash(b"") == 0


@needs_gcc
def test_patch_redirects_isoc23_symbols_and_the_library_then_works(tmp_path, stub_libc):
    lib = _user_lib(tmp_path, stub_libc, USER_OK)
    before = _versions(lib)
    assert "(GLIBC_2.38) __isoc23_strtol" in before
    if glibc_compat.glibc_version() < (2, 38):
        with pytest.raises(OSError, match="GLIBC_2.38"):
            ctypes.CDLL(str(lib))

    patch = glibc_compat.patch_file(str(lib))

    assert sorted(patch.symbols) == ["__isoc23_strtol", "__isoc23_strtoll"]
    after = _versions(lib)
    assert "GLIBC_2.38" not in after and "__isoc23" not in after
    assert "(GLIBC_2.2.5) strtol" in after and "(GLIBC_2.2.5) strtoll" in after
    user = ctypes.CDLL(str(lib))  # loads against this host's real glibc
    user.parse.restype = ctypes.c_long
    user.parse_ll.restype = ctypes.c_longlong
    assert user.parse(b"0x1f") == 31 + 4000  # strtol with base 0 reads hex
    assert user.parse_ll(b"-9000000000") == -9_000_000_000


@needs_gcc
def test_patching_twice_is_harmless(tmp_path, stub_libc):
    lib = _user_lib(tmp_path, stub_libc, USER_OK)
    assert glibc_compat.patch_file(str(lib)).needed
    once = lib.read_bytes()
    again = glibc_compat.patch_file(str(lib))
    assert not again.needed and again.symbols == ()
    assert lib.read_bytes() == once


@needs_gcc
@pytest.mark.parametrize("source, reason", [
    (USER_SSCANF, "__isoc23_sscanf has no safe classic replacement"),
    (USER_OTHER, "extra_new_function also needs GLIBC_2.38"),
])
def test_refuses_a_library_needing_more_than_strtol_and_leaves_it_untouched(
        tmp_path, stub_libc, source, reason):
    lib = _user_lib(tmp_path, stub_libc, source)
    original = lib.read_bytes()
    with pytest.raises(glibc_compat.NotRecognised, match=reason):
        glibc_compat.patch_file(str(lib))
    assert lib.read_bytes() == original
    assert not list(tmp_path.glob("*.compat-tmp"))


def test_refuses_a_file_that_is_not_elf(tmp_path):
    text = tmp_path / "notes.so"
    text.write_text("not a library\n")
    with pytest.raises(glibc_compat.NotRecognised, match="not an ELF file"):
        glibc_compat.patch_file(str(text))
    assert text.read_text() == "not a library\n"


@needs_gcc
def test_refuses_an_object_file_that_is_not_a_shared_object(tmp_path):
    (tmp_path / "user.c").write_text(USER_OK)
    _gcc("-c", "-fPIC", "-o", str(tmp_path / "user.o"), str(tmp_path / "user.c"))
    with pytest.raises(glibc_compat.NotRecognised, match="not an x86-64 shared object"):
        glibc_compat.patch_file(str(tmp_path / "user.o"))


def test_patch_command_reports_refusals_with_the_file_name(tmp_path, capsys):
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"\x7fELF\x01\x01" + bytes(64))
    assert glibc_compat.main(["patch", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"refusing to patch {bad}" in err and "64-bit" in err


def test_libstdcxx_check_looks_for_the_needed_abi_version(tmp_path):
    old, new = tmp_path / "old.so", tmp_path / "new.so"
    old.write_bytes(b"\0CXXABI_1.3.13\0GLIBCXX_3.4.30\0")
    new.write_bytes(b"\0CXXABI_1.3.13\0CXXABI_1.3.15\0")
    assert not glibc_compat.libstdcxx_is_new_enough(str(old))
    assert glibc_compat.libstdcxx_is_new_enough(str(new))
    assert not glibc_compat.libstdcxx_is_new_enough(str(tmp_path / "missing.so"))


def _compat_wheel(name):
    wheels = os.path.join(sys.prefix, "compat-wheels")
    found = [f for f in os.listdir(wheels) if f.startswith(name)] if os.path.isdir(wheels) else []
    if not found:
        pytest.skip("this host installed the wheels without the compatibility step")
    return os.path.join(wheels, found[0])


def test_the_real_tfdv_extension_needs_exactly_the_four_strto_functions(tmp_path):
    wheel = _compat_wheel("tensorflow_data_validation-")
    with zipfile.ZipFile(wheel) as z:
        data = z.read(glibc_compat.EXTENSIONS[0])
    patch = glibc_compat.plan_patch(data)
    assert sorted(patch.symbols) == ["__isoc23_strtol", "__isoc23_strtoll",
                                     "__isoc23_strtoul", "__isoc23_strtoull"]
    patched = glibc_compat.apply_patch(data, patch)
    assert not glibc_compat.plan_patch(patched).needed


@pytest.mark.subprocess
def test_venv_processes_load_the_compat_libstdcxx_exactly_when_needed():
    code = ("import ml_metadata, tensorflow_data_validation\n"
            "print(any('lib/compat/libstdc++' in l for l in open('/proc/self/maps')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout
    host_lib_ok = glibc_compat.libstdcxx_is_new_enough(glibc_compat.system_libstdcxx())
    assert out.strip().splitlines()[-1] == str(not host_lib_ok)


def test_wheel_prefix_matches_the_wheel_file_names_of_an_exact_pin():
    assert glibc_compat.wheel_prefix("ml-metadata==1.21.0") == "ml_metadata-1.21.0-"
    assert (glibc_compat.wheel_prefix("tensorflow-data-validation==1.21.0")
            == "tensorflow_data_validation-1.21.0-")
    with pytest.raises(SystemExit, match="exact pin"):
        glibc_compat.wheel_prefix("ml-metadata>=1.21")


def test_fetch_wheels_reuses_wheels_of_the_pinned_version_only(tmp_path):
    wheel = "ml_metadata-1.21.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    (tmp_path / wheel).write_bytes(b"")
    # Already there: no pip call (the pip path does not even exist).
    glibc_compat.fetch_wheels(str(tmp_path / "no-pip"), str(tmp_path), ["ml-metadata==1.21.0"])
    with pytest.raises(FileNotFoundError):  # another version: it must download
        glibc_compat.fetch_wheels(str(tmp_path / "no-pip"), str(tmp_path), ["ml-metadata==1.22.0"])
